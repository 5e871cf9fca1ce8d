//! Autodetection: from a mail address to a provider, tenant and endpoints.
//!
//! Steps, in order, each with a timeout; every base URL and the DNS resolver are
//! injectable so tests (and national clouds, and on-premises setups) can point them
//! anywhere:
//! 1. the domain -> provider table;
//! 2. MX records (`*.mail.protection.outlook.com`, `*.mx.microsoft` -> Microsoft 365;
//!    `*.olc.protection.outlook.com` -> Outlook.com; Google -> Gmail);
//! 3. the tenant's `/{domain}/v2.0/.well-known/openid-configuration` (tenant id, cloud);
//! 4. Autodiscover v2 (EWS URL; an on-premises URL means Exchange on-premises);
//! 5. Thunderbird autoconfig (`autoconfig.<domain>`, then the ISPDB), with the
//!    placeholders `%EMAILADDRESS%`, `%EMAILLOCALPART%` and `%EMAILDOMAIN%` filled in
//!    host names and user names, and the user name read as a login format;
//! 6. SRV records (RFC 6186).
//!
//! Detection stops at the step that decides: a later step runs only while no provider
//! is decided, except Autodiscover for Exchange on-premises (whose EWS URL only it can
//! tell). The DNS steps run only with a resolver ([`NoDns`] skips them). The result
//! names the step that decided and keeps the outcome of every step that ran, and only
//! of those.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use mailbridge_types::config::{Cloud, LoginFormat, Transport};
use serde::Serialize;

use crate::provider::{Endpoint, ProviderTable, TlsMode};

/// A step of autodetection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    DomainTable,
    Mx,
    OpenIdConfiguration,
    AutodiscoverV2,
    Autoconfig,
    Srv,
}

/// What one step found.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: Step,
    /// What happened, for a person.
    pub outcome: String,
    pub elapsed_ms: u128,
}

/// The result.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Detection {
    pub address: String,
    /// The provider id, when some step decided.
    pub provider: Option<String>,
    pub decided_by: Option<Step>,
    /// The Entra tenant id, when the domain belongs to one.
    pub tenant_id: Option<String>,
    pub cloud: Option<Cloud>,
    /// Endpoints found (EWS URL from Autodiscover, IMAP/POP/SMTP from autoconfig or SRV).
    pub endpoints: Vec<Endpoint>,
    /// How the login is formed, when autoconfig said (its incoming server's
    /// `<username>`): the address, its local part, or a fixed login
    /// ([`LoginFormat::Manual`] with [`Self::login`]).
    pub login_format: Option<LoginFormat>,
    /// The login autoconfig gave, when it is neither the address nor its local part.
    pub login: Option<String>,
    pub steps: Vec<StepReport>,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub port: u16,
    pub target: String,
}

/// DNS lookups autodetection needs.
pub trait DnsLookup: Send + Sync {
    /// MX records as (preference, exchange host).
    fn mx(&self, domain: &str) -> impl Future<Output = Result<Vec<(u16, String)>, String>> + Send;
    /// SRV records of a full name such as `_imaps._tcp.example.com`.
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<SrvRecord>, String>> + Send;
    /// False when there is no DNS at all: the MX and SRV steps do not run.
    fn enabled(&self) -> bool {
        true
    }
}

/// No DNS (`--detect-no-dns`, or no resolver): the MX and SRV steps are skipped, and
/// not reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDns;

impl DnsLookup for NoDns {
    async fn mx(&self, _domain: &str) -> Result<Vec<(u16, String)>, String> {
        Ok(Vec::new())
    }

    async fn srv(&self, _name: &str) -> Result<Vec<SrvRecord>, String> {
        Ok(Vec::new())
    }

    fn enabled(&self) -> bool {
        false
    }
}

/// The system resolver (`/etc/resolv.conf`), through hickory.
#[derive(Debug)]
pub struct SystemDns(hickory_resolver::TokioResolver);

impl SystemDns {
    /// A resolver with the system configuration.
    pub fn new() -> Result<Self, String> {
        let builder =
            hickory_resolver::TokioResolver::builder_tokio().map_err(|e| e.to_string())?;
        Ok(Self(builder.build().map_err(|e| e.to_string())?))
    }
}

impl DnsLookup for SystemDns {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, String> {
        let lookup = self.0.mx_lookup(domain).await.map_err(|e| e.to_string())?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_owned(),
                )),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
        let lookup = self.0.srv_lookup(name).await.map_err(|e| e.to_string())?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    port: srv.port,
                    target: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect())
    }
}

/// Fixed answers, for tests and for air-gapped setups.
#[derive(Debug, Clone, Default)]
pub struct StaticDns {
    pub mx: BTreeMap<String, Vec<(u16, String)>>,
    pub srv: BTreeMap<String, Vec<SrvRecord>>,
}

impl DnsLookup for StaticDns {
    async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, String> {
        Ok(self.mx.get(domain).cloned().unwrap_or_default())
    }

    async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, String> {
        Ok(self.srv.get(name).cloned().unwrap_or_default())
    }
}

/// Where the HTTP steps go.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Sign-in host for the OpenID configuration step.
    pub authority_host: String,
    /// Autodiscover v2 base (`.../autodiscover/autodiscover.json`).
    pub autodiscover_url: String,
    /// Autoconfig URL templates tried in order; `{domain}` and `{email}` are replaced.
    pub autoconfig_urls: Vec<String>,
    /// Timeout of each step.
    pub step_timeout: Duration,
    /// Extra trusted CA (PEM) for the HTTP steps.
    pub extra_ca_pem: Option<String>,
    /// A pinned certificate accepted in the HTTP steps (an on-premises Autodiscover
    /// with a self-signed certificate); others are verified as usual.
    pub tls_pin: Option<mailbridge_tls::Pin>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            authority_host: "https://login.microsoftonline.com".into(),
            autodiscover_url: "https://outlook.office365.com/autodiscover/autodiscover.json".into(),
            autoconfig_urls: vec![
                "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={email}".into(),
                "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml".into(),
                "https://autoconfig.thunderbird.net/v1.1/{domain}".into(),
            ],
            step_timeout: Duration::from_secs(5),
            extra_ca_pem: None,
            tls_pin: None,
        }
    }
}

/// Error before any step ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    #[error("{0:?} is not a mail address (expected name@domain)")]
    NotAnAddress(String),
    #[error("failed to build the HTTP client")]
    Http(#[from] reqwest::Error),
    #[error("failed to build the HTTP client")]
    Tls(#[from] mailbridge_tls::ConfigError),
}

fn microsoft_mx(host: &str) -> Option<(&'static str, Cloud)> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h.ends_with(".olc.protection.outlook.com") {
        Some(("outlook-com", Cloud::Global))
    } else if h.ends_with(".mail.protection.outlook.com") || h.ends_with(".mx.microsoft") {
        Some(("microsoft365-graph", Cloud::Global))
    } else if h.ends_with(".mail.protection.office365.us") {
        Some(("microsoft365-graph", Cloud::UsGovHigh))
    } else if h.ends_with(".mail.protection.partner.outlook.cn") {
        Some(("microsoft365-graph", Cloud::China))
    } else if h.ends_with(".google.com") || h.ends_with(".googlemail.com") {
        Some(("gmail", Cloud::Global))
    } else {
        None
    }
}

/// Runs autodetection for `address`.
pub async fn detect(
    address: &str,
    table: &ProviderTable,
    dns: &impl DnsLookup,
    options: &DetectOptions,
) -> Result<Detection, DetectError> {
    let address = address.trim();
    let Some((_, domain)) = address
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && d.contains('.'))
    else {
        return Err(DetectError::NotAnAddress(address.to_owned()));
    };
    let domain = domain.to_ascii_lowercase();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.step_timeout)
        .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
    if let Some(pin) = options.tls_pin {
        let trust = mailbridge_tls::TlsSettings {
            extra_ca_pem: options.extra_ca_pem.clone(),
            server_name: None,
            pin: Some(pin),
        };
        builder = builder.tls_backend_preconfigured(trust.client_config()?);
    } else if let Some(pem) = &options.extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder.build()?;
    let mut d = Detection {
        address: address.to_owned(),
        ..Detection::default()
    };
    // 1. Domain table.
    let start = Instant::now();
    let outcome = match table.for_domain(&domain) {
        Some(p) => {
            decide(&mut d, &p.id, Step::DomainTable);
            format!("{domain} is mapped to {}", p.name)
        }
        None => format!("{domain} is not in the domain table"),
    };
    d.steps.push(report(Step::DomainTable, outcome, start));

    // 2. MX, when still undecided.
    if d.provider.is_none() && dns.enabled() {
        mx_step(&mut d, &domain, dns, options).await;
    }

    // 3. OpenID configuration of the domain's tenant, when still undecided.
    if d.provider.is_none() {
        openid_step(&mut d, &domain, &http, options).await;
    }

    // 4. Autodiscover v2, when still undecided, or for Exchange on-premises (the EWS URL).
    if d.provider
        .as_deref()
        .is_none_or(|p| p == "exchange-onpremises")
    {
        autodiscover_step(&mut d, address, &http, options).await;
    }

    // 5. Thunderbird autoconfig, when still undecided.
    if d.provider.is_none() {
        autoconfig_step(&mut d, address, &domain, &http, options).await;
    }

    // 6. SRV records (RFC 6186), when still undecided.
    if d.provider.is_none() && dns.enabled() {
        srv_step(&mut d, &domain, dns, options).await;
    }
    Ok(d)
}

/// Sets the provider when none is set yet.
fn decide(d: &mut Detection, provider: &str, step: Step) {
    if d.provider.is_none() {
        d.provider = Some(provider.to_owned());
        d.decided_by = Some(step);
    }
}

async fn mx_step(d: &mut Detection, domain: &str, dns: &impl DnsLookup, options: &DetectOptions) {
    let start = Instant::now();
    let outcome = match tokio::time::timeout(options.step_timeout, dns.mx(domain)).await {
        Err(_) => "timed out".to_owned(),
        Ok(Err(e)) => format!("lookup failed: {e}"),
        Ok(Ok(mut records)) if !records.is_empty() => {
            records.sort();
            let hosts: Vec<&str> = records.iter().map(|(_, h)| h.as_str()).collect();
            match records.iter().find_map(|(_, h)| microsoft_mx(h)) {
                Some((provider, cloud)) => {
                    decide(d, provider, Step::Mx);
                    if provider != "gmail" {
                        d.cloud = Some(cloud);
                    }
                    format!("MX {} points to {provider}", hosts.join(", "))
                }
                None => format!("MX {} matches no known provider", hosts.join(", ")),
            }
        }
        Ok(Ok(_)) => "no MX records".to_owned(),
    };
    d.steps.push(report(Step::Mx, outcome, start));
}

async fn openid_step(
    d: &mut Detection,
    domain: &str,
    http: &reqwest::Client,
    options: &DetectOptions,
) {
    let start = Instant::now();
    let url = format!(
        "{}/{domain}/v2.0/.well-known/openid-configuration",
        options.authority_host.trim_end_matches('/')
    );
    let shown = mailbridge_http::redact(&url);
    let outcome = match http.get(&url).send().await {
        Err(e) => format!("{shown} could not be reached: {}", e.without_url()),
        Ok(r) if r.status().is_success() => match read_json(r).await {
            Ok(v) => match read_openid(&v) {
                None => format!(
                    "{shown} answered JSON that is not an OpenID configuration (no issuer URL)"
                ),
                Some((tenant, cloud)) => {
                    d.cloud = Some(d.cloud.unwrap_or(cloud));
                    d.tenant_id.clone_from(&tenant);
                    decide(d, "microsoft365-graph", Step::OpenIdConfiguration);
                    format!(
                        "{domain} belongs to Entra tenant {}",
                        tenant.unwrap_or_else(|| "?".into())
                    )
                }
            },
            Err(e) => format!("{shown}: {e}"),
        },
        Ok(r) => format!(
            "{domain} is not an Entra tenant (HTTP {})",
            r.status().as_u16()
        ),
    };
    d.steps
        .push(report(Step::OpenIdConfiguration, outcome, start));
}

async fn autodiscover_step(
    d: &mut Detection,
    address: &str,
    http: &reqwest::Client,
    options: &DetectOptions,
) {
    {
        let start = Instant::now();
        let url = format!(
            "{}/v1.0/{address}?Protocol=EWS",
            options.autodiscover_url.trim_end_matches('/')
        );
        let shown = mailbridge_http::redact(&url);
        let outcome = match http.get(&url).send().await {
            Err(e) => format!("{shown} could not be reached: {}", e.without_url()),
            Ok(r) if r.status().is_success() => match read_json(r).await {
                Ok(v) => match read_autodiscover(&v)
                    .as_deref()
                    .map(|ews| own_ews_url(&url, ews).map(str::to_owned))
                {
                    // An EWS URL on another scheme, host or port than the Autodiscover
                    // endpoint asked is not taken: the account's credentials would go
                    // there.
                    Some(Err(foreign)) => format!(
                        "Autodiscover answered an EWS URL on another server, not used: {foreign}; if it is your Exchange server, set the account's EWS URL to it by hand"
                    ),
                    Some(Ok(ews)) => {
                        let exchange_online =
                            d.tenant_id.is_some() || ews.contains("outlook.office365.com");
                        decide(
                            d,
                            if exchange_online {
                                "microsoft365-graph"
                            } else {
                                "exchange-onpremises"
                            },
                            Step::AutodiscoverV2,
                        );
                        d.endpoints.push(Endpoint {
                            transport: Transport::Ews,
                            host: ews.clone(),
                            port: 443,
                            tls: TlsMode::Implicit,
                        });
                        format!("EWS at {}", mailbridge_http::redact(&ews))
                    }
                    None => "answer has no http(s) Url".to_owned(),
                },
                Err(e) => format!("{shown}: {e}"),
            },
            Ok(r) if r.status().is_redirection() => {
                "no Exchange Online mailbox for this address (redirected)".to_owned()
            }
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
        };
        d.steps.push(report(Step::AutodiscoverV2, outcome, start));
    }
}

async fn autoconfig_step(
    d: &mut Detection,
    address: &str,
    domain: &str,
    http: &reqwest::Client,
    options: &DetectOptions,
) {
    {
        let start = Instant::now();
        let mut outcome = "no autoconfig document found".to_owned();
        for template in &options.autoconfig_urls {
            let url = template
                .replace("{domain}", domain)
                .replace("{email}", address);
            let Ok(r) = http.get(&url).send().await else {
                continue;
            };
            if !r.status().is_success() {
                continue;
            }
            let text = match mailbridge_http::bounded_body(r, MAX_DOCUMENT).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    outcome = format!("{}: {e}", mailbridge_http::redact(&url));
                    continue;
                }
            };
            let servers = autoconfig_servers(&text, address);
            if !servers.is_empty() {
                decide(d, "generic-imap", Step::Autoconfig);
                let endpoints: Vec<Endpoint> = servers.iter().map(|s| s.endpoint.clone()).collect();
                outcome = format!(
                    "{}: {}",
                    mailbridge_http::redact(&url),
                    describe(&endpoints)
                );
                // The login of the server the account reads from (IMAP, else POP3).
                let incoming = [Transport::Imap, Transport::Pop3]
                    .into_iter()
                    .find_map(|t| servers.iter().find(|s| s.endpoint.transport == t));
                if let Some(username) = incoming.and_then(|s| s.username.as_deref()) {
                    let (format, login) = login_format_of(username, address);
                    d.login_format = Some(format);
                    d.login = login;
                }
                d.endpoints.extend(endpoints);
                break;
            }
        }
        d.steps.push(report(Step::Autoconfig, outcome, start));
    }
}

async fn srv_step(d: &mut Detection, domain: &str, dns: &impl DnsLookup, options: &DetectOptions) {
    {
        let start = Instant::now();
        let mut found = Vec::new();
        for (service, transport, tls) in [
            ("_imaps._tcp", Transport::Imap, TlsMode::Implicit),
            ("_imap._tcp", Transport::Imap, TlsMode::StartTls),
            ("_pop3s._tcp", Transport::Pop3, TlsMode::Implicit),
            ("_submissions._tcp", Transport::Smtp, TlsMode::Implicit),
            ("_submission._tcp", Transport::Smtp, TlsMode::StartTls),
        ] {
            let name = format!("{service}.{domain}");
            if let Ok(Ok(mut records)) =
                tokio::time::timeout(options.step_timeout, dns.srv(&name)).await
            {
                records.sort_by_key(|r| r.priority);
                // A target of "." means "not offered" (RFC 6186 §3.4).
                if let Some(r) = records
                    .into_iter()
                    .find(|r| !r.target.is_empty() && r.target != ".")
                    && !found.iter().any(|e: &Endpoint| e.transport == transport)
                {
                    found.push(Endpoint {
                        transport,
                        host: r.target,
                        port: r.port,
                        tls,
                    });
                }
            }
        }
        let outcome = if found.is_empty() {
            "no SRV records".to_owned()
        } else {
            decide(d, "generic-imap", Step::Srv);
            describe(&found)
        };
        d.endpoints.extend(found);
        d.steps.push(report(Step::Srv, outcome, start));
    }
}

/// Largest document read from an autodetection endpoint (OpenID configuration,
/// Autodiscover, autoconfig): each is a few kilobytes.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// A JSON document of at most [`MAX_DOCUMENT`] bytes; the reason, for a person, when
/// it is not one.
async fn read_json(r: reqwest::Response) -> Result<serde_json::Value, String> {
    let bytes = mailbridge_http::bounded_body(r, MAX_DOCUMENT)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("answered JSON mailbridge does not understand: {e}"))
}

fn report(step: Step, outcome: String, start: Instant) -> StepReport {
    StepReport {
        step,
        outcome,
        elapsed_ms: start.elapsed().as_millis(),
    }
}

fn describe(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| format!("{:?} {}:{} {:?}", e.transport, e.host, e.port, e.tls))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an OpenID configuration document says: the tenant id (a GUID segment of the
/// issuer) and the cloud. `None` when it is not one: no issuer, or one that is not a URL.
fn read_openid(v: &serde_json::Value) -> Option<(Option<String>, Cloud)> {
    let issuer = v.get("issuer")?.as_str()?;
    url::Url::parse(issuer).ok()?;
    let tenant = issuer.split('/').find(|s| is_guid(s)).map(str::to_owned);
    let cloud = match v.get("cloud_instance_name").and_then(|c| c.as_str()) {
        Some("microsoftonline.us") => Cloud::UsGovHigh,
        Some(c) if c.contains(".cn") => Cloud::China,
        _ => Cloud::Global,
    };
    Some((tenant, cloud))
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A host name, an IP address, or a host name with autoconfig placeholders
/// (`%EMAILDOMAIN%`): nothing else belongs in `<hostname>`.
fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '%' | ':' | '[' | ']')
        })
}

/// `ews` when it is on the scheme, host and port of the Autodiscover URL that gave it.
fn own_ews_url<'a>(
    autodiscover: &str,
    ews: &'a str,
) -> Result<&'a str, mailbridge_http::ForeignUrl> {
    let origin = url::Url::parse(autodiscover).map_err(|_| mailbridge_http::ForeignUrl {
        endpoint: mailbridge_http::redact(autodiscover),
        link: mailbridge_http::redact(ews),
    })?;
    mailbridge_http::check_origin(&origin, ews).map(|_| ews)
}

/// An Autodiscover v2 answer read from its bytes: the EWS URL, when the answer is
/// JSON with an http(s) `Url`.
/// <https://learn.microsoft.com/exchange/client-developer/exchange-web-services/autodiscover-for-exchange>
pub fn parse_autodiscover(body: &[u8]) -> Option<String> {
    if body.len() > MAX_DOCUMENT {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    read_autodiscover(&v)
}

/// The EWS URL of an Autodiscover v2 answer, when it is an http(s) URL, as the URL
/// parser reads it (`https:/x.example` is `https://x.example/`): the text kept is
/// the URL that was checked.
fn read_autodiscover(v: &serde_json::Value) -> Option<String> {
    let u = v.get("Url")?.as_str()?;
    let parsed = url::Url::parse(u).ok()?;
    (matches!(parsed.scheme(), "https" | "http") && parsed.host().is_some())
        .then(|| parsed.to_string())
}

/// A server of an autoconfig document, placeholders filled for one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoconfigServer {
    pub endpoint: Endpoint,
    /// `<username>`, when given.
    pub username: Option<String>,
}

/// `template` with the autoconfig placeholders filled for `address`:
/// `%EMAILADDRESS%`, `%EMAILLOCALPART%` and `%EMAILDOMAIN%` (lower case).
/// <https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat>
pub fn fill_placeholders(template: &str, address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let domain = domain.to_ascii_lowercase();
    let values = [
        ("%EMAILADDRESS%", address),
        ("%EMAILLOCALPART%", local),
        ("%EMAILDOMAIN%", domain.as_str()),
    ];
    // One pass: a value is never searched for placeholders again.
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('%') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let tail = rest.get(at..).unwrap_or_default();
        if let Some((name, value)) = values.iter().find(|(name, _)| tail.starts_with(name)) {
            out.push_str(value);
            rest = tail.get(name.len()..).unwrap_or_default();
        } else {
            out.push('%');
            rest = tail.get(1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    out
}

/// The login format a filled-in `<username>` stands for: the address, its local part,
/// or (anything else, e.g. `EXAMPLE\%EMAILLOCALPART%`) that login as given.
fn login_format_of(username: &str, address: &str) -> (LoginFormat, Option<String>) {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    if username.eq_ignore_ascii_case(address) {
        (LoginFormat::Email, None)
    } else if username == local {
        (LoginFormat::MailboxName, None)
    } else {
        (LoginFormat::Manual, Some(username.to_owned()))
    }
}

/// The servers of an autoconfig document for `address`, placeholders filled in host
/// names and user names. A host name still holding a `%` (an unknown placeholder) is
/// left out, and so is a user name that does.
pub fn autoconfig_servers(xml: &str, address: &str) -> Vec<AutoconfigServer> {
    parse_autoconfig_servers(xml)
        .into_iter()
        .filter_map(|(mut endpoint, username)| {
            endpoint.host = fill_placeholders(&endpoint.host, address);
            if endpoint.host.contains('%') || !is_host_name(&endpoint.host) {
                return None;
            }
            let username = username
                .map(|u| fill_placeholders(u.trim(), address))
                .filter(|u| !u.is_empty() && !u.contains('%'));
            Some(AutoconfigServer { endpoint, username })
        })
        .collect()
}

/// Reads the IMAP, POP3 and SMTP servers of a Thunderbird autoconfig document
/// (unknown server types such as `ews` or `graph` are skipped), placeholders as
/// written; [`autoconfig_servers`] fills them.
pub fn parse_autoconfig(xml: &str) -> Vec<Endpoint> {
    parse_autoconfig_servers(xml)
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

fn parse_autoconfig_servers(xml: &str) -> Vec<(Endpoint, Option<String>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut current: Option<(Transport, BTreeMap<String, String>)> = None;
    let mut field: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if name == "incomingServer" || name == "outgoingServer" {
                    let kind = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"type")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                    current = match kind.as_deref() {
                        Some("imap") => Some((Transport::Imap, BTreeMap::new())),
                        Some("pop3") => Some((Transport::Pop3, BTreeMap::new())),
                        Some("smtp") => Some((Transport::Smtp, BTreeMap::new())),
                        _ => None,
                    };
                } else if current.is_some() {
                    field = Some(name);
                }
            }
            // A value can come in pieces: text, `&amp;`-style references, CDATA.
            Ok(Event::Text(t)) => {
                if let (Some((_, fields)), Some(f)) = (current.as_mut(), field.as_ref())
                    && let Ok(text) = t.decode()
                {
                    fields.entry(f.clone()).or_default().push_str(&text);
                }
            }
            Ok(Event::CData(t)) => {
                if let (Some((_, fields)), Some(f)) = (current.as_mut(), field.as_ref()) {
                    fields
                        .entry(f.clone())
                        .or_default()
                        .push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let (Some((_, fields)), Some(f)) = (current.as_mut(), field.as_ref()) {
                    let c = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        Ok(None) => match &*r {
                            b"lt" => Some('<'),
                            b"gt" => Some('>'),
                            b"amp" => Some('&'),
                            b"quot" => Some('"'),
                            b"apos" => Some('\''),
                            _ => None,
                        },
                        Err(_) => None,
                    };
                    // An unknown entity makes the value unusable.
                    let value = fields.entry(f.clone()).or_default();
                    match c {
                        Some(c) => value.push(c),
                        None => value.push('\u{fffd}'),
                    }
                }
            }
            Ok(Event::End(e)) => {
                let name = e.name();
                if (name.as_ref() == b"incomingServer" || name.as_ref() == b"outgoingServer")
                    && let Some((transport, fields)) = current.take()
                {
                    let port = fields.get("port").and_then(|p| p.parse().ok());
                    let tls = match fields.get("socketType").map(String::as_str) {
                        Some("SSL") => Some(TlsMode::Implicit),
                        Some("STARTTLS") => Some(TlsMode::StartTls),
                        Some("plain") => Some(TlsMode::None),
                        _ => None,
                    };
                    if let (Some(host), Some(port), Some(tls)) = (
                        fields.get("hostname").filter(|h| is_host_name(h)),
                        port,
                        tls,
                    ) {
                        out.push((
                            Endpoint {
                                transport,
                                host: host.clone(),
                                port,
                                tls,
                            },
                            fields.get("username").cloned(),
                        ));
                    }
                }
                field = None;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office365_ispdb_entry_yields_imap_pop_and_smtp() {
        let xml = r#"<clientConfig version="1.1"><emailProvider id="office365.com">
          <domain>office365.com</domain>
          <incomingServer type="imap"><hostname>outlook.office365.com</hostname><port>993</port><socketType>SSL</socketType><authentication>OAuth2</authentication></incomingServer>
          <incomingServer type="pop3"><hostname>outlook.office365.com</hostname><port>995</port><socketType>SSL</socketType></incomingServer>
          <incomingServer type="ews"><username>%EMAILADDRESS</username><url>https://outlook.office365.com/ews/exchange.asmx</url></incomingServer>
          <!-- a comment -->
          <outgoingServer type="smtp"><hostname>smtp.office365.com</hostname><port>587</port><socketType>STARTTLS</socketType></outgoingServer>
        </emailProvider></clientConfig>"#;
        let e = parse_autoconfig(xml);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].host, "outlook.office365.com");
        assert_eq!(e[0].tls, TlsMode::Implicit);
        assert_eq!(e[2].transport, Transport::Smtp);
        assert_eq!(e[2].tls, TlsMode::StartTls);
    }

    #[test]
    fn placeholders_are_filled_in_hosts_and_user_names() {
        let xml = r#"<clientConfig version="1.1"><emailProvider id="x">
          <incomingServer type="imap"><hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILLOCALPART%</username></incomingServer>
          <incomingServer type="pop3"><hostname>%EMAILLOCALPART%.pop.%EMAILDOMAIN%</hostname><port>995</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
          <incomingServer type="imap"><hostname>%UNKNOWN%.example</hostname><port>993</port><socketType>SSL</socketType></incomingServer>
          <outgoingServer type="smtp"><hostname>smtp.%EMAILDOMAIN%</hostname><port>587</port><socketType>STARTTLS</socketType><username>CORP\%EMAILLOCALPART%</username></outgoingServer>
        </emailProvider></clientConfig>"#;
        let servers = autoconfig_servers(xml, "Jane.Doe@Example.ORG");
        let got: Vec<(&str, Option<&str>)> = servers
            .iter()
            .map(|s| (s.endpoint.host.as_str(), s.username.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("imap.example.org", Some("Jane.Doe")),
                ("Jane.Doe.pop.example.org", Some("Jane.Doe@Example.ORG")),
                ("smtp.example.org", Some("CORP\\Jane.Doe")),
            ]
        );
        let a = "jane@example.org";
        assert_eq!(
            login_format_of("jane@example.org", a),
            (LoginFormat::Email, None)
        );
        assert_eq!(login_format_of("jane", a), (LoginFormat::MailboxName, None));
        assert_eq!(
            login_format_of("CORP\\jane", a),
            (LoginFormat::Manual, Some("CORP\\jane".to_owned()))
        );
        // A local part holding a placeholder's name is not filled twice.
        assert_eq!(
            fill_placeholders("%EMAILLOCALPART%.%EMAILDOMAIN%", "%EMAILDOMAIN%@x.org"),
            "%EMAILDOMAIN%.x.org"
        );
    }

    #[test]
    fn hostile_autoconfig_documents_give_nothing_and_do_not_panic() {
        for xml in [
            "",
            "<",
            "<incomingServer type=\"imap\"><port>99999</port>",
            "\u{0}\u{1}",
            "<a><b></a>",
        ] {
            let _ = parse_autoconfig(xml);
        }
        assert!(parse_autoconfig("<incomingServer type=\"imap\"><hostname>x</hostname><port>abc</port><socketType>SSL</socketType></incomingServer>").is_empty());
    }

    #[test]
    fn mx_patterns() {
        assert_eq!(
            microsoft_mx("contoso-com.mail.protection.outlook.com")
                .unwrap()
                .0,
            "microsoft365-graph"
        );
        assert_eq!(
            microsoft_mx("contoso-com.a1b2-v1.mx.microsoft.").unwrap().0,
            "microsoft365-graph"
        );
        assert_eq!(
            microsoft_mx("x.mail.protection.office365.us").unwrap().1,
            Cloud::UsGovHigh
        );
        assert_eq!(
            microsoft_mx("hotmail-com.olc.protection.outlook.com")
                .unwrap()
                .0,
            "outlook-com"
        );
        assert_eq!(microsoft_mx("aspmx.l.google.com").unwrap().0, "gmail");
        assert!(microsoft_mx("mx.example.net").is_none());
    }
}

#[cfg(test)]
mod prop_tests {
    use std::fmt::Write as _;

    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,30}".prop_map(Value::from),
            Just(Value::from(
                "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
            )),
            Just(Value::from("javascript:alert(1)")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("issuer".to_owned()),
                        Just("Url".to_owned()),
                        Just("cloud_instance_name".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Writes an autoconfig document for `servers`, each value written with `how`.
    fn autoconfig(servers: &[(Transport, String, u16, TlsMode)], how: u8) -> String {
        let encode = |v: &str| -> String {
            match how % 3 {
                0 => v.to_owned(),
                1 => v.chars().fold(String::new(), |mut out, c| {
                    let _ = write!(out, "&#{};", u32::from(c));
                    out
                }),
                _ => format!("<![CDATA[{v}]]>"),
            }
        };
        let mut doc = String::from(
            "<?xml version=\"1.0\"?>\n<clientConfig version=\"1.1\"><emailProvider id=\"x\"><!-- c -->",
        );
        for (transport, host, port, tls) in servers {
            let (tag, kind) = match transport {
                Transport::Imap => ("incomingServer", "imap"),
                Transport::Pop3 => ("incomingServer", "pop3"),
                _ => ("outgoingServer", "smtp"),
            };
            let socket = match tls {
                TlsMode::Implicit => "SSL",
                TlsMode::StartTls => "STARTTLS",
                TlsMode::None => "plain",
                TlsMode::Auto => "auto",
            };
            let _ = write!(
                doc,
                "<{tag} type=\"{kind}\">\n  <hostname>{}</hostname><port>{}</port><socketType>{}</socketType><authentication>OAuth2</authentication></{tag}>",
                encode(host),
                encode(&port.to_string()),
                encode(socket),
            );
        }
        doc.push_str("</emailProvider></clientConfig>");
        doc
    }

    fn server() -> impl Strategy<Value = (Transport, String, u16, TlsMode)> {
        (
            prop_oneof![
                Just(Transport::Imap),
                Just(Transport::Pop3),
                Just(Transport::Smtp)
            ],
            "[a-z0-9][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,10}){0,3}",
            any::<u16>(),
            prop_oneof![
                Just(TlsMode::Implicit),
                Just(TlsMode::StartTls),
                Just(TlsMode::None)
            ],
        )
    }

    #[test]
    fn values_written_with_references_or_cdata_are_read_whole() {
        // Found by `written_documents_read_back`: `imap.&#101;xample.org` was read as
        // "xample.org" (the last text piece), and CDATA values were dropped.
        let doc = r#"<clientConfig><emailProvider><incomingServer type="imap"><hostname>imap.&#101;xample.org</hostname><port><![CDATA[993]]></port><socketType>SSL</socketType></incomingServer></emailProvider></clientConfig>"#;
        let e = parse_autoconfig(doc);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].host, "imap.example.org");
        assert_eq!(e[0].port, 993);
        // A value with an unknown entity or markup-ish text is not a host name.
        let bad = doc.replace("imap.&#101;xample.org", "imap.&bogus;.org");
        assert!(parse_autoconfig(&bad).is_empty());
        let bad = doc.replace("imap.&#101;xample.org", "imap &lt;x&gt;");
        assert!(parse_autoconfig(&bad).is_empty());
    }

    #[test]
    fn json_that_is_not_an_openid_document_decides_nothing() {
        // Found by `openid_and_autodiscover_answers_of_any_shape`: `{}` or an issuer of
        // the wrong type decided "Microsoft 365" with tenant "?".
        for v in [
            json!({}),
            json!([]),
            json!({"issuer": 5}),
            json!({"issuer": "not a url"}),
        ] {
            assert!(read_openid(&v).is_none(), "{v}");
        }
        let (tenant, cloud) = read_openid(&json!({
            "issuer": "https://login.microsoftonline.us/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "cloud_instance_name": "microsoftonline.us"
        }))
        .unwrap();
        assert_eq!(
            tenant.as_deref(),
            Some("9188040d-6c67-4c5b-b112-36a304b66dad")
        );
        assert_eq!(cloud, Cloud::UsGovHigh);
        assert!(
            read_openid(&json!({"issuer": "https://x/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz/"}))
                .unwrap()
                .0
                .is_none()
        );
        for v in [
            json!({"Url": 1}),
            json!({"Url": ""}),
            json!({"Url": "javascript:alert(1)"}),
            json!({"Url": "file:///etc/passwd"}),
        ] {
            assert!(read_autodiscover(&v).is_none(), "{v}");
        }
        assert_eq!(
            read_autodiscover(&json!({"Url": "https://outlook.office365.com/EWS/Exchange.asmx"}))
                .as_deref(),
            Some("https://outlook.office365.com/EWS/Exchange.asmx")
        );
        // Found by the autodiscover_json fuzz target: the answer's text was kept
        // although the URL parser read another URL from it.
        assert_eq!(
            parse_autodiscover(br#"{"Url":"https:/.contoso.com/EWS/Exchange.asmx"}"#).as_deref(),
            Some("https://.contoso.com/EWS/Exchange.asmx")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            for e in parse_autoconfig(&s) {
                prop_assert!(is_host_name(&e.host));
            }
        }

        #[test]
        fn xml_ish_text_never_panics(s in "(<incomingServer type=\"imap\">|</incomingServer>|<hostname>|</hostname>|<port>|</port>|<socketType>|SSL|993|&[a-z#0-9]{0,4};?|<!\\[CDATA\\[|\\]\\]>|<!DOCTYPE x>|[a-z. ]){0,40}") {
            for e in parse_autoconfig(&s) {
                prop_assert!(is_host_name(&e.host));
            }
        }

        /// A document written out any way reads back as the servers written.
        #[test]
        fn written_documents_read_back(
            servers in proptest::collection::vec(server(), 0..5),
            how in any::<u8>(),
        ) {
            let doc = autoconfig(&servers, how);
            let got: Vec<(Transport, String, u16, TlsMode)> = parse_autoconfig(&doc)
                .into_iter()
                .map(|e| (e.transport, e.host, e.port, e.tls))
                .collect();
            prop_assert_eq!(got, servers, "{}", doc);
        }

        /// A truncated document gives a prefix of its servers, never a wrong one.
        #[test]
        fn truncated_documents_give_a_prefix(
            servers in proptest::collection::vec(server(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let doc = autoconfig(&servers, 0);
            let end = cut.index(doc.len());
            let got: Vec<(Transport, String, u16, TlsMode)> = parse_autoconfig(doc.get(..end).unwrap_or_default())
                .into_iter()
                .map(|e| (e.transport, e.host, e.port, e.tls))
                .collect();
            prop_assert!(servers.starts_with(&got), "{:?} from {}", got, doc.get(..end).unwrap_or_default());
        }

        #[test]
        fn openid_and_autodiscover_answers_of_any_shape(v in any_json()) {
            if let Some((tenant, _)) = read_openid(&v) {
                prop_assert!(v["issuer"].as_str().is_some());
                prop_assert!(tenant.is_none_or(|t| is_guid(&t)));
            }
            if let Some(u) = read_autodiscover(&v) {
                prop_assert!(u.starts_with("http://") || u.starts_with("https://"));
            }
        }
    }
}
