//! `mailbridge-testkit serve [--config tenant.toml] [--listen ADDR]`: the emulated
//! tenant as a program (the same as `mailbridge sandbox`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
        #[arg(long, visible_alias = "config", env = "MAILBRIDGE_SANDBOX_TENANT")]
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
    tenant: Option<PathBuf>,
    listen: SocketAddr,
    no_mail_servers: bool,
) -> anyhow::Result<()> {
    mailbridge_testkit::sandbox::run(tenant.as_deref(), listen, !no_mail_servers).await
}
