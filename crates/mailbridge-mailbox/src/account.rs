//! Accounts: made from a provider (or an autodetection), and checked before they are
//! saved, with messages that say what is wrong and what to change.

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
    match endpoint.transport {
        Transport::Graph | Transport::Ews => {
            if !(endpoint.host.starts_with("https://") || endpoint.host.starts_with("http://")) {
                out.push(problem(
                    format!("{side}.host"),
                    format!(
                        "{:?} needs a URL such as {}, not {:?}",
                        endpoint.transport,
                        if endpoint.transport == Transport::Graph {
                            "https://graph.microsoft.com"
                        } else {
                            "https://mail.example.com/EWS/Exchange.asmx"
                        },
                        endpoint.host
                    ),
                ));
            }
        }
        t => {
            if endpoint.host.contains("://") {
                out.push(problem(
                    format!("{side}.host"),
                    format!("{t:?} needs a host name, not a URL ({:?})", endpoint.host),
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
    if account.name.trim().is_empty() {
        out.push(problem("name", "the account has no name"));
    }
    let address_ok = account
        .address
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !account.address.contains(' '));
    if !address_ok {
        out.push(problem(
            "address",
            format!("{:?} is not a mail address (name@domain)", account.address),
        ));
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
                        "{method} sign-in needs an app: set app = the name of an app registration (`mailbridge account import` or the [[app]] table of the configuration)"
                    ),
                )),
                Some(name) => match apps.iter().find(|a| &a.name == name) {
                    None => {
                        let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
                        out.push(problem(
                            "app",
                            format!(
                                "app {name:?} is not defined (apps: {})",
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
        tls_pin: e.tls_pin.clone(),
    }
}

/// A new account for `address` from `provider`: its endpoints, first sign-in method and
/// login format; the transports its tokens are for follow from the sides.
pub fn from_provider(address: &str, provider: &Provider) -> AccountConfig {
    let incoming = provider.incoming.as_ref().map(endpoint_config);
    let outgoing = provider.outgoing.as_ref().map(endpoint_config);
    let mut account = AccountConfig {
        name: address.to_owned(),
        address: address.to_owned(),
        display_name: None,
        sign_in: provider
            .sign_in
            .first()
            .copied()
            .unwrap_or(SignInMethod::Password),
        app: None,
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
    use crate::provider::builtin;

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
        if let Some(e) = p.incoming.as_mut() {
            e.tls_pin = Some(pin.clone());
        }
        let a = from_provider("helpdesk@contoso.com", &p);
        assert_eq!(a.incoming.and_then(|e| e.tls_pin), Some(pin));
        // Providers written without one read as before.
        let e: crate::provider::Endpoint = serde_json::from_str(
            r#"{"transport": "imap", "host": "h", "port": 993, "tls": "implicit"}"#,
        )
        .unwrap();
        assert_eq!(e.tls_pin, None);
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
