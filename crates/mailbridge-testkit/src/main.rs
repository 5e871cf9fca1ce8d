//! `mailbridge-testkit serve [--config tenant.toml] [--listen ADDR]`: the emulated
//! tenant as a program (the same as `mailbridge sandbox`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mailbridge_testkit::TenantModel;
use mailbridge_testkit::sandbox::{Sandbox, SandboxOptions};

#[derive(Parser, Debug)]
#[command(
    name = "mailbridge-testkit",
    version,
    about = "The emulated Microsoft 365 tenant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the emulated tenant until interrupted.
    Serve {
        /// Tenant model (TOML); the built-in sandbox tenant when absent.
        #[arg(long, env = "MAILBRIDGE_SANDBOX_TENANT")]
        tenant: Option<PathBuf>,
        /// Address for the HTTP endpoints.
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: SocketAddr,
        /// Serve only the HTTP endpoints (no Dovecot/Postfix, so no mailboxes).
        #[arg(long)]
        no_mail_servers: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            tenant: config,
            listen,
            no_mail_servers,
        } => serve(config, listen, no_mail_servers).await,
    }
}

async fn serve(
    config: Option<PathBuf>,
    listen: SocketAddr,
    no_mail_servers: bool,
) -> anyhow::Result<()> {
    let model = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read tenant model {}", path.display()))?;
            TenantModel::from_toml(&text)
                .with_context(|| format!("failed to load tenant model {}", path.display()))?
        }
        None => TenantModel::sandbox(),
    };
    let sandbox = Sandbox::start(SandboxOptions {
        model,
        listen,
        mail_servers: !no_mail_servers,
    })
    .await
    .context("failed to start the sandbox")?;
    println!("{}", sandbox.summary());
    println!("Press Ctrl-C to stop.");
    mailbridge_testkit::sandbox::wait_for_shutdown_signal().await;
    sandbox.stop().await;
    Ok(())
}
