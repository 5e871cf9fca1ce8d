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
use mailbridge_accounts::catalog::provider_table;
use mailbridge_accounts::endpoint::{endpoint_text, parse_endpoint};
use mailbridge_accounts::provider::ProviderTable;
use mailbridge_accounts::transfer;
use mailbridge_store::{AccountState, SecretKind, Store};
use mailbridge_types::config::{
    AccountConfig, AppConfig, EndpointConfig, LoginFormat, SignInMethod, Transport, Usage,
};
use secrecy::SecretString;
use serde::Serialize;

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
    let file = transfer::read(path)?;
    let existing = context::catalog(global, store).await?;
    transfer::import(
        store,
        &existing,
        &file,
        replace,
        &path.display().to_string(),
    )
    .await?;
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
    let catalog = context::catalog(global, store).await?;
    let file = transfer::export(store, catalog, with_secrets).await?;
    let text = transfer::to_toml(&file, with_secrets)?;
    if let Some(path) = out {
        transfer::write_file(&path, text.as_bytes(), with_secrets)
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
