//! Apps and accounts, shared by every crate: an app registration (tenant, client id,
//! cloud, endpoints, credential) and an account (address, login, sign-in, incoming and
//! outgoing sides, usages). They are read from a TOML file and kept in the store.
//! [`ConfigFile::problems`] finds, without connecting, the per-endpoint settings of a
//! hand-written file that cannot work (a malformed `tls_pin`, port 0, no host, a bad
//! `tls_name`).
//!
//! Secrets are never part of these types: they live sealed in the store under the ids
//! [`AppConfig::secret_id`] and [`AccountConfig::refresh_token_id`] /
//! [`AccountConfig::password_id`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A national cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// Worldwide, including GCC.
    #[default]
    Global,
    /// US Government L4 (GCC High).
    UsGovHigh,
    /// US Government L5 (DoD).
    UsGovDod,
    /// China, operated by 21Vianet.
    China,
}

impl Cloud {
    /// The sign-in host.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGovHigh | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The `cloud_instance_name` of the identity platform's discovery document.
    pub fn instance_name(self) -> &'static str {
        match self {
            Cloud::Global => "microsoftonline.com",
            Cloud::UsGovHigh | Cloud::UsGovDod => "microsoftonline.us",
            Cloud::China => "partner.microsoftonline.cn",
        }
    }

    /// The Graph host (the `msgraph_host` of the discovery document).
    pub fn graph_host(self) -> &'static str {
        self.graph_root().trim_start_matches("https://")
    }

    /// The Graph root (the resource of Graph scopes).
    pub fn graph_root(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGovHigh => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }
}

/// A mail transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Graph,
    Imap,
    Pop3,
    Smtp,
    Ews,
}

/// How an account signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignInMethod {
    /// Basic: a user name and password (other servers, on-premises Exchange).
    Password,
    /// A user signs in (browser with PKCE, device code, or paste-the-URL).
    Delegated,
    /// The app signs in as itself (client credentials).
    AppOnly,
}

/// How the app proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AppCredentialConfig {
    /// A public client: no credential (device code, loopback sign-in).
    #[default]
    None,
    /// A client secret, sealed in the store under [`AppConfig::secret_id`]. The expiry
    /// is what the portal showed when it was created.
    Secret {
        #[serde(default, with = "time::serde::rfc3339::option")]
        expires: Option<OffsetDateTime>,
    },
    /// A certificate; the key file is read when needed (or sealed in the store).
    Certificate {
        certificate_file: PathBuf,
        key_file: PathBuf,
        /// `PS256` + `x5t#S256` (default) or `RS256` + `x5t`.
        #[serde(default)]
        rs256: bool,
    },
}

/// An app registration as mailbridge uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Local name, used by accounts.
    pub name: String,
    /// Directory (tenant) ID, a verified domain, or `common` / `organizations` / `consumers`.
    pub tenant: String,
    /// Application (client) ID.
    pub client_id: String,
    #[serde(default)]
    pub cloud: Cloud,
    /// Sign-in host override (national clouds, the sandbox): replaces the cloud's.
    #[serde(default)]
    pub authority_host: Option<String>,
    /// Graph root override: a national cloud's Graph root. It is the tokens'
    /// resource only when it is one (see [`AppConfig::graph_resource`]); where Graph
    /// requests go is each account's Graph endpoint (a sandbox or proxy goes there).
    #[serde(default)]
    pub graph_root: Option<String>,
    /// Extra trusted CA certificates (PEM file), added to the system roots.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub credential: AppCredentialConfig,
}

impl AppConfig {
    /// The sign-in host in force.
    pub fn authority_host(&self) -> &str {
        self.authority_host
            .as_deref()
            .unwrap_or(self.cloud.login_host())
    }

    /// The Graph root in force.
    pub fn graph_root(&self) -> &str {
        self.graph_root
            .as_deref()
            .unwrap_or(self.cloud.graph_root())
    }

    /// The resource of Graph tokens (`{resource}/.default`, `{resource}/Mail.Send`):
    /// the cloud's Graph root, or the `graph_root` override when it names a national
    /// cloud's. Never a sandbox or proxy URL, which Entra does not know (AADSTS500011):
    /// those are the account's Graph endpoint, where requests go.
    pub fn graph_resource(&self) -> &'static str {
        let clouds = [
            Cloud::Global,
            Cloud::UsGovHigh,
            Cloud::UsGovDod,
            Cloud::China,
        ];
        self.graph_root
            .as_deref()
            .map(|r| r.trim_end_matches('/'))
            .and_then(|r| {
                clouds
                    .into_iter()
                    .map(Cloud::graph_root)
                    .find(|c| c.eq_ignore_ascii_case(r))
            })
            .unwrap_or(self.cloud.graph_root())
    }

    /// Store id of the client secret.
    pub fn secret_id(&self) -> String {
        format!("app:{}:client-secret", self.name)
    }
}

/// An account: one mailbox address and how it signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// Local name (defaults to the address).
    pub name: String,
    /// The mailbox address.
    pub address: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub sign_in: SignInMethod,
    /// The app (by name) for delegated and app-only sign-in.
    #[serde(default)]
    pub app: Option<String>,
    /// The transports the account's tokens are for (one token per resource).
    #[serde(default = "default_transports")]
    pub transports: Vec<Transport>,
    /// User name for password sign-in, when it is not the address.
    #[serde(default)]
    pub login: Option<String>,
    /// How the login name is formed (manual when `login` is set, else the address).
    #[serde(default)]
    pub login_format: Option<LoginFormat>,
    /// The provider (id) the account was made from.
    #[serde(default)]
    pub provider: Option<String>,
    /// Graph app-only: the mailbox's Object ID (Entra ID -> Users), when it is not
    /// addressed by its user principal name (the address).
    #[serde(default)]
    pub mailbox_id: Option<String>,
    /// What the account is used for.
    #[serde(default)]
    pub usages: Vec<Usage>,
    /// Mail is downloaded from this account.
    #[serde(default = "yes")]
    pub download: bool,
    /// Mail is sent through this account.
    #[serde(default = "yes")]
    pub send: bool,
    /// Where mail is downloaded from (IMAP/POP server, or the Graph/EWS endpoint).
    #[serde(default)]
    pub incoming: Option<EndpointConfig>,
    /// Where mail is sent (SMTP server); for Graph and EWS the incoming side.
    #[serde(default)]
    pub outgoing: Option<EndpointConfig>,
    /// A copy of every message the outbox sends over SMTP is appended to this folder
    /// of the account's IMAP side (e.g. `Sent`, `Sent Items`), marked read. Graph and
    /// EWS keep their own copy in Sent Items; SMTP servers keep none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_copy: Option<String>,
    /// Bounds on what a server may send (message size, listing length, pages, time
    /// per command); `[account.limits]` in the configuration file.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
}

/// Bounds on what any server may make mailbridge hold or wait for. Exceeding one is
/// an error of class [`crate::ErrorClass::LimitExceeded`] that names the bound and
/// its setting (`limits.<field>`), never a silent cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest message accepted, in bytes (default 150 MiB, Exchange Online's
    /// maximum). Setting: `limits.max_message_size`.
    pub max_message_size: u64,
    /// The most entries one listing may return (UIDs, UIDLs, delta items, search
    /// results). Setting: `limits.max_list_items`.
    pub max_list_items: u64,
    /// The most pages one page chain may run (Graph `@odata.nextLink`/delta, EWS
    /// sync rounds) in one round. Setting: `limits.max_pages`.
    pub max_pages: u64,
    /// The longest one command may take in all, in seconds, however steadily the
    /// server keeps talking. Setting: `limits.command_timeout_secs`.
    pub command_timeout_secs: u64,
}

impl Limits {
    /// 150 MiB: Exchange Online's largest message.
    pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 150 * 1024 * 1024;
    /// One million entries (Exchange's recommended folder maximum).
    pub const DEFAULT_MAX_LIST_ITEMS: u64 = 1_000_000;
    /// 50,000 pages in one chain.
    pub const DEFAULT_MAX_PAGES: u64 = 50_000;
    /// One hour per command.
    pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 3_600;

    /// True when every bound has its default (not written out).
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    /// The time per command as a duration.
    pub fn command_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.command_timeout_secs)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: Limits::DEFAULT_MAX_MESSAGE_SIZE,
            max_list_items: Limits::DEFAULT_MAX_LIST_ITEMS,
            max_pages: Limits::DEFAULT_MAX_PAGES,
            command_timeout_secs: Limits::DEFAULT_COMMAND_TIMEOUT_SECS,
        }
    }
}

fn yes() -> bool {
    true
}

/// How the login name is formed from the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginFormat {
    /// Entered by hand (`login`).
    Manual,
    /// The full address.
    Email,
    /// The part before `@`.
    MailboxName,
}

/// What an account is used for (a business application's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// The application sends notifications from it.
    Notifications,
    /// Tickets are created from its mail.
    Helpdesk,
    /// A connector moves its mail somewhere (relay, webhook, folder).
    Connector,
    /// Attachments are filed as documents.
    Documents,
}

/// How a connection is secured (every mail protocol client uses this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// No TLS (trusted networks and tests only).
    None,
    /// STARTTLS (IMAP, SMTP) / STLS (POP3) after the greeting.
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// TLS whichever way the server offers it: implicit TLS first and, when the
    /// server answers the handshake in plain text, STARTTLS (STLS) on a new
    /// connection. Never without TLS, and a certificate failure is reported, not
    /// worked around.
    Auto,
}

/// One side of an account: a transport and where it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub transport: Transport,
    /// Host name (IMAP/POP/SMTP) or URL (Graph root, EWS URL).
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// The name the server certificate must carry, when not `host`.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Extra trusted CA (PEM file).
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// The server's own certificate, pinned: `sha256:<hex>` of its DER. A server
    /// presenting exactly this certificate is accepted (self-signed included);
    /// otherwise it is verified as usual. Never turns checks off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_pin: Option<String>,
}

/// The SHA-256 digest a certificate pin names: `sha256:` (any case) and the 64
/// hexadecimal digits of the fingerprint, `:` between byte pairs allowed, spaces around
/// ignored (`openssl x509 -fingerprint -sha256` prints it so). `None` when `text` is
/// not a pin. The one grammar of `tls_pin`, used when a configuration is loaded and
/// when a connection is made.
pub fn pin_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let hex = text
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256:"))
        .and_then(|_| text.get(7..))?;
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [hi, lo] = pair else {
            return None;
        };
        let hi = char::from(*hi).to_digit(16)?;
        let lo = char::from(*lo).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A setting of one side of an account that cannot work, found without connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointProblem {
    /// The setting (`tls_pin`, `port`, `host`, `tls_name`).
    pub setting: &'static str,
    /// What is wrong and how to write it.
    pub problem: String,
}

impl EndpointConfig {
    /// What can be found wrong with this side without connecting: a `tls_pin` that is
    /// not a pin, port 0, no host, a `tls_name` that is not a name. Empty when none.
    pub fn problems(&self) -> Vec<EndpointProblem> {
        let mut out = Vec::new();
        let mut push = |setting, problem: String| out.push(EndpointProblem { setting, problem });
        if let Some(pin) = &self.tls_pin
            && pin_digest(pin).is_none()
        {
            let shown: String = pin.chars().take(120).collect();
            push(
                "tls_pin",
                format!(
                    "{shown:?} is not a certificate pin: write sha256: and the 64 hexadecimal digits of the certificate's SHA-256 fingerprint (`mailbridge test receive` prints it; or `openssl x509 -in server.pem -noout -fingerprint -sha256`)"
                ),
            );
        }
        if self.port == Some(0) {
            push(
                "port",
                "port 0 is not a port: give a port from 1 to 65535, or leave it out for the standard port".to_owned(),
            );
        }
        if self.host.trim().is_empty() {
            push(
                "host",
                "no host is set: give the server's host name (or the URL for Graph and EWS)"
                    .to_owned(),
            );
        } else if self
            .host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            push(
                "host",
                format!(
                    "{:?} has spaces or control characters: give the host name alone",
                    self.host
                ),
            );
        }
        if let Some(name) = &self.tls_name
            && (name.trim().is_empty()
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/'))
        {
            push(
                "tls_name",
                format!(
                    "{name:?} is not a host name: give the name the server's certificate carries, or leave tls_name out"
                ),
            );
        }
        out
    }

    /// The TLS mode in force (implicit unless set).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(TlsMode::Implicit)
    }

    /// The port in force: the transport's standard port for the TLS mode.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(match (self.transport, self.tls_mode()) {
                (Transport::Imap, TlsMode::Implicit | TlsMode::Auto) => 993,
                (Transport::Imap, _) => 143,
                (Transport::Pop3, TlsMode::Implicit | TlsMode::Auto) => 995,
                (Transport::Pop3, _) => 110,
                (Transport::Smtp, TlsMode::Implicit | TlsMode::Auto) => 465,
                (Transport::Smtp, _) => 587,
                (Transport::Graph | Transport::Ews, _) => 443,
            })
    }
}

fn default_transports() -> Vec<Transport> {
    vec![Transport::Graph]
}

impl AccountConfig {
    /// Store id of the account's refresh token.
    pub fn refresh_token_id(&self) -> String {
        format!("account:{}:refresh-token", self.name)
    }

    /// Store id of the account's password.
    pub fn password_id(&self) -> String {
        format!("account:{}:password", self.name)
    }

    /// The login name in force for password sign-in (and the `user=` of XOAUTH2 when
    /// it is not the address).
    pub fn login_name(&self) -> String {
        let format = self.login_format.unwrap_or(if self.login.is_some() {
            LoginFormat::Manual
        } else {
            LoginFormat::Email
        });
        match format {
            LoginFormat::Manual => self.login.clone().unwrap_or_else(|| self.address.clone()),
            LoginFormat::Email => self.address.clone(),
            LoginFormat::MailboxName => self
                .address
                .split_once('@')
                .map_or_else(|| self.address.clone(), |(local, _)| local.to_owned()),
        }
    }

    /// The incoming side in force: `None` when downloading is off.
    pub fn incoming_side(&self) -> Option<&EndpointConfig> {
        self.incoming.as_ref().filter(|_| self.download)
    }

    /// The outgoing side in force: the `outgoing` endpoint, else (for Graph and EWS)
    /// the incoming one; `None` when sending is off.
    pub fn outgoing_side(&self) -> Option<&EndpointConfig> {
        if !self.send {
            return None;
        }
        self.outgoing.as_ref().or_else(|| {
            self.incoming
                .as_ref()
                .filter(|e| matches!(e.transport, Transport::Graph | Transport::Ews))
        })
    }
}

/// A file of apps and accounts (the configuration file, or an import/export file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
}

/// A setting in a configuration file that cannot work, naming the account, the side
/// (`incoming` or `outgoing`) and the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {account:?}: {side}.{}: {}", problem.setting, problem.problem)]
pub struct ConfigProblem {
    /// The account's name.
    pub account: String,
    /// `incoming` or `outgoing`.
    pub side: &'static str,
    pub problem: EndpointProblem,
}

impl ConfigFile {
    /// What can be found wrong without connecting, account by account and side by side
    /// ([`EndpointConfig::problems`]), so that a hand-written file is reported when it is
    /// loaded rather than when a connection is made. Empty when none.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        self.accounts
            .iter()
            .flat_map(|a| {
                [("incoming", &a.incoming), ("outgoing", &a.outgoing)]
                    .into_iter()
                    .filter_map(|(side, e)| e.as_ref().map(|e| (side, e)))
                    .flat_map(move |(side, e)| {
                        e.problems().into_iter().map(move |problem| ConfigProblem {
                            account: a.name.clone(),
                            side,
                            problem,
                        })
                    })
            })
            .collect()
    }

    /// The app with this name.
    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// The account with this name or address.
    pub fn account(&self, name_or_address: &str) -> Option<&AccountConfig> {
        self.accounts
            .iter()
            .find(|a| a.name == name_or_address || a.address.eq_ignore_ascii_case(name_or_address))
    }
}

#[cfg(test)]
mod problem_tests {
    use super::*;

    const PIN: &str = "sha256:6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    #[test]
    fn a_pin_is_sha256_and_64_hex_digits_with_optional_colons() {
        let digest = pin_digest(PIN).unwrap();
        assert_eq!(digest[0], 0x6f);
        assert_eq!(digest[31], 0xf8);
        let colons = format!(
            "SHA256:{}",
            PIN.as_bytes()[7..]
                .chunks(2)
                .map(|p| String::from_utf8_lossy(p).to_uppercase())
                .collect::<Vec<_>>()
                .join(":")
        );
        assert_eq!(pin_digest(&colons), Some(digest));
        assert_eq!(pin_digest(&format!(" {PIN}\n")), Some(digest));
        for bad in [
            "",
            "sha256:",
            "sha1:6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
            &PIN[..PIN.len() - 1],
            &format!("{PIN}00"),
            &PIN.replace('6', "g"),
            &PIN.replace("6f", "é"),
            "sha256 6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
        ] {
            assert_eq!(pin_digest(bad), None, "{bad:?}");
        }
    }

    fn file(toml: &str) -> ConfigFile {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn a_malformed_pin_in_a_file_names_the_account_the_side_and_the_setting() {
        let config = file(&format!(
            r#"
[[account]]
name = "helpdesk"
address = "helpdesk@contoso.example"
sign_in = "password"
incoming = {{ transport = "imap", host = "mail.contoso.example", tls_pin = "{PIN}" }}
outgoing = {{ transport = "smtp", host = "mail.contoso.example", tls_pin = "sha256:1234" }}

[[account]]
name = "ops"
address = "ops@contoso.example"
sign_in = "password"
incoming = {{ transport = "pop3", host = "pop.contoso.example", port = 0, tls_name = "not a name" }}
"#
        ));
        let problems = config.problems();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{shown:#?}");
        assert_eq!(
            (
                problems[0].account.as_str(),
                problems[0].side,
                problems[0].problem.setting
            ),
            ("helpdesk", "outgoing", "tls_pin")
        );
        assert!(
            shown[0].starts_with(
                "account \"helpdesk\": outgoing.tls_pin: \"sha256:1234\" is not a certificate pin"
            ),
            "{}",
            shown[0]
        );
        assert!(shown[0].contains("64 hexadecimal digits"), "{}", shown[0]);
        assert!(
            shown[1].starts_with("account \"ops\": incoming.port: "),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("account \"ops\": incoming.tls_name: "),
            "{}",
            shown[2]
        );
    }

    #[test]
    fn a_good_file_has_no_problems_and_an_empty_host_is_one() {
        let good = file(&format!(
            r#"
[[account]]
name = "a"
address = "a@contoso.example"
sign_in = "app-only"
incoming = {{ transport = "graph", host = "https://graph.microsoft.com" }}
outgoing = {{ transport = "smtp", host = "smtp.office365.com", port = 587, tls = "starttls", tls_name = "smtp.office365.com", tls_pin = "{PIN}" }}
"#
        ));
        assert_eq!(good.problems(), vec![]);
        let mut bad = good.clone();
        if let Some(e) = bad.accounts[0].incoming.as_mut() {
            " ".clone_into(&mut e.host);
        }
        let problems = bad.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].problem.setting, "host");
        assert_eq!(problems[0].side, "incoming");
    }
}

#[cfg(test)]
mod graph_resource_tests {
    use super::*;

    #[test]
    fn the_token_resource_follows_the_cloud_not_a_sandbox_or_proxy_root() {
        let app = |cloud, graph_root: Option<&str>| AppConfig {
            name: "a".into(),
            tenant: "contoso.example".into(),
            client_id: "c".into(),
            cloud,
            authority_host: None,
            graph_root: graph_root.map(str::to_owned),
            extra_ca_file: None,
            credential: AppCredentialConfig::None,
        };
        assert_eq!(
            app(Cloud::Global, None).graph_resource(),
            "https://graph.microsoft.com"
        );
        // Found as a new user: a sandbox root as the resource gave AADSTS500011.
        for root in [
            "http://127.0.0.1:8400",
            "https://graph-proxy.contoso.example/v1.0",
        ] {
            assert_eq!(
                app(Cloud::Global, Some(root)).graph_resource(),
                "https://graph.microsoft.com"
            );
            assert_eq!(
                app(Cloud::China, Some(root)).graph_resource(),
                "https://microsoftgraph.chinacloudapi.cn"
            );
        }
        // A national cloud's root named as the override is that cloud's resource.
        assert_eq!(
            app(Cloud::Global, Some("https://graph.microsoft.us/")).graph_resource(),
            "https://graph.microsoft.us"
        );
    }
}
