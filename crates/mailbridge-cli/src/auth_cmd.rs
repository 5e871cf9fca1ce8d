//! `mailbridge auth login|status|logout|token`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use mailbridge_auth::claims::signed_in_user;
use mailbridge_auth::interactive::{AuthorizationRequest, loopback_sign_in};
use mailbridge_auth::scopes::Grant;
use mailbridge_store::Store;
use mailbridge_store::token_store::refresh_token_id;
use mailbridge_types::config::{AppCredentialConfig, Transport};
use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::context::{self, GlobalArgs};

/// How a person signs in.
#[derive(Debug, Clone, Copy)]
pub enum LoginMethod {
    /// Open the system browser; it comes back to a loopback port (default).
    Browser,
    /// Show a code to enter at the verification page on any device.
    DeviceCode,
    /// Print the sign-in URL; paste the URL the browser ends on.
    Paste,
}

/// `mailbridge auth ...`
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Sign an account in (delegated accounts; app-only accounts are checked).
    Login {
        account: String,
        /// Open the system browser; it comes back to a loopback port (the default).
        #[arg(long, group = "how")]
        browser: bool,
        /// Show a code to enter at the verification page on any device.
        #[arg(long, group = "how")]
        device_code: bool,
        /// Print the sign-in URL; paste the URL the browser ends on.
        #[arg(long, group = "how")]
        paste: bool,
        /// Do not try to open a browser; print the URL instead.
        #[arg(long)]
        no_open: bool,
        /// Seconds to wait for the browser or the device-code sign-in.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show every account's sign-in state and what expires soon.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Forget an account's tokens.
    Logout { account: String },
    /// Print a current access token (for scripts).
    Token {
        account: String,
        /// Which resource the token is for.
        #[arg(long, value_enum)]
        transport: Option<TransportArg>,
        /// Print even when standard output is a terminal.
        #[arg(long)]
        show: bool,
    },
}

/// A transport on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TransportArg {
    Graph,
    Imap,
    Pop3,
    Smtp,
    Ews,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Graph => Transport::Graph,
            TransportArg::Imap => Transport::Imap,
            TransportArg::Pop3 => Transport::Pop3,
            TransportArg::Smtp => Transport::Smtp,
            TransportArg::Ews => Transport::Ews,
        }
    }
}

/// Runs an auth command.
pub async fn run(global: &GlobalArgs, command: AuthCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    let config = context::catalog(global, &store).await?;
    match command {
        AuthCommand::Login {
            account,
            browser: _,
            device_code,
            paste,
            no_open,
            timeout,
        } => {
            let method = if device_code {
                LoginMethod::DeviceCode
            } else if paste {
                LoginMethod::Paste
            } else {
                LoginMethod::Browser
            };
            login(
                &config,
                &store,
                &account,
                method,
                no_open,
                Duration::from_secs(timeout),
            )
            .await
        }
        AuthCommand::Status { json } => status(&config, &store, json).await,
        AuthCommand::Logout { account } => {
            let Some(acc) = config.account(&account) else {
                bail!("no account named {account:?} in the configuration");
            };
            let removed = store.delete_secret(&refresh_token_id(&acc.name)).await?;
            store.clear_account_state(&acc.name).await?;
            println!(
                "{}: {}",
                acc.name,
                if removed {
                    "signed out (refresh token deleted)"
                } else {
                    "was not signed in"
                }
            );
            Ok(())
        }
        AuthCommand::Token {
            account,
            transport,
            show,
        } => {
            if std::io::stdout().is_terminal() && !show {
                bail!("refusing to print an access token to a terminal; pipe it, or add --show");
            }
            let (acc, app) = context::account_and_app(&config, &account)?;
            let transport = transport
                .map(Transport::from)
                .or_else(|| acc.transports.first().copied())
                .unwrap_or(Transport::Graph);
            let sign_in = context::account_sign_in(acc, app, &store, transport).await?;
            let sessions = context::sign_in(&store).sessions(app)?;
            let token = sessions.access_token(&sign_in).await.map_err(explain)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", token.expose_secret())?;
            Ok(())
        }
    }
}

fn explain(e: mailbridge_auth::token::AuthError) -> anyhow::Error {
    let class = e.class();
    anyhow::Error::new(e).context(format!("sign-in failed ({class})"))
}

fn open_browser(url: &str, no_open: bool) {
    eprintln!("Sign in in your browser. If it does not open, visit:\n\n  {url}\n");
    if no_open {
        return;
    }
    for opener in ["xdg-open", "open"] {
        if std::process::Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
}

async fn login(
    config: &mailbridge_types::config::ConfigFile,
    store: &Store,
    account: &str,
    method: LoginMethod,
    no_open: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (acc, app) = context::account_and_app(config, account)?;
    let first = acc.transports.first().copied().unwrap_or(Transport::Graph);
    let sign_in = context::account_sign_in(acc, app, store, first).await?;
    let sessions = context::sign_in(store).sessions(app)?;
    let client = sessions.client().clone();
    if context::grant(acc)? == Grant::AppOnly {
        let token = sessions.access_token(&sign_in).await.map_err(explain)?;
        println!(
            "{}: app-only sign-in works (client id {}).",
            acc.name, app.client_id
        );
        if let AppCredentialConfig::Certificate {
            certificate_file, ..
        } = &app.credential
            && let Some(t) = std::fs::read_to_string(certificate_file)
                .ok()
                .and_then(|pem| mailbridge_auth::credential::certificate_thumbprint(&pem))
        {
            println!("  certificate thumbprint {t}");
        }
        // Name what the token itself says is missing (admin consent, wrong API).
        if let Some(claims) = mailbridge_auth::claims::TokenClaims::decode(token.expose_secret()) {
            for t in &acc.transports {
                for problem in claims.problems(*t, Grant::AppOnly) {
                    println!("  ! {problem}");
                }
            }
        }
        return Ok(());
    }
    let extra = mailbridge_accounts::signin::extra_consent(acc, app);
    let tokens = match method {
        LoginMethod::Browser => loopback_sign_in(
            &client,
            &sign_in.app,
            &sign_in.authority,
            &sign_in.scopes,
            &extra,
            Some(&acc.address),
            timeout,
            |url| open_browser(url, no_open),
        )
        .await
        .map_err(explain)?,
        LoginMethod::DeviceCode => {
            let mut scopes = sign_in.scopes.clone();
            scopes.extend(extra);
            let code = client
                .start_device_code(&sign_in.app, &sign_in.authority, &scopes)
                .await
                .map_err(explain)?;
            eprintln!("{}", code.message);
            client
                .poll_device_code(&sign_in.app, &sign_in.authority, &code)
                .await
                .map_err(explain)?
        }
        LoginMethod::Paste => {
            let request = AuthorizationRequest::with_extra_consent(
                &app.client_id,
                &sign_in.authority,
                &sign_in.scopes,
                &extra,
                "http://localhost/",
                Some(&acc.address),
            );
            eprintln!(
                "Open this URL in a browser on any machine and sign in:\n\n  {}\n\nThe browser ends on a page that does not load (http://localhost/?code=...). Copy that whole address and paste it here:",
                request.url
            );
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("failed to read the pasted URL")?;
            let code = request.code_from_redirect(line.trim()).map_err(explain)?;
            request
                .redeem(&client, &sign_in.app, &sign_in.authority, &code)
                .await
                .map_err(explain)?
        }
    };
    // Who signed in, as the answer says (never the account's address by default); a
    // different user is said at once, before anything else.
    let user = signed_in_user(
        tokens.id_token.as_deref(),
        tokens.access_token.expose_secret(),
    );
    let mailbox = acc.address.as_str();
    let login = acc.login_name();
    if let Some(u) = &user
        && !u.is(mailbox)
        && !u.is(&login)
    {
        eprintln!(
            "warning: {} signed in, but account {} is the mailbox {mailbox}: mailbridge will open {mailbox} with {}'s rights, which works only if {} has Full Access to it. To sign in as {mailbox} instead, run `mailbridge auth login {}` again and choose that account.",
            u.name, acc.name, u.name, u.name, acc.name
        );
    }
    context::sign_in(store)
        .keep_sign_in(app, &acc.name, &tokens)
        .await?;
    match &user {
        Some(u) => println!("{}: signed in as {}.", acc.name, u.name),
        None => println!(
            "{}: signed in (the sign-in service did not say which user; personal Microsoft accounts may not).",
            acc.name
        ),
    }
    Ok(())
}

async fn status(
    config: &mailbridge_types::config::ConfigFile,
    store: &Store,
    as_json: bool,
) -> anyhow::Result<()> {
    let health = mailbridge_accounts::health::health(config, store).await?;
    // Through `Value`, as the command printed it before: the same keys, in the same order.
    let apps: Vec<serde_json::Value> = health
        .apps
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let accounts: Vec<serde_json::Value> = health
        .accounts
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"apps": apps, "accounts": accounts}))?
        );
        return Ok(());
    }
    for a in &apps {
        println!(
            "app {:<24} {:<14} expires {}",
            a["name"].as_str().unwrap_or_default(),
            a["credential"].as_str().unwrap_or_default(),
            a["expires"].as_str().unwrap_or("-")
        );
        if let Some(t) = a["thumbprint"].as_str() {
            println!("  thumbprint {t} (match it in App registrations -> Certificates & secrets)");
        }
        for w in a["warnings"].as_array().into_iter().flatten() {
            println!("  ! {}", w.as_str().unwrap_or_default());
        }
    }
    for a in &accounts {
        println!(
            "account {:<20} {:<32} {}",
            a["name"].as_str().unwrap_or_default(),
            a["address"].as_str().unwrap_or_default(),
            a["state"].as_str().unwrap_or_default()
        );
        if let Some(r) = a["reason"].as_str() {
            println!("  reason: {r}");
        }
        for w in a["warnings"].as_array().into_iter().flatten() {
            println!("  ! {}", w.as_str().unwrap_or_default());
        }
    }
    Ok(())
}
