//! Accounts and apps: made from a provider (or an autodetection), and checked before
//! they are saved, with messages that name the setting, say what is wrong and what to
//! change. The checks cover meaning (a port that does not fit the TLS mode, app-only
//! on a multi-tenant authority) and syntax (host names, ports 1-65535, URLs, TLS pins,
//! lengths of names, no control characters), so every way in (the CLI, an import, the
//! store's API) refuses the same mistakes.

use mailbridge_types::config::{
    AccountConfig, AppConfig, AppCredentialConfig, EndpointConfig, LoginFormat, SignInMethod,
    TlsMode, Transport,
};
use serde::Serialize;

use crate::provider::{Endpoint, Provider};

/// One thing wrong with an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The setting at fault (`incoming.port`, `app`, ...).
    pub field: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

/// Tenants that name no single directory.
const MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

/// The well-known ports of a transport: (implicit TLS, STARTTLS or plain).
fn standard_ports(transport: Transport) -> Option<(u16, &'static [u16])> {
    match transport {
        Transport::Imap => Some((993, &[143])),
        Transport::Pop3 => Some((995, &[110])),
        Transport::Smtp => Some((465, &[587, 25])),
        Transport::Graph | Transport::Ews => None,
    }
}

/// Longest account or app name, in characters (names are printed in tables and
/// make the ids of their secrets).
pub const MAX_NAME: usize = 64;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 256;
/// Longest mail address (RFC 5321's 256-octet path less its brackets).
pub const MAX_ADDRESS: usize = 254;
/// Longest login name, client id or tenant, in characters.
const MAX_WORD: usize = 256;

/// What is wrong with a local name (of an account or an app), if anything.
fn name_problem(kind: &str, name: &str) -> Option<String> {
    let count = name.chars().count();
    if name.trim().is_empty() {
        Some(format!("the {kind} has no name"))
    } else if count > MAX_NAME {
        Some(format!(
            "the name has {count} characters: give one of at most {MAX_NAME}"
        ))
    } else if name.trim() != name || name.chars().any(char::is_control) || name.contains(':') {
        Some(format!(
            "{name:?} cannot be a name: leave out spaces at its ends, control characters and ':'"
        ))
    } else {
        None
    }
}

/// What is wrong with free text of at most `max` characters, if anything.
fn text_problem(text: &str, max: usize) -> Option<String> {
    let count = text.chars().count();
    if count > max {
        Some(format!("it has {count} characters: give at most {max}"))
    } else if text.chars().any(char::is_control) {
        Some(format!("{text:?} holds control characters: leave them out"))
    } else {
        None
    }
}

/// A DNS name: labels of letters, digits, `-` and `_` (1-63 each, not starting or
/// ending with `-`), at most 253 characters, an optional final dot, and a last label
/// that is not all digits (that would be a mistyped IPv4 address).
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    !name.is_empty()
        && name.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// What is wrong with a host name (IMAP/POP/SMTP `host`, `tls_name`), if anything:
/// it must be a DNS name, an IPv4 address or an IPv6 address (without brackets, as
/// the configuration keeps it; the endpoint URLs of the CLI write it in brackets).
pub fn host_problem(host: &str) -> Option<String> {
    if host.trim().is_empty() {
        return Some("no host is set: give the server's host name".to_owned());
    }
    if host.parse::<std::net::IpAddr>().is_ok() || is_dns_name(host) {
        return None;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        && inner.parse::<std::net::Ipv6Addr>().is_ok()
    {
        return Some(format!(
            "write the IPv6 address without brackets here (host = {inner:?}); brackets belong in an endpoint URL such as imaps://[{inner}]:993"
        ));
    }
    if let Some((h, p)) = host.rsplit_once(':')
        && !h.contains(':')
        && p.parse::<u16>().is_ok()
    {
        return Some(format!(
            "{host:?} holds a port: give the host {h:?} here and the port {p} as the port"
        ));
    }
    if !host.is_ascii() {
        return Some(format!(
            "{host:?} is not a host name: write an internationalised name in its xn-- form (as `idn2` prints it)"
        ));
    }
    Some(format!(
        "{host:?} is not a host name: give a DNS name (mail.example.org), an IPv4 address (192.0.2.10) or an IPv6 address (an endpoint URL writes it in brackets: imaps://[2001:db8::1]:993)"
    ))
}

/// What is wrong with an http(s) URL (a Graph root, an EWS URL, an authority host),
/// if anything: it must parse, have a host that is a host name, no port 0, no user
/// name or password, and no query string (which may carry a credential).
fn url_problem(text: &str, example: &str) -> Option<String> {
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            return Some(format!(
                "{text:?} is not a URL ({e}): write it as {example}"
            ));
        }
    };
    if !matches!(url.scheme(), "https" | "http") {
        return Some(format!(
            "{text:?} is not an http(s) URL: write it as {example}"
        ));
    }
    match url.host() {
        None => return Some(format!("{text:?} has no host: write it as {example}")),
        Some(url::Host::Domain(d)) if !is_dns_name(d) => {
            return Some(format!("{d:?} in {text:?} is not a host name"));
        }
        Some(_) => {}
    }
    if url.port() == Some(0) {
        return Some(format!(
            "{text:?} names port 0: give a port from 1 to 65535, or none for the scheme's own"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some(
            "the URL holds a user name or password: leave them out (they are stored as secrets)"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Some(
            "the URL has a query string or fragment: give the URL without `?...` and `#...`"
                .to_owned(),
        );
    }
    None
}

/// What is wrong with a TLS pin, if anything: `sha256:` and the 64 hexadecimal digits
/// of the certificate's SHA-256 fingerprint (`:` between byte pairs allowed).
fn pin_problem(pin: &str) -> Option<String> {
    let hex: String = pin
        .strip_prefix("sha256:")
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != ':')
        .collect();
    (!(pin.starts_with("sha256:") && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())))
        .then(|| {
            format!(
                "{pin:?} is not a pin: write sha256: and the 64 hexadecimal digits of the certificate's SHA-256 fingerprint (`test receive` prints the exact pin)"
            )
        })
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_endpoint(side: &str, endpoint: &EndpointConfig, out: &mut Vec<Problem>) {
    let allowed: &[Transport] = if side == "incoming" {
        &[
            Transport::Imap,
            Transport::Pop3,
            Transport::Graph,
            Transport::Ews,
        ]
    } else {
        &[Transport::Smtp, Transport::Graph, Transport::Ews]
    };
    if !allowed.contains(&endpoint.transport) {
        out.push(problem(
            format!("{side}.transport"),
            format!(
                "{:?} cannot be the {side} side: use {}",
                endpoint.transport,
                if side == "incoming" {
                    "IMAP, POP3, Graph or EWS to download"
                } else {
                    "SMTP, Graph or EWS to send"
                }
            ),
        ));
    }
    if endpoint.host.trim().is_empty() {
        out.push(problem(
            format!("{side}.host"),
            "no host is set: give the server's host name (or the URL for Graph and EWS)",
        ));
    }
    if let Some(name) = &endpoint.tls_name
        && let Some(why) = host_problem(name)
    {
        out.push(problem(format!("{side}.tls_name"), why));
    }
    if let Some(pin) = &endpoint.tls_pin
        && let Some(why) = pin_problem(pin)
    {
        out.push(problem(format!("{side}.tls_pin"), why));
    }
    match endpoint.transport {
        Transport::Graph | Transport::Ews => {
            let example = if endpoint.transport == Transport::Graph {
                "https://graph.microsoft.com"
            } else {
                "https://mail.example.com/EWS/Exchange.asmx"
            };
            if !(endpoint.host.starts_with("https://") || endpoint.host.starts_with("http://")) {
                out.push(problem(
                    format!("{side}.host"),
                    format!(
                        "{:?} needs a URL such as {example}, not {:?}",
                        endpoint.transport, endpoint.host
                    ),
                ));
            } else if let Some(why) = url_problem(&endpoint.host, example) {
                out.push(problem(format!("{side}.host"), why));
            }
        }
        t => {
            if endpoint.host.contains("://") {
                out.push(problem(
                    format!("{side}.host"),
                    format!("{t:?} needs a host name, not a URL ({:?})", endpoint.host),
                ));
            } else if !endpoint.host.trim().is_empty()
                && let Some(why) = host_problem(&endpoint.host)
            {
                out.push(problem(format!("{side}.host"), why));
            }
            if endpoint.port == Some(0) {
                out.push(problem(
                    format!("{side}.port"),
                    format!(
                        "port 0 is not a port: give a port from 1 to 65535, or none for {t:?}'s standard port"
                    ),
                ));
            }
            if let (Some(port), Some((implicit, plain))) = (endpoint.port, standard_ports(t)) {
                let tls = endpoint.tls_mode();
                let tls_name = match tls {
                    TlsMode::Implicit => "implicit",
                    TlsMode::StartTls => "starttls",
                    TlsMode::None => "none",
                    // Either way works on any port.
                    TlsMode::Auto => "auto",
                };
                if tls == TlsMode::Auto {
                } else if tls == TlsMode::Implicit && plain.contains(&port) {
                    out.push(problem(
                        format!("{side}.port"),
                        format!(
                            "port {port} is {t:?}'s STARTTLS port but tls = implicit: use port {implicit} with tls = implicit, or keep {port} with tls = starttls"
                        ),
                    ));
                } else if tls != TlsMode::Implicit && port == implicit {
                    out.push(problem(
                        format!("{side}.port"),
                        format!(
                            "port {port} is {t:?}'s implicit-TLS port but tls = {tls_name}: set tls = implicit, or use port {} with tls = starttls",
                            plain[0]
                        ),
                    ));
                }
            }
        }
    }
    if let Some(ca) = &endpoint.extra_ca_file
        && !ca.exists()
    {
        out.push(problem(
            format!("{side}.extra_ca_file"),
            format!(
                "the extra CA file {} does not exist: give the PEM file of the CA that signed the server's certificate",
                ca.display()
            ),
        ));
    }
}

/// Checks an account against the apps it may use; empty when it is ready to save. An
/// account with a token sign-in and no server is valid: it only gets tokens.
pub fn validate(account: &AccountConfig, apps: &[AppConfig]) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(why) = name_problem("account", &account.name) {
        out.push(problem("name", why));
    }
    let address_ok = account.address.chars().count() <= MAX_ADDRESS
        && !account.address.chars().any(char::is_control)
        && account.address.rsplit_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !account.address.contains(' ')
        });
    if !address_ok {
        out.push(problem(
            "address",
            format!(
                "{:?} is not a mail address (name@domain, at most {MAX_ADDRESS} characters)",
                account.address
            ),
        ));
    }
    if let Some(d) = &account.display_name
        && let Some(why) = text_problem(d, MAX_DISPLAY_NAME)
    {
        out.push(problem("display_name", why));
    }
    let l = &account.limits;
    for (setting, value) in [
        ("limits.max_message_size", l.max_message_size),
        ("limits.max_list_items", l.max_list_items),
        ("limits.max_pages", l.max_pages),
        ("limits.command_timeout_secs", l.command_timeout_secs),
    ] {
        if value == 0 {
            out.push(problem(
                setting,
                "0 would refuse everything: set at least 1, or remove it for the default"
                    .to_owned(),
            ));
        }
    }
    if let Some(l) = &account.login
        && let Some(why) = text_problem(l, MAX_WORD)
    {
        out.push(problem("login", why));
    }
    if !account.download && !account.send {
        out.push(problem(
            "download, send",
            "download and send are both off: turn on at least one (download = true to read mail, send = true to send it)",
        ));
    }
    // An account with no server at all only signs in (tokens for `auth token`).
    let sign_in_only = account.incoming.is_none()
        && account.outgoing.is_none()
        && account.sign_in != SignInMethod::Password;
    if account.download && !sign_in_only {
        match &account.incoming {
            Some(e) => check_endpoint("incoming", e, &mut out),
            None => out.push(problem(
                "incoming",
                "download is on but no incoming side is set: choose a provider or give the IMAP/POP3 server or the Graph/EWS URL (or turn download off)",
            )),
        }
    }
    if account.send && !sign_in_only {
        match (&account.outgoing, account.outgoing_side()) {
            (Some(e), _) => check_endpoint("outgoing", e, &mut out),
            (None, Some(_)) => {}
            (None, None) => out.push(problem(
                "outgoing",
                "send is on but no outgoing side is set: give the SMTP server (Graph and EWS accounts send through their incoming side), or turn send off",
            )),
        }
    }
    if account.login_format == Some(LoginFormat::Manual) && account.login.is_none() {
        out.push(problem(
            "login",
            "the login format is manual but no login is set: give the user name, or use login_format = \"email\" or \"mailbox-name\"",
        ));
    }
    let sides: Vec<&EndpointConfig> = [account.incoming_side(), account.outgoing_side()]
        .into_iter()
        .flatten()
        .collect();
    let uses = |t: Transport| sides.iter().any(|e| e.transport == t);
    match account.sign_in {
        SignInMethod::Password => {
            if uses(Transport::Graph) {
                out.push(problem(
                    "sign_in",
                    "Microsoft Graph does not accept passwords: use sign_in = \"delegated\" (a user signs in) or \"app-only\" with an app registration",
                ));
            }
        }
        SignInMethod::Delegated | SignInMethod::AppOnly => {
            let method = if account.sign_in == SignInMethod::AppOnly {
                "app-only"
            } else {
                "delegated"
            };
            match &account.app {
                None => out.push(problem(
                    "app",
                    format!(
                        "{method} sign-in needs an app: set app = the name of an app registration (`mailbridge app add`, or the [[app]] table of the configuration)"
                    ),
                )),
                Some(name) => match apps.iter().find(|a| &a.name == name) {
                    None => {
                        let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
                        out.push(problem(
                            "app",
                            format!(
                                "app {name:?} is not defined (apps: {}); `mailbridge app add {name} ...` defines it",
                                if known.is_empty() {
                                    "none".to_owned()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        ));
                    }
                    Some(app) if account.sign_in == SignInMethod::AppOnly => {
                        if MULTI_TENANT.contains(&app.tenant.to_ascii_lowercase().as_str()) {
                            out.push(problem(
                                "app.tenant",
                                format!(
                                    "app-only sign-in (client credentials) cannot use the tenant {:?}: set the app's tenant to the Directory (tenant) ID (Azure portal -> App registrations -> {} -> Overview)",
                                    app.tenant, app.name
                                ),
                            ));
                        }
                        if app.credential == AppCredentialConfig::None {
                            out.push(problem(
                                "app.credential",
                                format!(
                                    "app-only sign-in needs a client secret or a certificate on app {} (Azure portal -> App registrations -> {} -> Certificates & secrets)",
                                    app.name, app.name
                                ),
                            ));
                        }
                    }
                    Some(_) => {}
                },
            }
            if account.sign_in == SignInMethod::AppOnly && uses(Transport::Graph) {
                match &account.mailbox_id {
                    Some(id) if !is_guid(id) && !id.contains('@') => out.push(problem(
                        "mailbox_id",
                        format!(
                            "{id:?} is neither an Object ID (a GUID from Entra ID -> Users -> the user -> Object ID) nor a user principal name"
                        ),
                    )),
                    None if !address_ok => out.push(problem(
                        "mailbox_id",
                        "Graph app-only addresses the mailbox by its Object ID or user principal name: set mailbox_id (Entra ID -> Users -> the user -> Object ID) or make the address the user principal name",
                    )),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Checks an app registration; empty when it is ready to save.
pub fn validate_app(app: &AppConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(why) = name_problem("app", &app.name) {
        out.push(problem("name", why));
    }
    let tenant = app.tenant.trim();
    if tenant.is_empty() {
        out.push(problem(
            "tenant",
            "no tenant is set: give the Directory (tenant) ID (Azure portal -> App registrations -> the app -> Overview), a verified domain, or common / organizations / consumers",
        ));
    } else if !(is_guid(tenant)
        || MULTI_TENANT.contains(&tenant.to_ascii_lowercase().as_str())
        || is_dns_name(tenant))
        || tenant != app.tenant
    {
        out.push(problem(
            "tenant",
            format!(
                "{:?} is not a tenant: give the Directory (tenant) ID (a GUID), a verified domain (contoso.onmicrosoft.com), or common / organizations / consumers",
                app.tenant
            ),
        ));
    }
    if app.client_id.trim().is_empty() {
        out.push(problem(
            "client_id",
            "no client id is set: give the Application (client) ID (Azure portal -> App registrations -> the app -> Overview)",
        ));
    } else if app.client_id.chars().any(char::is_whitespace)
        || app.client_id.chars().count() > MAX_WORD
        || app.client_id.chars().any(char::is_control)
    {
        out.push(problem(
            "client_id",
            format!(
                "{:?} is not a client id: give the Application (client) ID, a GUID for Microsoft apps",
                app.client_id
            ),
        ));
    }
    if let Some(h) = &app.authority_host
        && let Some(why) = url_problem(h, "https://login.microsoftonline.com")
    {
        out.push(problem("authority_host", why));
    }
    if let Some(g) = &app.graph_root
        && let Some(why) = url_problem(g, "https://graph.microsoft.com")
    {
        out.push(problem("graph_root", why));
    }
    if let Some(ca) = &app.extra_ca_file
        && !ca.is_file()
    {
        out.push(problem(
            "extra_ca_file",
            format!(
                "the extra CA file {} does not exist: give the PEM file of the CA that signed the sign-in host's certificate",
                ca.display()
            ),
        ));
    }
    if let AppCredentialConfig::Certificate {
        certificate_file,
        key_file,
        ..
    } = &app.credential
    {
        for (field, path, what) in [
            (
                "credential.certificate_file",
                certificate_file,
                "the certificate (PEM) uploaded under Certificates & secrets",
            ),
            (
                "credential.key_file",
                key_file,
                "the certificate's private key (PEM)",
            ),
        ] {
            if !path.is_file() {
                out.push(problem(
                    field,
                    format!("{} does not exist: give {what}", path.display()),
                ));
            }
        }
    }
    out
}

/// The built-in provider that fits an account whose sides were given by hand: Graph is
/// Microsoft 365; EWS is Microsoft 365 on Exchange Online's hosts and Exchange
/// on-premises elsewhere; anything else is another server.
pub fn provider_for_sides(incoming: Option<&EndpointConfig>) -> &'static str {
    match incoming.map(|e| (e.transport, e)) {
        Some((Transport::Graph, _)) => "microsoft365-graph",
        Some((Transport::Ews, e)) => {
            let host = url::Url::parse(&e.host)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default();
            if EXCHANGE_ONLINE_HOSTS.contains(&host.as_str()) {
                "microsoft365-ews"
            } else {
                "exchange-onpremises"
            }
        }
        _ => "generic-imap",
    }
}

/// Exchange Online's EWS hosts (worldwide, US Government, China).
const EXCHANGE_ONLINE_HOSTS: [&str; 5] = [
    "outlook.office365.com",
    "outlook.office.com",
    "outlook.office365.us",
    "webmail.apps.mil",
    "partner.outlook.cn",
];

fn endpoint_config(e: &Endpoint) -> EndpointConfig {
    EndpointConfig {
        transport: e.transport,
        host: e.host.clone(),
        port: matches!(
            e.transport,
            Transport::Imap | Transport::Pop3 | Transport::Smtp
        )
        .then_some(e.port),
        tls: matches!(
            e.transport,
            Transport::Imap | Transport::Pop3 | Transport::Smtp
        )
        .then_some(e.tls),
        tls_name: None,
        extra_ca_file: None,
        tls_pin: None,
    }
}

/// A new account for `address` from `provider`: its endpoints, first sign-in method,
/// login format and defaults (app, extra CA file, TLS pins); the transports its tokens
/// are for follow from the sides.
pub fn from_provider(address: &str, provider: &Provider) -> AccountConfig {
    let defaults = &provider.defaults;
    let side = |e: &Endpoint, pin: &Option<String>| EndpointConfig {
        extra_ca_file: defaults.extra_ca_file.clone(),
        tls_pin: pin.clone(),
        ..endpoint_config(e)
    };
    let incoming = provider
        .incoming
        .as_ref()
        .map(|e| side(e, &defaults.incoming_tls_pin));
    let outgoing = provider
        .outgoing
        .as_ref()
        .map(|e| side(e, &defaults.outgoing_tls_pin));
    let mut account = AccountConfig {
        name: address.to_owned(),
        address: address.to_owned(),
        display_name: None,
        sign_in: provider
            .sign_in
            .first()
            .copied()
            .unwrap_or(SignInMethod::Password),
        app: defaults.app.clone(),
        transports: Vec::new(),
        login: None,
        login_format: Some(provider.login),
        provider: Some(provider.id.clone()),
        mailbox_id: None,
        usages: Vec::new(),
        download: incoming.is_some(),
        send: outgoing.is_some() || incoming.is_some(),
        incoming,
        outgoing,
        sent_copy: None,
        limits: mailbridge_types::config::Limits::default(),
    };
    account.transports = transports_of(&account);
    account
}

/// A new account for `address` from an autodetection: the deciding provider's
/// endpoints, with what the steps found put in (the EWS URL from Autodiscover for
/// Exchange on-premises; IMAP/POP3/SMTP from autoconfig or SRV for other servers).
/// `None` when no step decided and no endpoint was found.
pub fn from_detection(
    address: &str,
    detection: &crate::autodetect::Detection,
    table: &crate::provider::ProviderTable,
) -> Option<AccountConfig> {
    let provider = detection
        .provider
        .as_deref()
        .and_then(|id| table.get(id))
        .or_else(|| {
            (!detection.endpoints.is_empty())
                .then(|| table.get("generic-imap"))
                .flatten()
        })?;
    let mut account = from_provider(address, provider);
    let found = |t: Transport| detection.endpoints.iter().find(|e| e.transport == t);
    if provider.id == "exchange-onpremises"
        && let Some(ews) = found(Transport::Ews)
    {
        account.incoming = Some(endpoint_config(ews));
    }
    if provider.incoming.is_none() {
        account.incoming = found(Transport::Imap)
            .or_else(|| found(Transport::Pop3))
            .map(endpoint_config);
    }
    if provider.outgoing.is_none()
        && !matches!(
            provider.incoming.as_ref().map(|e| e.transport),
            Some(Transport::Graph | Transport::Ews)
        )
    {
        account.outgoing = found(Transport::Smtp).map(endpoint_config);
    }
    // The login autoconfig gave for the server now on the incoming side.
    if let Some(format) = detection.login_format
        && account
            .incoming
            .as_ref()
            .is_some_and(|e| matches!(e.transport, Transport::Imap | Transport::Pop3))
        && provider.incoming.is_none()
    {
        account.login_format = Some(format);
        account.login.clone_from(&detection.login);
    }
    // Endpoints found by a step trust the provider's CA too.
    for side in [account.incoming.as_mut(), account.outgoing.as_mut()]
        .into_iter()
        .flatten()
    {
        if side.extra_ca_file.is_none() {
            side.extra_ca_file
                .clone_from(&provider.defaults.extra_ca_file);
        }
    }
    account.download = account.incoming.is_some();
    account.send = account.outgoing_side().is_some() || account.outgoing.is_some();
    account.transports = transports_of(&account);
    Some(account)
}

/// The transports an account's sides use (one token per resource), in a stable order.
pub fn transports_of(account: &AccountConfig) -> Vec<Transport> {
    let mut t: Vec<Transport> = [account.incoming.as_ref(), account.outgoing.as_ref()]
        .into_iter()
        .flatten()
        .map(|e| e.transport)
        .collect();
    t.sort();
    t.dedup();
    if t.is_empty() {
        t.push(Transport::Graph);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{TlsMode, builtin};

    fn app(tenant: &str, credential: AppCredentialConfig) -> AppConfig {
        AppConfig {
            name: "contoso".into(),
            tenant: tenant.into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            cloud: mailbridge_types::config::Cloud::Global,
            authority_host: None,
            graph_root: None,
            extra_ca_file: None,
            credential,
        }
    }

    fn provider(id: &str) -> Provider {
        builtin().into_iter().find(|p| p.id == id).unwrap()
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_provider_account_with_its_app_is_valid() {
        let mut a = from_provider("helpdesk@contoso.com", &provider("microsoft365-graph"));
        a.sign_in = SignInMethod::AppOnly;
        a.app = Some("contoso".into());
        let apps = [app(
            "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
            AppCredentialConfig::Secret { expires: None },
        )];
        assert_eq!(validate(&a, &apps), vec![]);
        assert_eq!(a.outgoing_side(), a.incoming.as_ref());
        assert_eq!(a.transports, vec![Transport::Graph]);
    }

    #[test]
    fn a_providers_pin_goes_to_its_accounts() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        let mut p = provider("microsoft365-graph");
        p.defaults.incoming_tls_pin = Some(pin.clone());
        let a = from_provider("helpdesk@contoso.com", &p);
        assert_eq!(a.incoming.and_then(|e| e.tls_pin), Some(pin));
        // Providers written without defaults read as before.
        let p: crate::provider::Provider = serde_json::from_value(serde_json::json!({
            "id": "x", "name": "x", "incoming": null, "outgoing": null, "sign_in": [],
            "login": "email", "domains": [], "builtin": false
        }))
        .unwrap();
        assert!(p.defaults.is_empty());
    }

    #[test]
    fn client_credentials_with_common_names_the_directory_id() {
        let mut a = from_provider("helpdesk@contoso.com", &provider("microsoft365-imap"));
        a.sign_in = SignInMethod::AppOnly;
        a.app = Some("contoso".into());
        let p = validate(
            &a,
            &[app("common", AppCredentialConfig::Secret { expires: None })],
        );
        assert_eq!(fields(&p), vec!["app.tenant"]);
        assert!(p[0].message.contains("Directory (tenant) ID"), "{}", p[0]);
        let p = validate(&a, &[app("contoso.com", AppCredentialConfig::None)]);
        assert_eq!(fields(&p), vec!["app.credential"]);
        assert!(p[0].message.contains("Certificates & secrets"));
    }

    #[test]
    fn graph_app_only_needs_an_object_id_or_upn() {
        let mut a = from_provider("helpdesk@contoso.com", &provider("microsoft365-graph"));
        a.sign_in = SignInMethod::AppOnly;
        a.app = Some("contoso".into());
        a.address = "helpdesk".into();
        let apps = [app(
            "contoso.com",
            AppCredentialConfig::Secret { expires: None },
        )];
        let p = validate(&a, &apps);
        assert!(fields(&p).contains(&"mailbox_id"), "{p:?}");
        a.mailbox_id = Some("not-a-guid".into());
        let p = validate(&a, &apps);
        assert!(
            p.iter()
                .any(|p| p.field == "mailbox_id" && p.message.contains("GUID"))
        );
        a.mailbox_id = Some("0b8f2e4c-1d3a-4c5b-9e6f-7a8b9c0d1e2f".into());
        assert!(!fields(&validate(&a, &apps)).contains(&"mailbox_id"));
    }

    #[test]
    fn download_and_send_both_off_is_refused() {
        let mut a = from_provider("ops@example.org", &provider("microsoft365-imap"));
        a.sign_in = SignInMethod::Password;
        a.download = false;
        a.send = false;
        let p = validate(&a, &[]);
        assert_eq!(fields(&p), vec!["download, send"]);
        assert!(p[0].message.contains("at least one"));
    }

    #[test]
    fn a_limit_of_zero_is_named() {
        let mut a = from_provider("ops@example.org", &provider("microsoft365-imap"));
        a.sign_in = SignInMethod::Password;
        a.limits.max_pages = 0;
        a.limits.command_timeout_secs = 0;
        let p = validate(&a, &[]);
        assert_eq!(
            fields(&p),
            vec!["limits.max_pages", "limits.command_timeout_secs"]
        );
        assert!(p[0].message.contains("at least 1"), "{}", p[0]);
    }

    #[test]
    fn a_port_that_does_not_match_the_tls_mode_is_named() {
        let mut a = from_provider("ops@example.org", &provider("microsoft365-imap"));
        a.sign_in = SignInMethod::Password;
        a.incoming.as_mut().unwrap().port = Some(143);
        a.outgoing.as_mut().unwrap().port = Some(465);
        let p = validate(&a, &[]);
        assert_eq!(fields(&p), vec!["incoming.port", "outgoing.port"]);
        assert!(p[0].message.contains("use port 993"), "{}", p[0]);
        assert!(p[1].message.contains("set tls = implicit"), "{}", p[1]);
    }

    #[test]
    fn passwords_on_graph_and_wrong_sides_are_refused() {
        let mut a = from_provider("ops@contoso.com", &provider("microsoft365-graph"));
        a.sign_in = SignInMethod::Password;
        assert_eq!(fields(&validate(&a, &[])), vec!["sign_in"]);
        let mut b = from_provider("ops@example.org", &provider("microsoft365-imap"));
        b.sign_in = SignInMethod::Password;
        std::mem::swap(&mut b.incoming, &mut b.outgoing);
        assert_eq!(
            fields(&validate(&b, &[])),
            vec!["incoming.transport", "outgoing.transport"]
        );
        b.incoming = None;
        b.outgoing = None;
        assert_eq!(fields(&validate(&b, &[])), vec!["incoming", "outgoing"]);
    }

    #[test]
    fn hosts_ports_names_and_pins_are_checked_with_the_setting_named() {
        let mut a = from_provider("ops@example.org", &provider("microsoft365-imap"));
        a.sign_in = SignInMethod::Password;
        let set = |a: &mut AccountConfig, host: &str, port: u16| {
            let e = a.incoming.as_mut().unwrap();
            e.host = host.into();
            e.port = Some(port);
        };
        for good in [
            "mail.example.org",
            "mail.example.org.",
            "192.0.2.10",
            "::1",
            "2001:db8::1",
            "_imaps.x-1.example",
            "localhost",
        ] {
            set(&mut a, good, 993);
            assert_eq!(validate(&a, &[]), vec![], "{good}");
        }
        for (bad, says) in [
            ("mail example.org", "is not a host name"),
            ("[::1", "is not a host name"),
            ("[::1]", "without brackets"),
            ("mail.example.org:993", "holds a port"),
            ("-mail.example.org", "is not a host name"),
            ("192.0.2.300", "is not a host name"),
            ("bücher.example", "xn--"),
            ("a\u{1b}[2J.example", "is not a host name"),
        ] {
            set(&mut a, bad, 993);
            let p = validate(&a, &[]);
            assert_eq!(fields(&p), vec!["incoming.host"], "{bad}");
            assert!(p[0].message.contains(says), "{bad}: {}", p[0]);
        }
        set(&mut a, "mail.example.org", 0);
        let p = validate(&a, &[]);
        assert_eq!(fields(&p), vec!["incoming.port"]);
        assert!(p[0].message.contains("1 to 65535"), "{}", p[0]);

        set(&mut a, "mail.example.org", 993);
        a.name = "x".repeat(300);
        a.display_name = Some("y".repeat(300));
        let p = validate(&a, &[]);
        assert_eq!(fields(&p), vec!["name", "display_name"]);
        assert!(p[0].message.contains("300 characters"), "{}", p[0]);
        assert!(p[0].message.contains("at most 64"), "{}", p[0]);
        a.name = "ops:password".into();
        a.display_name = None;
        assert_eq!(fields(&validate(&a, &[])), vec!["name"]);
        a.name = "ops".into();

        let e = a.outgoing.as_mut().unwrap();
        e.tls_name = Some("mail .example.org".into());
        e.tls_pin = Some("sha1:00".into());
        assert_eq!(
            fields(&validate(&a, &[])),
            vec!["outgoing.tls_name", "outgoing.tls_pin"]
        );
        let e = a.outgoing.as_mut().unwrap();
        e.tls_name = Some("mail.example.org".into());
        e.tls_pin = Some(format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(validate(&a, &[]), vec![]);
        a.outgoing.as_mut().unwrap().tls_pin = Some(format!("sha256:{}", ["AB"; 32].join(":")));
        assert_eq!(validate(&a, &[]), vec![]);
    }

    #[test]
    fn graph_and_ews_urls_are_checked() {
        let mut a = from_provider("ops@contoso.com", &provider("exchange-onpremises"));
        a.sign_in = SignInMethod::Password;
        for good in [
            "https://mail.contoso.com/EWS/Exchange.asmx",
            "http://127.0.0.1:8400/EWS/Exchange.asmx",
            "https://[::1]:8443/EWS/Exchange.asmx",
        ] {
            a.incoming.as_mut().unwrap().host = good.into();
            assert_eq!(validate(&a, &[]), vec![], "{good}");
        }
        for (bad, says) in [
            ("https://mail contoso.com/EWS", "not a URL"),
            ("https://mail.contoso.com:0/EWS", "port 0"),
            (
                "https://user:pw@mail.contoso.com/EWS",
                "user name or password",
            ),
            ("https://mail.contoso.com/EWS?sig=abc", "query string"),
            ("https://[::1/EWS", "not a URL"),
        ] {
            a.incoming.as_mut().unwrap().host = bad.into();
            let p = validate(&a, &[]);
            assert_eq!(fields(&p), vec!["incoming.host"], "{bad}");
            assert!(p[0].message.contains(says), "{bad}: {}", p[0]);
        }
    }

    #[test]
    fn apps_are_checked_before_they_are_saved() {
        let good = app(
            "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
            AppCredentialConfig::Secret { expires: None },
        );
        assert_eq!(validate_app(&good), vec![]);
        for tenant in ["common", "contoso.onmicrosoft.com"] {
            let a = AppConfig {
                tenant: tenant.into(),
                ..good.clone()
            };
            assert_eq!(validate_app(&a), vec![], "{tenant}");
        }
        let bad = AppConfig {
            name: " spaced".into(),
            tenant: "contoso tenant".into(),
            client_id: String::new(),
            authority_host: Some("login.microsoftonline.com".into()),
            graph_root: Some("https://graph.microsoft.com:0".into()),
            extra_ca_file: Some("/nonexistent/ca.pem".into()),
            credential: AppCredentialConfig::Certificate {
                certificate_file: "/nonexistent/app.crt".into(),
                key_file: "/nonexistent/app.key".into(),
                rs256: false,
            },
            ..good.clone()
        };
        let p = validate_app(&bad);
        assert_eq!(
            fields(&p),
            vec![
                "name",
                "tenant",
                "client_id",
                "authority_host",
                "graph_root",
                "extra_ca_file",
                "credential.certificate_file",
                "credential.key_file"
            ]
        );
        assert!(p[2].message.contains("Application (client) ID"), "{}", p[2]);
    }

    #[test]
    fn a_provider_s_defaults_go_to_its_accounts() {
        let mut p = provider("generic-imap");
        p.incoming = Some(Endpoint {
            transport: Transport::Imap,
            host: "mail.acme.test".into(),
            port: 993,
            tls: TlsMode::Implicit,
        });
        p.outgoing = Some(Endpoint {
            transport: Transport::Smtp,
            host: "smtp.acme.test".into(),
            port: 465,
            tls: TlsMode::Implicit,
        });
        p.defaults = crate::provider::ProviderDefaults {
            app: Some("acme-app".into()),
            extra_ca_file: Some("/etc/acme/ca.pem".into()),
            incoming_tls_pin: Some("sha256:aa".into()),
            outgoing_tls_pin: Some("sha256:bb".into()),
        };
        let a = from_provider("x@acme.test", &p);
        assert_eq!(a.app.as_deref(), Some("acme-app"));
        let (i, o) = (a.incoming.unwrap(), a.outgoing.unwrap());
        assert_eq!(i.extra_ca_file, Some("/etc/acme/ca.pem".into()));
        assert_eq!(o.extra_ca_file, Some("/etc/acme/ca.pem".into()));
        assert_eq!(
            (i.tls_pin.as_deref(), o.tls_pin.as_deref()),
            (Some("sha256:aa"), Some("sha256:bb"))
        );
    }

    #[test]
    fn sides_given_by_hand_choose_the_provider_and_ews_sends_too() {
        let side = |transport, host: &str| EndpointConfig {
            transport,
            host: host.into(),
            port: None,
            tls: None,
            tls_name: None,
            extra_ca_file: None,
            tls_pin: None,
        };
        assert_eq!(
            provider_for_sides(Some(&side(
                Transport::Ews,
                "https://outlook.office365.com/EWS/Exchange.asmx"
            ))),
            "microsoft365-ews"
        );
        assert_eq!(
            provider_for_sides(Some(&side(
                Transport::Ews,
                "https://mail.contoso.com/EWS/Exchange.asmx"
            ))),
            "exchange-onpremises"
        );
        assert_eq!(
            provider_for_sides(Some(&side(Transport::Graph, "https://graph.microsoft.us"))),
            "microsoft365-graph"
        );
        assert_eq!(
            provider_for_sides(Some(&side(Transport::Imap, "mail.example.org"))),
            "generic-imap"
        );
        let ews = provider("microsoft365-ews");
        assert!(ews.notice.as_deref().unwrap().contains("2027-04-01"));
        let a = from_provider("ops@contoso.com", &ews);
        assert!(a.send && a.download);
        assert_eq!(a.outgoing_side(), a.incoming.as_ref());
        assert_eq!(a.sign_in, SignInMethod::AppOnly);
    }

    #[test]
    fn login_name_follows_the_format() {
        let mut a = from_provider("jane.doe@example.org", &provider("generic-imap"));
        assert_eq!(a.login_name(), "jane.doe@example.org");
        a.login_format = Some(LoginFormat::MailboxName);
        assert_eq!(a.login_name(), "jane.doe");
        a.login_format = None;
        a.login = Some("EXAMPLE\\jdoe".into());
        assert_eq!(a.login_name(), "EXAMPLE\\jdoe");
    }
}
