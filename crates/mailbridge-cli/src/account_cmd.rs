//! `mailbridge account add|list|show|edit|remove|import|export`: accounts kept in the
//! store, checked before they are saved; a TOML file of apps and accounts can be
//! imported and exported (secrets only when asked).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mailbridge_accounts::account::{
    Problem, from_detection, from_provider, provider_for_sides, transports_of, validate,
};
use mailbridge_accounts::autodetect::{DetectOptions, NoDns, SystemDns, detect};
use mailbridge_accounts::provider::{Provider, ProviderTable};
use mailbridge_store::{AccountState, SecretKind, Store};
use mailbridge_types::config::{
    AccountConfig, AppConfig, ConfigFile, EndpointConfig, LoginFormat, SignInMethod, TlsMode,
    Transport, Usage,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::context::{self, GlobalArgs};

/// `mailbridge account ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Add an account: from a provider (`--provider`), from explicit sides
    /// (`--incoming`/`--outgoing`), or autodetected from the address. Prompts for what
    /// is missing on a terminal.
    Add {
        /// The mailbox address.
        address: Option<String>,
        #[command(flatten)]
        settings: Settings,
        /// Do not autodetect the provider from the address.
        #[arg(long)]
        no_detect: bool,
        #[command(flatten)]
        detect: DetectArgs,
        /// Run `test receive` / `test send` after saving.
        #[arg(long)]
        test: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one account (never its secrets), its sign-in state and any problem.
    Show {
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Change settings of an account (only those given).
    Edit {
        account: String,
        #[command(flatten)]
        settings: Settings,
        #[arg(long)]
        json: bool,
    },
    /// Remove an account with its password, refresh token and checkpoints.
    Remove {
        account: String,
        #[arg(long)]
        json: bool,
    },
    /// Import apps and accounts from a TOML file (`[[app]]`, `[[account]]`, and
    /// `[[secret]]` when it was exported with secrets). All or nothing.
    Import {
        file: PathBuf,
        /// Replace apps and accounts that already exist.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        json: bool,
    },
    /// Export the apps and accounts as TOML (to standard output, or `--out`).
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
        /// Include passwords, refresh tokens and client secrets, in clear text.
        #[arg(long)]
        with_secrets: bool,
    },
}

/// Settings of `account add` and `account edit`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {
    /// Local name (default: the address).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    /// A provider id (`mailbridge provider list`).
    #[arg(long)]
    pub provider: Option<String>,
    /// password, delegated or app-only.
    #[arg(long, value_parser = config_word::<SignInMethod>)]
    pub sign_in: Option<SignInMethod>,
    /// The app (by name) for delegated and app-only sign-in.
    #[arg(long)]
    pub app: Option<String>,
    /// The login name, when it is not the address (sets the format to manual).
    #[arg(long)]
    pub login: Option<String>,
    /// manual, email or mailbox-name.
    #[arg(long, value_parser = config_word::<LoginFormat>)]
    pub login_format: Option<LoginFormat>,
    /// Graph app-only: the mailbox's Object ID.
    #[arg(long)]
    pub mailbox_id: Option<String>,
    /// notifications, helpdesk, connector or documents (repeat).
    #[arg(long = "usage", value_parser = config_word::<Usage>)]
    pub usages: Vec<Usage>,
    /// Where mail is read: `imaps://host[:port]`, `imap+starttls://`, `imap+auto://`
    /// (implicit TLS, else STARTTLS; never none), `imap://` (no TLS), `pop3s://`,
    /// `pop3+starttls://`, `pop3+auto://`, `pop3://`, `graph+https://graph-root`,
    /// `ews+https://host/EWS/Exchange.asmx`.
    #[arg(long)]
    pub incoming: Option<String>,
    /// Where mail is sent: `smtps://host[:port]`, `smtp+starttls://`, `smtp+auto://`,
    /// `smtp://`, `graph+https://...`, `ews+https://...`.
    #[arg(long)]
    pub outgoing: Option<String>,
    /// The name the servers' certificates carry, when not the host.
    #[arg(long)]
    pub tls_name: Option<String>,
    /// Extra trusted CA (PEM file) for the account's servers.
    #[arg(long)]
    pub extra_ca_file: Option<PathBuf>,
    /// Pin the servers' own certificate, `sha256:<hex>` of its DER (`mailbridge test
    /// receive|send` prints it on a TLS failure), for both sides; `none` removes it.
    /// The pinned certificate is accepted (self-signed or CA:TRUE included), every
    /// other one is checked as usual.
    #[arg(long, value_parser = pin_arg)]
    pub tls_pin: Option<String>,
    /// Pin the incoming server's certificate (`sha256:<hex>`, or `none`).
    #[arg(long, value_parser = pin_arg)]
    pub incoming_tls_pin: Option<String>,
    /// Pin the outgoing server's certificate (`sha256:<hex>`, or `none`).
    #[arg(long, value_parser = pin_arg)]
    pub outgoing_tls_pin: Option<String>,
    /// The largest message accepted, in bytes (`limits.max_message_size`; default
    /// 157286400, 150 MiB as Exchange Online's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_message_size: Option<u64>,
    /// The most entries one listing may return (`limits.max_list_items`; default
    /// 1000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_list_items: Option<u64>,
    /// The most pages one page chain may run in one round (`limits.max_pages`;
    /// default 50000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pages: Option<u64>,
    /// The longest one command may take in all, in seconds
    /// (`limits.command_timeout_secs`; default 3600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub command_timeout_secs: Option<u64>,
    /// Turn downloading on or off.
    #[arg(long)]
    pub download: Option<bool>,
    /// Turn sending on or off.
    #[arg(long)]
    pub send: Option<bool>,
    /// Read the password (password sign-in) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Where autodetection looks (defaults: Microsoft's worldwide endpoints).
#[derive(Debug, Clone, clap::Args)]
#[expect(
    clippy::struct_field_names,
    reason = "the fields are the --detect-* flags"
)]
pub struct DetectArgs {
    /// Sign-in host for the tenant's OpenID configuration.
    #[arg(long)]
    pub detect_authority_host: Option<String>,
    /// Autodiscover v2 URL (`.../autodiscover/autodiscover.json`).
    #[arg(long)]
    pub detect_autodiscover_url: Option<String>,
    /// Autoconfig URL template (`{domain}`, `{email}`); repeat to try several.
    #[arg(long = "detect-autoconfig-url")]
    pub detect_autoconfig_urls: Vec<String>,
    /// Skip the DNS steps (MX, SRV).
    #[arg(long)]
    pub detect_no_dns: bool,
    /// Timeout of each step, in seconds.
    #[arg(long, default_value_t = 5)]
    pub detect_timeout: u64,
    /// Extra trusted CA (PEM file) for the HTTP steps.
    #[arg(long)]
    pub detect_extra_ca_file: Option<PathBuf>,
}

/// A configuration word (`app-only`, `mailbox-name`, `helpdesk`, ...) as the config
/// file spells it: the type's own serde names, so flags and file never disagree.
pub(crate) fn config_word<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

/// A `--*-tls-pin` value: a pin, written back as `sha256:<lowercase hex>`, or `none`.
fn pin_arg(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok("none".to_owned());
    }
    mailbridge_tls::Pin::parse(s)
        .map(|p| p.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `scheme://host[:port][/path]` into an endpoint.
pub fn parse_endpoint(text: &str) -> anyhow::Result<EndpointConfig> {
    let Some((scheme, rest)) = text.split_once("://") else {
        bail!(
            "{text:?} is not an endpoint: write it as imaps://host[:port], imap+starttls://host, pop3s://host, smtp+starttls://host, smtps://host, graph+https://graph.microsoft.com or ews+https://host/EWS/Exchange.asmx"
        );
    };
    let (transport, tls) = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (Transport::Imap, TlsMode::Implicit),
        "imap+starttls" => (Transport::Imap, TlsMode::StartTls),
        "imap" => (Transport::Imap, TlsMode::None),
        "imap+auto" => (Transport::Imap, TlsMode::Auto),
        "pop3s" => (Transport::Pop3, TlsMode::Implicit),
        "pop3+starttls" | "pop3+stls" => (Transport::Pop3, TlsMode::StartTls),
        "pop3" => (Transport::Pop3, TlsMode::None),
        "pop3+auto" => (Transport::Pop3, TlsMode::Auto),
        "smtps" => (Transport::Smtp, TlsMode::Implicit),
        "smtp+starttls" | "submission" => (Transport::Smtp, TlsMode::StartTls),
        "smtp" => (Transport::Smtp, TlsMode::None),
        "smtp+auto" => (Transport::Smtp, TlsMode::Auto),
        "graph+https" | "graph+http" | "ews+https" | "ews+http" => {
            let (kind, web) = scheme.split_once('+').unwrap_or_default();
            let transport = if kind == "graph" {
                Transport::Graph
            } else {
                Transport::Ews
            };
            return Ok(EndpointConfig {
                transport,
                host: format!("{web}://{rest}"),
                port: None,
                tls: None,
                tls_name: None,
                extra_ca_file: None,
                tls_pin: None,
            });
        }
        other => bail!(
            "unknown endpoint scheme {other:?}: use imaps, imap+starttls, imap, pop3s, pop3+starttls, pop3, smtps, smtp+starttls, smtp, graph+https or ews+https"
        ),
    };
    let authority = rest.trim_end_matches('/');
    // host, host:port, [IPv6] or [IPv6]:port; the host's syntax is checked with the
    // account (`incoming.host`), so every way in gets the same message.
    let (host, port_text) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            bail!(
                "{text:?}: the IPv6 address has no closing bracket: write it as [2001:db8::1] or [2001:db8::1]:993"
            );
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            bail!(
                "{text:?}: {address:?} in brackets is not an IPv6 address (only IPv6 addresses are written in brackets)"
            );
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').with_context(|| {
                format!("{text:?}: after the bracketed address comes only :port")
            })?),
        };
        (address, port)
    } else if authority.matches(':').count() > 1 {
        bail!("{text:?}: write an IPv6 address in brackets, as in imaps://[2001:db8::1]:993");
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = port_text
        .map(|p| {
            p.parse::<u16>()
                .with_context(|| format!("{p:?} in {text:?} is not a port number (1-65535)"))
        })
        .transpose()?;
    if host.is_empty() || host.contains('/') {
        bail!("{text:?} has no host name");
    }
    Ok(EndpointConfig {
        transport,
        host: host.to_owned(),
        port,
        tls: Some(tls),
        tls_name: None,
        extra_ca_file: None,
        tls_pin: None,
    })
}

/// An endpoint written back in the `scheme://host:port` form.
pub fn endpoint_text(e: &EndpointConfig) -> String {
    match e.transport {
        Transport::Graph | Transport::Ews => {
            format!(
                "{}+{}",
                if e.transport == Transport::Graph {
                    "graph"
                } else {
                    "ews"
                },
                e.host
            )
        }
        t => {
            let base = match t {
                Transport::Imap => "imap",
                Transport::Pop3 => "pop3",
                _ => "smtp",
            };
            let scheme = match e.tls_mode() {
                TlsMode::Implicit => format!("{base}s"),
                TlsMode::StartTls => format!("{base}+starttls"),
                TlsMode::None => base.to_owned(),
                TlsMode::Auto => format!("{base}+auto"),
            };
            format!("{scheme}://{}:{}", e.host, e.port())
        }
    }
}

/// The provider table: built-in providers and those kept in the store.
pub async fn provider_table(store: &Store) -> anyhow::Result<ProviderTable> {
    let mut table = ProviderTable::default();
    let stored: Vec<Provider> = store
        .providers()
        .await
        .context("failed to read the providers in the store")?;
    for p in stored {
        table.add(p);
    }
    Ok(table)
}

fn apply(account: &mut AccountConfig, s: &Settings) -> anyhow::Result<()> {
    if let Some(v) = &s.display_name {
        account.display_name = Some(v.clone());
    }
    if let Some(v) = s.sign_in {
        account.sign_in = v;
    }
    if let Some(v) = &s.app {
        account.app = Some(v.clone());
    }
    if let Some(v) = &s.login {
        account.login = Some(v.clone());
        account.login_format = Some(LoginFormat::Manual);
    }
    if let Some(v) = s.login_format {
        account.login_format = Some(v);
    }
    if let Some(v) = &s.mailbox_id {
        account.mailbox_id = Some(v.clone());
    }
    if !s.usages.is_empty() {
        account.usages.clone_from(&s.usages);
    }
    if let Some(v) = &s.incoming {
        account.incoming = Some(parse_endpoint(v)?);
        account.download = true;
    }
    if let Some(v) = &s.outgoing {
        account.outgoing = Some(parse_endpoint(v)?);
        account.send = true;
    }
    for side in [account.incoming.as_mut(), account.outgoing.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(n) = &s.tls_name {
            side.tls_name = Some(n.clone());
        }
        if let Some(ca) = &s.extra_ca_file {
            side.extra_ca_file = Some(ca.clone());
        }
    }
    let pin = |side: &mut EndpointConfig, value: &Option<String>| {
        if let Some(v) = value {
            side.tls_pin = (v != "none").then(|| v.clone());
        }
    };
    for (side, value) in [
        (account.incoming.as_mut(), &s.incoming_tls_pin),
        (account.outgoing.as_mut(), &s.outgoing_tls_pin),
    ] {
        if let Some(side) = side {
            pin(side, &s.tls_pin);
            pin(side, value);
        }
    }
    let limits = &mut account.limits;
    for (value, field) in [
        (s.max_message_size, &mut limits.max_message_size),
        (s.max_list_items, &mut limits.max_list_items),
        (s.max_pages, &mut limits.max_pages),
        (s.command_timeout_secs, &mut limits.command_timeout_secs),
    ] {
        if let Some(v) = value {
            *field = v;
        }
    }
    if let Some(v) = s.download {
        account.download = v;
    }
    if let Some(v) = s.send {
        account.send = v;
    }
    account.transports = transports_of(account);
    Ok(())
}

pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn prompt(question: &str, default: Option<&str>) -> anyhow::Result<String> {
    let mut err = std::io::stderr();
    match default {
        Some(d) => write!(err, "{question} [{d}]: ")?,
        None => write!(err, "{question}: ")?,
    }
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default.unwrap_or_default().to_owned()
    } else {
        line.to_owned()
    })
}

fn read_password(interactive: bool) -> anyhow::Result<SecretString> {
    let text = if interactive {
        rpassword::prompt_password("Password: ").context("failed to read the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("failed to read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if text.is_empty() {
        bail!("no password was given");
    }
    Ok(SecretString::from(text))
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn detect_account(
    address: &str,
    table: &ProviderTable,
    args: &DetectArgs,
    json: bool,
) -> anyhow::Result<Option<AccountConfig>> {
    let mut options = DetectOptions::default();
    if let Some(h) = &args.detect_authority_host {
        options.authority_host.clone_from(h);
    }
    if let Some(u) = &args.detect_autodiscover_url {
        options.autodiscover_url.clone_from(u);
    }
    if !args.detect_autoconfig_urls.is_empty() {
        options
            .autoconfig_urls
            .clone_from(&args.detect_autoconfig_urls);
    }
    options.step_timeout = Duration::from_secs(args.detect_timeout);
    if let Some(ca) = &args.detect_extra_ca_file {
        options.extra_ca_pem = Some(
            std::fs::read_to_string(ca)
                .with_context(|| format!("failed to read the CA file {}", ca.display()))?,
        );
    }
    let detection = if args.detect_no_dns {
        detect(address, table, &NoDns, &options).await?
    } else {
        match SystemDns::new() {
            Ok(dns) => detect(address, table, &dns, &options).await?,
            Err(e) => {
                eprintln!("note: no DNS resolver ({e}); MX and SRV steps skipped");
                detect(address, table, &NoDns, &options).await?
            }
        }
    };
    if !json {
        eprintln!("Autodetection for {address}:");
        // Only the steps that ran; their outcomes quote servers' answers.
        for step in &detection.steps {
            eprintln!(
                "  {:<22} {:>5} ms  {}",
                format!("{:?}", step.step),
                step.elapsed_ms,
                mailbridge_types::printable(&step.outcome)
            );
        }
        match (&detection.provider, detection.decided_by) {
            (Some(p), Some(step)) => eprintln!("  -> {p} (decided by {step:?})"),
            _ => eprintln!("  -> no provider found"),
        }
    }
    Ok(from_detection(address, &detection, table))
}

/// The view of an account that `show` and `list` print: no secrets, their presence only.
#[derive(Debug, Serialize)]
struct AccountView {
    #[serde(flatten)]
    account: AccountConfig,
    incoming_endpoint: Option<String>,
    outgoing_endpoint: Option<String>,
    login_name: String,
    password_stored: bool,
    refresh_token_stored: bool,
    sign_in_state: String,
    /// Where the account is kept: store or the configuration file.
    source: &'static str,
    problems: Vec<Problem>,
}

async fn view(
    store: &Store,
    account: &AccountConfig,
    apps: &[AppConfig],
    source: &'static str,
) -> anyhow::Result<AccountView> {
    let password_stored = store.get_secret(&account.password_id()).await?.is_some();
    let refresh_token_stored = store
        .get_secret(&account.refresh_token_id())
        .await?
        .is_some();
    let sign_in_state = match store.account_state(&account.name).await? {
        Some(AccountState::SignedIn) => "signed in".to_owned(),
        Some(AccountState::NeedsSignIn { reason }) => format!("needs sign-in: {reason}"),
        None if account.sign_in == SignInMethod::Password => {
            if password_stored {
                "password stored".to_owned()
            } else {
                "no password stored".to_owned()
            }
        }
        None if account.sign_in == SignInMethod::AppOnly => "app-only".to_owned(),
        None => "never signed in".to_owned(),
    };
    Ok(AccountView {
        incoming_endpoint: account.incoming_side().map(endpoint_text),
        outgoing_endpoint: account.outgoing_side().map(endpoint_text),
        login_name: account.login_name(),
        password_stored,
        refresh_token_stored,
        sign_in_state,
        source,
        problems: validate(account, apps),
        account: account.clone(),
    })
}

fn sign_in_name(m: SignInMethod) -> &'static str {
    match m {
        SignInMethod::Password => "password",
        SignInMethod::Delegated => "delegated",
        SignInMethod::AppOnly => "app-only",
    }
}

/// One exported secret. Its `Debug` shows the id and the kind, never the value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedSecret {
    id: String,
    kind: String,
    value: String,
}

impl std::fmt::Debug for ExportedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedSecret")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod exported_secret_tests {
    #[test]
    fn debug_of_an_exported_secret_and_its_file_shows_no_value() {
        let secret = super::ExportedSecret {
            id: "account:alice:refresh".into(),
            kind: "refresh-token".into(),
            value: "0.AXoA-refresh-token-that-must-not-leak".into(),
        };
        let file = super::AccountsFile {
            secrets: vec![secret],
            ..Default::default()
        };
        let shown = format!("{file:?} {file:#?}");
        assert!(!shown.contains("must-not-leak"), "{shown}");
        assert!(shown.contains("account:alice:refresh"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
}

/// The import/export file: the configuration file's tables plus, on request, secrets.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default, rename = "app", skip_serializing_if = "Vec::is_empty")]
    apps: Vec<AppConfig>,
    #[serde(default, rename = "account", skip_serializing_if = "Vec::is_empty")]
    accounts: Vec<AccountConfig>,
    #[serde(default, rename = "secret", skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<ExportedSecret>,
}

fn kind_name(kind: SecretKind) -> &'static str {
    match kind {
        SecretKind::RefreshToken => "refresh-token",
        SecretKind::ClientSecret => "client-secret",
        SecretKind::CertificateKey => "certificate-key",
        _ => "password",
    }
}

fn kind_of(name: &str) -> Option<SecretKind> {
    Some(match name {
        "refresh-token" => SecretKind::RefreshToken,
        "client-secret" => SecretKind::ClientSecret,
        "certificate-key" => SecretKind::CertificateKey,
        "password" => SecretKind::Password,
        _ => return None,
    })
}

/// Runs an account command.
pub async fn run(global: &GlobalArgs, command: AccountCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    match command {
        AccountCommand::Add {
            address,
            settings,
            no_detect,
            detect,
            test,
            json,
        } => {
            add(
                global, &store, address, settings, no_detect, &detect, test, json,
            )
            .await
        }
        AccountCommand::List { json } => list(global, &store, json).await,
        AccountCommand::Show { account, json } => show(global, &store, &account, json).await,
        AccountCommand::Edit {
            account,
            settings,
            json,
        } => edit(global, &store, &account, &settings, json).await,
        AccountCommand::Remove { account, json } => {
            let Some(found) = store.account(&account).await? else {
                let in_file = context::load_config(&global.config)?
                    .account(&account)
                    .is_some();
                if in_file {
                    bail!(
                        "account {account:?} is defined in the configuration file {}, not in the store: remove it there",
                        global.config.display()
                    );
                }
                bail!("no account named {account:?}");
            };
            store.remove_account(&found.name).await?;
            if json {
                println!("{}", serde_json::json!({ "removed": found.name }));
            } else {
                println!(
                    "removed account {} ({}) with its stored secrets",
                    found.name, found.address
                );
            }
            Ok(())
        }
        AccountCommand::Import {
            file,
            replace,
            json,
        } => import(global, &store, &file, replace, json).await,
        AccountCommand::Export { out, with_secrets } => {
            export(global, &store, out, with_secrets).await
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one per command-line group")]
async fn add(
    global: &GlobalArgs,
    store: &Store,
    address: Option<String>,
    mut settings: Settings,
    no_detect: bool,
    detect_args: &DetectArgs,
    test: bool,
    json: bool,
) -> anyhow::Result<()> {
    let interactive = interactive() && !json;
    let address = match address {
        Some(a) => a,
        None if interactive => prompt("Mail address", None)?,
        None => bail!("give the account's mail address (mailbridge account add ADDRESS ...)"),
    };
    let address = address.trim().to_owned();
    let table = provider_table(store).await?;
    let catalog = context::catalog(global, store).await?;
    let name = settings.name.clone().unwrap_or_else(|| address.clone());
    if catalog.account(&name).is_some_and(|a| a.name == name) {
        bail!(
            "an account named {name:?} exists already: use `mailbridge account edit {name}` or another --name"
        );
    }
    let mut account = if let Some(id) = &settings.provider {
        let Some(p) = table.get(id) else {
            bail!(
                "no provider {id:?} (providers: {})",
                mailbridge_accounts::provider::builtin()
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        from_provider(&address, p)
    } else if settings.incoming.is_some() || settings.outgoing.is_some() || no_detect {
        // The provider that fits the sides given (Graph, EWS online or on-premises,
        // another server): its sign-in methods and login format; the sides are these.
        let incoming = settings
            .incoming
            .as_deref()
            .map(parse_endpoint)
            .transpose()?;
        let id = provider_for_sides(incoming.as_ref());
        let Some(p) = table.get(id) else {
            bail!("the built-in provider {id} is missing");
        };
        let mut a = from_provider(&address, p);
        a.incoming = None;
        a.outgoing = None;
        a.download = false;
        a.send = false;
        a
    } else {
        match detect_account(&address, &table, detect_args, json).await? {
            Some(a) => a,
            None => bail!(
                "could not detect the provider of {address}: give --provider (see `mailbridge provider list`) or the servers with --incoming/--outgoing"
            ),
        }
    };
    account.name = name;
    if interactive {
        if settings.sign_in.is_none() {
            let offered = table
                .get(account.provider.as_deref().unwrap_or_default())
                .map_or_else(
                    || "password/delegated/app-only".into(),
                    |p| {
                        p.sign_in
                            .iter()
                            .map(|m| sign_in_name(*m))
                            .collect::<Vec<_>>()
                            .join("/")
                    },
                );
            let answer = prompt(
                &format!("Sign-in ({offered})"),
                Some(sign_in_name(account.sign_in)),
            )?;
            settings.sign_in =
                Some(config_word::<SignInMethod>(answer.trim()).map_err(anyhow::Error::msg)?);
        }
        if settings.sign_in != Some(SignInMethod::Password) && settings.app.is_none() {
            let apps: Vec<&str> = catalog.apps.iter().map(|a| a.name.as_str()).collect();
            let answer = prompt(&format!("App ({})", apps.join(", ")), apps.first().copied())?;
            settings.app = Some(answer);
        }
    }
    apply(&mut account, &settings)?;
    // Graph and EWS send through the incoming side unless another is given.
    if settings.send.is_none()
        && account.outgoing.is_none()
        && account
            .incoming
            .as_ref()
            .is_some_and(|e| matches!(e.transport, Transport::Graph | Transport::Ews))
    {
        account.send = true;
    }
    let problems = validate(&account, &catalog.apps);
    if !problems.is_empty() {
        bail!(
            "account {} was not saved:\n{}",
            account.name,
            problems_text(&problems)
        );
    }
    let password =
        if account.sign_in == SignInMethod::Password && (settings.password_stdin || interactive) {
            Some(read_password(interactive && !settings.password_stdin)?)
        } else {
            None
        };
    store.put_account(&account).await?;
    if let Some(p) = password {
        store
            .put_secret(
                &account.password_id(),
                SecretKind::Password,
                &p,
                None,
                store.now(),
            )
            .await?;
    }
    if let Some(notice) = account
        .provider
        .as_deref()
        .and_then(|id| table.get(id))
        .and_then(|p| p.notice.as_deref())
    {
        eprintln!("note: {notice}");
    }
    if json {
        let v = view(store, &account, &catalog.apps, "store").await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("added account {} ({})", account.name, account.address);
        if let Some(e) = account.incoming_side() {
            println!("  incoming: {}", endpoint_text(e));
        }
        if let Some(e) = account.outgoing_side() {
            println!("  outgoing: {}", endpoint_text(e));
        }
        println!("  sign-in:  {}", sign_in_name(account.sign_in));
        if account.sign_in == SignInMethod::Delegated {
            println!(
                "next: sign the account in with `mailbridge auth login {}`",
                account.name
            );
        } else if account.sign_in == SignInMethod::Password
            && store.get_secret(&account.password_id()).await?.is_none()
        {
            println!(
                "next: store its password with `mailbridge account edit {} --password-stdin`",
                account.name
            );
        }
    }
    let run_tests = test
        || (interactive
            && account.sign_in != SignInMethod::Delegated
            && prompt("Run test receive / test send now? (y/n)", Some("y"))?
                .to_ascii_lowercase()
                .starts_with('y'));
    if run_tests {
        let mut failed = false;
        if account.incoming_side().is_some() {
            failed |= crate::test_cmd::run(
                global,
                crate::test_cmd::TestCommand::Receive {
                    account: account.name.clone(),
                    json,
                },
            )
            .await
            .is_err();
        }
        if account.outgoing_side().is_some() {
            failed |= crate::test_cmd::run(
                global,
                crate::test_cmd::TestCommand::Send {
                    account: account.name.clone(),
                    to: None,
                    json,
                },
            )
            .await
            .is_err();
        }
        if failed {
            bail!(
                "account {} was saved, but a test failed (see the fix above)",
                account.name
            );
        }
    }
    Ok(())
}

async fn list(global: &GlobalArgs, store: &Store, json: bool) -> anyhow::Result<()> {
    let catalog = context::catalog(global, store).await?;
    let stored: Vec<String> = store
        .accounts()
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let mut views = Vec::new();
    for a in &catalog.accounts {
        let source = if stored.contains(&a.name) {
            "store"
        } else {
            "config"
        };
        views.push(view(store, a, &catalog.apps, source).await?);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no accounts: add one with `mailbridge account add ADDRESS`");
        return Ok(());
    }
    println!(
        "{:<24} {:<32} {:<44} {:<10} STATE",
        "NAME", "ADDRESS", "INCOMING / OUTGOING", "SIGN-IN"
    );
    for v in &views {
        let sides = format!(
            "{} / {}",
            v.incoming_endpoint.as_deref().unwrap_or("-"),
            v.outgoing_endpoint.as_deref().unwrap_or("-")
        );
        let state = if v.problems.is_empty() {
            v.sign_in_state.clone()
        } else {
            format!("{} problem(s): see `account show`", v.problems.len())
        };
        println!(
            "{:<24} {:<32} {:<44} {:<10} {state}",
            v.account.name,
            v.account.address,
            sides,
            sign_in_name(v.account.sign_in)
        );
    }
    Ok(())
}

async fn show(global: &GlobalArgs, store: &Store, name: &str, json: bool) -> anyhow::Result<()> {
    let catalog = context::catalog(global, store).await?;
    let Some(account) = catalog.account(name) else {
        bail!("no account named {name:?}");
    };
    let source = if store.account(&account.name).await?.is_some() {
        "store"
    } else {
        "config"
    };
    let v = view(store, account, &catalog.apps, source).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let a = &v.account;
    println!("account   {} ({})", a.name, v.source);
    println!("address   {}", a.address);
    if let Some(d) = &a.display_name {
        println!("name      {d}");
    }
    if let Some(p) = &a.provider {
        println!("provider  {p}");
        if let Some(notice) = provider_table(store)
            .await?
            .get(p)
            .and_then(|p| p.notice.clone())
        {
            println!("          note: {notice}");
        }
    }
    println!(
        "sign-in   {}{}",
        sign_in_name(a.sign_in),
        a.app
            .as_deref()
            .map(|app| format!(" with app {app}"))
            .unwrap_or_default()
    );
    println!("login     {}", v.login_name);
    if let Some(id) = &a.mailbox_id {
        println!("mailbox   {id}");
    }
    println!(
        "incoming  {}",
        v.incoming_endpoint.as_deref().unwrap_or("off")
    );
    println!(
        "outgoing  {}",
        v.outgoing_endpoint.as_deref().unwrap_or("off")
    );
    if !a.usages.is_empty() {
        let u: Vec<String> = a
            .usages
            .iter()
            .map(|u| format!("{u:?}").to_ascii_lowercase())
            .collect();
        println!("usages    {}", u.join(", "));
    }
    if !a.limits.is_default() {
        let l = &a.limits;
        println!(
            "limits    max_message_size {}, max_list_items {}, max_pages {}, command_timeout_secs {}",
            l.max_message_size, l.max_list_items, l.max_pages, l.command_timeout_secs
        );
    }
    println!("state     {}", v.sign_in_state);
    if !v.problems.is_empty() {
        println!("problems:\n{}", problems_text(&v.problems));
    }
    Ok(())
}

async fn edit(
    global: &GlobalArgs,
    store: &Store,
    name: &str,
    settings: &Settings,
    json: bool,
) -> anyhow::Result<()> {
    let Some(mut account) = store.account(name).await? else {
        if context::load_config(&global.config)?
            .account(name)
            .is_some()
        {
            bail!(
                "account {name:?} is defined in the configuration file {}: edit it there, or `mailbridge account import` the file to keep it in the store",
                global.config.display()
            );
        }
        bail!("no account named {name:?}");
    };
    if settings.name.as_ref().is_some_and(|n| n != &account.name) {
        bail!("an account cannot be renamed: add a new one and remove this one");
    }
    if let Some(id) = &settings.provider {
        let table = provider_table(store).await?;
        if table.get(id).is_none() {
            bail!("no provider {id:?}");
        }
        account.provider = Some(id.clone());
    }
    apply(&mut account, settings)?;
    let catalog = context::catalog(global, store).await?;
    let problems = validate(&account, &catalog.apps);
    if !problems.is_empty() {
        bail!(
            "account {} was not changed:\n{}",
            account.name,
            problems_text(&problems)
        );
    }
    if settings.password_stdin {
        let p = read_password(false)?;
        store
            .put_secret(
                &account.password_id(),
                SecretKind::Password,
                &p,
                None,
                store.now(),
            )
            .await?;
    }
    store.put_account(&account).await?;
    if json {
        let v = view(store, &account, &catalog.apps, "store").await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("changed account {}", account.name);
    }
    Ok(())
}

async fn import(
    global: &GlobalArgs,
    store: &Store,
    path: &std::path::Path,
    replace: bool,
    json: bool,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let file: AccountsFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid accounts file", path.display()))?;
    let existing = context::catalog(global, store).await?;
    let stored_apps = store.apps().await?;
    let stored_accounts = store.accounts().await?;
    let mut problems = Vec::new();
    if !replace {
        for a in &file.apps {
            if stored_apps.iter().any(|s| s.name == a.name) {
                problems.push(format!(
                    "app {} exists already (use --replace to overwrite)",
                    a.name
                ));
            }
        }
        for a in &file.accounts {
            if stored_accounts.iter().any(|s| s.name == a.name) {
                problems.push(format!(
                    "account {} exists already (use --replace to overwrite)",
                    a.name
                ));
            }
        }
    }
    let mut apps: Vec<AppConfig> = file.apps.clone();
    for a in existing.apps {
        if !apps.iter().any(|x| x.name == a.name) {
            apps.push(a);
        }
    }
    for a in &file.accounts {
        for p in validate(a, &apps) {
            problems.push(format!("account {}: {p}", a.name));
        }
    }
    let known: Vec<String> = file
        .apps
        .iter()
        .map(AppConfig::secret_id)
        .chain(
            file.accounts
                .iter()
                .flat_map(|a| [a.password_id(), a.refresh_token_id()]),
        )
        .collect();
    for s in &file.secrets {
        if kind_of(&s.kind).is_none() {
            problems.push(format!("secret {}: unknown kind {:?}", s.id, s.kind));
        }
        if !known.contains(&s.id) {
            problems.push(format!(
                "secret {} belongs to no app or account in the file",
                s.id
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "nothing was imported from {}:\n{}",
            path.display(),
            problems
                .iter()
                .map(|p| format!("  - {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for a in &file.apps {
        store.put_app(a).await?;
    }
    for a in &file.accounts {
        store.put_account(a).await?;
    }
    for s in &file.secrets {
        let kind = kind_of(&s.kind).unwrap_or(SecretKind::Password);
        store
            .put_secret(
                &s.id,
                kind,
                &SecretString::from(s.value.clone()),
                None,
                store.now(),
            )
            .await?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "apps": file.apps.iter().map(|a| &a.name).collect::<Vec<_>>(),
                "accounts": file.accounts.iter().map(|a| &a.name).collect::<Vec<_>>(),
                "secrets": file.secrets.len(),
            })
        );
    } else {
        println!(
            "imported {} app(s), {} account(s) and {} secret(s) from {}",
            file.apps.len(),
            file.accounts.len(),
            file.secrets.len(),
            path.display()
        );
    }
    Ok(())
}

async fn export(
    global: &GlobalArgs,
    store: &Store,
    out: Option<PathBuf>,
    with_secrets: bool,
) -> anyhow::Result<()> {
    let ConfigFile { apps, accounts } = context::catalog(global, store).await?;
    let mut secrets = Vec::new();
    if with_secrets {
        let metas = store.secrets().await?;
        let wanted: Vec<String> = apps
            .iter()
            .map(AppConfig::secret_id)
            .chain(
                accounts
                    .iter()
                    .flat_map(|a| [a.password_id(), a.refresh_token_id()]),
            )
            .collect();
        for meta in metas.iter().filter(|m| wanted.contains(&m.id)) {
            if let Some(value) = store.get_secret(&meta.id).await? {
                secrets.push(ExportedSecret {
                    id: meta.id.clone(),
                    kind: kind_name(meta.kind).to_owned(),
                    value: value.expose_secret().to_owned(),
                });
            }
        }
    }
    let file = AccountsFile {
        apps,
        accounts,
        secrets,
    };
    let mut text = String::from(
        "# mailbridge apps and accounts (`mailbridge account import` reads this file)\n",
    );
    if with_secrets {
        text.push_str("# This file holds secrets in clear text: keep it private.\n");
    }
    text.push_str(&toml::to_string_pretty(&file).context("failed to write TOML")?);
    if let Some(path) = out {
        write_private(&path, text.as_bytes(), with_secrets)
            .with_context(|| format!("failed to write {}", path.display()))?;
        eprintln!(
            "exported {} app(s) and {} account(s){} to {}",
            file.apps.len(),
            file.accounts.len(),
            if with_secrets {
                " with their secrets"
            } else {
                " (no secrets)"
            },
            path.display()
        );
    } else {
        if with_secrets && std::io::stdout().is_terminal() {
            eprintln!("warning: printing secrets in clear text");
        }
        print!("{text}");
    }
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print_back() {
        for (text, transport, tls, port) in [
            (
                "imaps://mail.example.org",
                Transport::Imap,
                TlsMode::Implicit,
                993,
            ),
            (
                "imap+starttls://mail.example.org:1143",
                Transport::Imap,
                TlsMode::StartTls,
                1143,
            ),
            (
                "pop3s://127.0.0.1:9995",
                Transport::Pop3,
                TlsMode::Implicit,
                9995,
            ),
            (
                "smtp+starttls://smtp.office365.com:587",
                Transport::Smtp,
                TlsMode::StartTls,
                587,
            ),
            ("smtp://[::1]:2525", Transport::Smtp, TlsMode::None, 2525),
            (
                "imap+auto://mail.example.org",
                Transport::Imap,
                TlsMode::Auto,
                993,
            ),
            (
                "smtp+auto://mail.example.org:2587",
                Transport::Smtp,
                TlsMode::Auto,
                2587,
            ),
        ] {
            let e = parse_endpoint(text).unwrap();
            assert_eq!(
                (e.transport, e.tls_mode(), e.port()),
                (transport, tls, port),
                "{text}"
            );
        }
        let g = parse_endpoint("graph+https://graph.microsoft.us").unwrap();
        assert_eq!(g.transport, Transport::Graph);
        assert_eq!(g.host, "https://graph.microsoft.us");
        assert_eq!(endpoint_text(&g), "graph+https://graph.microsoft.us");
        let e = parse_endpoint("imaps://mail.example.org").unwrap();
        assert_eq!(endpoint_text(&e), "imaps://mail.example.org:993");
        let e = parse_endpoint("pop3+auto://mail.example.org:1110").unwrap();
        assert_eq!(endpoint_text(&e), "pop3+auto://mail.example.org:1110");
        assert!(
            parse_endpoint("mail.example.org")
                .unwrap_err()
                .to_string()
                .contains("imaps://")
        );
        assert!(
            parse_endpoint("imap4://x")
                .unwrap_err()
                .to_string()
                .contains("unknown endpoint scheme")
        );
        assert!(parse_endpoint("imaps://x:99999").is_err());
        let e = parse_endpoint("imaps://[2001:db8::1]:1993").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("2001:db8::1", Some(1993)));
        assert_eq!(parse_endpoint("imaps://[::1]").unwrap().host, "::1");
        for (bad, says) in [
            ("imaps://[::1", "no closing bracket"),
            ("imaps://::1", "in brackets"),
            ("imaps://[mail.example.org]:993", "not an IPv6 address"),
            ("imaps://[::1]993", "only :port"),
            ("imaps://mail.example.org:", "not a port number"),
        ] {
            let err = parse_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Port 0 and a host with a space parse, and the account checks name them.
        assert_eq!(parse_endpoint("imaps://x:0").unwrap().port, Some(0));
        assert_eq!(
            parse_endpoint("imaps://mail example.org").unwrap().host,
            "mail example.org"
        );
    }
}
