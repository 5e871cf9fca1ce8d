//! `mailbridge`: the one program.
//!
//! Commands: `sandbox` (the emulated Microsoft 365 tenant, to try every sign-in and
//! mail flow without a real tenant), `account` (accounts kept in the store: add with
//! autodetection, list, show, edit, remove, import/export), `app` (app registrations:
//! add, list, show, edit, remove), `provider` (built-in and user-defined providers), `auth` (sign accounts in, status, tokens for scripts),
//! `secrets` (client secrets, master-key rotation), `test receive|send` (step-by-step
//! checks that name the fix), `send` (now, or `--queue` into the durable outbox),
//! `outbox` (list the queued messages, `send-pending`), `fetch`, `serve` (the daemon:
//! the HTTP API over the store, SQLite in the data directory or PostgreSQL), `token`
//! (the daemon's API tokens), `user` (the people of the web UI: add, list, passwd,
//! disable, enable).
//!
//! Exit codes: 0 success, 1 runtime failure (the message says what and what to do),
//! 2 usage error (from clap). `--json` prints JSON on standard output; errors go to
//! standard error as `error: ...` lines, with the whole cause chain and any server's
//! words made printable (control characters as visible escapes).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
#[cfg(feature = "sandbox")]
use mailbridge_testkit::TenantModel;

mod account_cmd;
mod app_cmd;
mod auth_cmd;
mod context;
mod fetch_cmd;
mod outbox_cmd;
mod output;
mod provider_cmd;
mod secrets_cmd;
mod send_cmd;
mod serve_cmd;
mod serve_net;
mod test_cmd;
mod token_cmd;
mod user_cmd;

#[derive(Parser, Debug)]
#[command(
    name = "mailbridge",
    version,
    about = "Connect applications to Microsoft 365 / Exchange and any IMAP/POP3/SMTP mailbox"
)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the emulated Microsoft 365 tenant (identity platform, Graph, EWS,
    /// Autodiscover) with demo users and apps, and print how to use it.
    #[cfg(feature = "sandbox")]
    Sandbox {
        /// Tenant model (TOML); the built-in sandbox tenant when absent.
        #[arg(long, env = "MAILBRIDGE_SANDBOX_TENANT")]
        tenant: Option<std::path::PathBuf>,
        /// Address for the HTTP endpoints.
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: std::net::SocketAddr,
        /// Serve only the HTTP endpoints (no Dovecot/Postfix, so no mailboxes).
        #[arg(long)]
        no_mail_servers: bool,
        /// Print the built-in sandbox tenant model (TOML) and exit.
        #[arg(long)]
        print_model: bool,
    },
    /// Add, list, show, change, remove, import and export accounts.
    #[command(subcommand)]
    Account(Box<account_cmd::AccountCommand>),
    /// Add, list, show, change and remove app registrations (tenant, client id,
    /// credential).
    #[command(subcommand)]
    App(Box<app_cmd::AppCommand>),
    /// Built-in and your own providers, and the domains they serve.
    #[command(subcommand)]
    Provider(provider_cmd::ProviderCommand),
    /// Sign accounts in and out, show what expires, print tokens for scripts.
    #[command(subcommand)]
    Auth(auth_cmd::AuthCommand),
    /// Client secrets and the master key.
    #[command(subcommand)]
    Secrets(secrets_cmd::SecretsCommand),
    /// Check an account's incoming or outgoing side step by step.
    #[command(subcommand)]
    Test(test_cmd::TestCommand),
    /// Send a message (or a raw MIME file) from an account over SMTP, Graph or EWS.
    Send(Box<send_cmd::SendArgs>),
    /// The durable outbox: list queued messages and their state, send what is due.
    #[command(subcommand)]
    Outbox(outbox_cmd::OutboxCommand),
    /// Download a folder's new messages into a Maildir, durably, with a progress bar.
    Fetch(fetch_cmd::FetchArgs),
    /// Run the daemon: the HTTP API on 127.0.0.1:8025, the store in the data
    /// directory (or PostgreSQL); prints the first administrator API token once.
    Serve(serve_cmd::ServeArgs),
    /// Make, list and revoke the daemon's API tokens.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Add, list and change the people who sign in to the web UI.
    #[command(subcommand)]
    User(user_cmd::UserCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does (info unless RUST_LOG says otherwise), in the format
    // asked for; a command logs errors only unless asked.
    let (default_level, json) = match &cli.command {
        Command::Serve(args) => ("info", args.log_format == serve_cmd::LogFormat::Json),
        _ => ("error", false),
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // The platform verifier logs every refused certificate as a coloured ERROR; the
    // command's own message says it, with the cause and the fix. Shown when asked for.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls_platform_verifier"))
        && let Ok(quiet) = "rustls_platform_verifier=off".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // Colours only on a terminal: a journal or a log file gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Server text may be inside: never let it drive the terminal.
            eprintln!(
                "error: {}",
                mailbridge_types::printable_lines(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            tenant: config,
            listen,
            no_mail_servers,
            print_model,
        } => {
            if print_model {
                print!("{}", TenantModel::sandbox().to_toml());
                return Ok(());
            }
            sandbox(config, listen, no_mail_servers).await
        }
        Command::Account(command) => account_cmd::run(&cli.global, *command).await,
        Command::App(command) => app_cmd::run(&cli.global, *command).await,
        Command::Provider(command) => provider_cmd::run(&cli.global, command).await,
        Command::Auth(command) => auth_cmd::run(&cli.global, command).await,
        Command::Secrets(command) => secrets_cmd::run(&cli.global, command).await,
        Command::Test(command) => test_cmd::run(&cli.global, command).await,
        Command::Send(args) => send_cmd::run(&cli.global, *args).await,
        Command::Outbox(command) => outbox_cmd::run(&cli.global, command).await,
        Command::Fetch(args) => fetch_cmd::run(&cli.global, args).await,
        Command::Serve(args) => serve_cmd::run(&cli.global, args).await,
        Command::Token(command) => token_cmd::run(&cli.global, command).await,
        Command::User(command) => user_cmd::run(&cli.global, command).await,
    }
}

#[cfg(feature = "sandbox")]
async fn sandbox(
    tenant: Option<std::path::PathBuf>,
    listen: std::net::SocketAddr,
    no_mail_servers: bool,
) -> anyhow::Result<()> {
    mailbridge_testkit::sandbox::run(tenant.as_deref(), listen, !no_mail_servers).await
}
