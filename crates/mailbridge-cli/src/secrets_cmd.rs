//! `mailbridge secrets set-app-secret|rotate-key`.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use mailbridge_store::{MasterKey, SecretKind, Store};
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
    let dir = global.data_dir();
    let store: Store = context::open_store(global).await?;
    let new_key = MasterKey::generate()?;
    if std::env::var_os(mailbridge_store::master_key::MASTER_KEY_ENV).is_some()
        || std::env::var_os("MAILBRIDGE_MASTER_PASSPHRASE").is_some()
    {
        let count = store.rotate_key(&new_key).await?;
        println!(
            "re-sealed {count} secrets. Set this new master key before the next run (shown once):"
        );
        println!(
            "MAILBRIDGE_MASTER_KEY={}",
            new_key.to_base64().expose_secret()
        );
        return Ok(());
    }
    // Key file: write the new key beside the old one first, so a crash between the
    // database commit and the rename leaves both keys on disk.
    let key_path = dir.join("master.key");
    let new_path = dir.join("master.key.new");
    let _ = std::fs::remove_file(&new_path);
    let written = MasterKey::load_or_create_file(&new_path)?;
    let count = store.rotate_key(&written).await?;
    std::fs::rename(&new_path, &key_path).with_context(|| {
        format!(
            "re-sealed, but failed to move {} to {}",
            new_path.display(),
            key_path.display()
        )
    })?;
    println!(
        "re-sealed {count} secrets under a new master key in {}",
        key_path.display()
    );
    Ok(())
}
