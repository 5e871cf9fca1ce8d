//! `mailbridge secrets set-app-secret|rotate-key`.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use mailbridge_accounts::master_key::{self, Rotation};
use mailbridge_store::{SecretKind, Store};
use mailbridge_types::config::AppCredentialConfig;
use secrecy::{ExposeSecret as _, SecretString};

use crate::context::{self, GlobalArgs};

/// `mailbridge secrets ...`
#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Store an app's client secret (the Value from Certificates & secrets), read from
    /// standard input, sealed under the master key.
    SetAppSecret { app: String },
    /// Re-seal every secret under a new master key.
    RotateKey,
}

/// Runs a secrets command.
pub async fn run(global: &GlobalArgs, command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::SetAppSecret { app } => {
            let store = context::open_store(global).await?;
            let config = context::catalog(global, &store).await?;
            let Some(app) = config.app(&app) else {
                bail!("no app named {app:?} in the configuration");
            };
            let AppCredentialConfig::Secret { expires } = &app.credential else {
                bail!(
                    "app {} is not configured with a client secret (credential.type = \"secret\")",
                    app.name
                );
            };
            if std::io::stdin().is_terminal() {
                eprintln!("Paste the client secret's Value (not its Secret ID), then Enter:");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("failed to read the secret")?;
            let value = SecretString::from(line.trim().to_owned());
            if value.expose_secret().is_empty() {
                bail!("no secret was given");
            }
            if uuid_like(value.expose_secret()) {
                eprintln!(
                    "warning: this looks like a Secret ID (a GUID), not the secret's Value; Microsoft will answer AADSTS7000215"
                );
            }
            store
                .put_secret(
                    &app.secret_id(),
                    SecretKind::ClientSecret,
                    &value,
                    *expires,
                    store.now(),
                )
                .await?;
            println!("stored the client secret of app {}", app.name);
            Ok(())
        }
        SecretsCommand::RotateKey => rotate_key(global).await,
    }
}

pub(crate) fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|c| *c == '-').count() == 4
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

async fn rotate_key(global: &GlobalArgs) -> anyhow::Result<()> {
    let store: Store = context::open_store(global).await?;
    match master_key::rotate_key(&global.data_dir(), &store).await? {
        Rotation::Environment { resealed, new_key } => {
            println!(
                "re-sealed {resealed} secrets. Set this new master key before the next run (shown once):"
            );
            println!("MAILBRIDGE_MASTER_KEY={}", new_key.expose_secret());
        }
        Rotation::KeyFile { resealed, key_file } => println!(
            "re-sealed {resealed} secrets under a new master key in {}",
            key_file.display()
        ),
    }
    Ok(())
}
