//! `mailbridge token add|list|revoke`: the daemon's API tokens, kept in the store as
//! SHA-256 only. A new token is printed once; nothing can show it again (make another
//! and revoke the old one).

use anyhow::Context as _;
use mailbridge_store::{ApiToken, StoreError};
use mailbridge_types::access::Role;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::context::GlobalArgs;
use crate::output::json_pretty;
use crate::serve_cmd::StoreArgs;

/// A role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything: accounts, apps, providers, settings, tokens.
    Administrator,
    /// Its user's own accounts (`--user`).
    User,
    /// Reads what an administrator sees, changes nothing.
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Administrator => Role::Administrator,
            RoleArg::User => Role::User,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

/// `mailbridge token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make an API token and print it (only this once).
    Add {
        /// A name for the token (unique among tokens not revoked), e.g. the program
        /// that will use it.
        name: String,
        /// What the token may do.
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        /// The user whose accounts a `user` token acts on.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON (with the token) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the API tokens (never the tokens themselves), revoked ones too.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an API token by name (or id): the daemon refuses it from now on.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Serialize)]
struct Listed {
    id: String,
    name: String,
    role: &'static str,
    user: Option<String>,
    created_at: String,
    revoked_at: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn listed(t: ApiToken) -> Listed {
    Listed {
        id: t.id.to_string(),
        name: t.name,
        role: t.role.as_str(),
        user: t.user,
        created_at: rfc3339(t.created_at),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

/// Runs a token command.
pub async fn run(global: &GlobalArgs, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add {
            name,
            role,
            user,
            json,
            store,
        } => {
            let store = store.open(global).await?;
            let issued =
                mailbridge_server::store_tokens::issue(&store, &name, role.into(), user.as_deref())
                    .await;
            store.close().await;
            let (token, stored) = match issued {
                Err(mailbridge_server::store_tokens::IssueError::Store(StoreError::Exists {
                    ..
                })) => anyhow::bail!(
                    "an API token named {name:?} exists already: choose another name, or revoke it first (mailbridge token revoke {name})"
                ),
                other => other.context("failed to make the API token")?,
            };
            if json {
                #[derive(Serialize)]
                struct Added<'a> {
                    #[serde(flatten)]
                    info: Listed,
                    /// The token itself (shown only this once).
                    token: &'a str,
                }
                println!(
                    "{}",
                    json_pretty(&Added {
                        info: listed(stored),
                        token: token.expose_secret(),
                    })?
                );
            } else {
                println!(
                    "API token \"{}\" ({}): {}",
                    stored.name,
                    stored.role.as_str(),
                    token.expose_secret()
                );
                println!(
                    "It is shown only this once: keep it now. Send it as Authorization: Bearer <token>."
                );
            }
            Ok(())
        }
        TokenCommand::List { json, store } => {
            let store = store.open(global).await?;
            let tokens = store.api_tokens().await;
            store.close().await;
            let tokens: Vec<Listed> = tokens
                .context("failed to read the API tokens")?
                .into_iter()
                .map(listed)
                .collect();
            if json {
                println!("{}", json_pretty(&tokens)?);
            } else if tokens.is_empty() {
                println!("no API tokens (mailbridge serve makes the first one)");
            } else {
                for t in tokens {
                    let state = match &t.revoked_at {
                        Some(at) => format!("revoked {at}"),
                        None => "valid".to_owned(),
                    };
                    println!(
                        "{}  {}  {}  created {}  {}  id {}",
                        mailbridge_types::printable(&t.name),
                        t.role,
                        t.user
                            .as_deref()
                            .map_or("-".into(), mailbridge_types::printable),
                        t.created_at,
                        state,
                        t.id
                    );
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { name, store } => {
            let store = store.open(global).await?;
            let revoked = store.revoke_api_token(&name).await;
            store.close().await;
            match revoked {
                Ok(t) => {
                    println!("revoked API token \"{}\" ({})", t.name, t.role.as_str());
                    Ok(())
                }
                Err(StoreError::NotFound { .. }) => anyhow::bail!(
                    "no valid API token named {name:?}: `mailbridge token list` shows the tokens"
                ),
                Err(e) => Err(e).context("failed to revoke the API token"),
            }
        }
    }
}
