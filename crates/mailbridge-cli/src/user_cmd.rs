//! `mailbridge user add|list|passwd|disable|enable`: the people who sign in to the
//! web UI. A password comes from a hidden prompt (asked twice) or `--password-file`
//! (`-` for standard input) and is kept only as its Argon2id hash; it is never
//! printed. Changing a password or disabling a user ends their web sessions.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use mailbridge_store::{NewUser, StoreError, User};
use mailbridge_types::access::Role;
use secrecy::SecretString;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::context::GlobalArgs;
use crate::output::json_pretty;
use crate::serve_cmd::StoreArgs;
use crate::token_cmd::RoleArg;

/// `mailbridge user ...`
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a person who signs in to the web UI.
    Add {
        /// Their sign-in name: 1 to 64 letters, digits, `.`, `-`, `_` or `@`.
        name: String,
        /// What they may do.
        #[arg(long, value_enum, default_value_t = RoleArg::User, conflicts_with = "admin")]
        role: RoleArg,
        /// Short for --role administrator.
        #[arg(long)]
        admin: bool,
        /// Their language for the web UI (en, pl, de, fr, ru); without it, the
        /// browser's.
        #[arg(long)]
        language: Option<String>,
        /// Read the password from this file (`-`: standard input) instead of a prompt.
        #[arg(long, value_name = "FILE")]
        password_file: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the people of the web UI (never their passwords).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a new password (their web sessions end).
    Passwd {
        name: String,
        /// Read the password from this file (`-`: standard input) instead of a prompt.
        #[arg(long, value_name = "FILE")]
        password_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop someone from signing in (their web sessions end; the user is kept).
    Disable {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Let a disabled user sign in again.
    Enable {
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
    language: Option<String>,
    created_at: String,
    disabled: bool,
}

fn listed(u: User) -> Listed {
    Listed {
        id: u.id.to_string(),
        name: u.name,
        role: u.role.as_str(),
        language: u.language,
        created_at: u
            .created_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| u.created_at.unix_timestamp().to_string()),
        disabled: u.disabled,
    }
}

/// Reads a new password for `name`: from `file` (`-`: one line of standard input), or
/// a hidden prompt asked twice on a terminal; checked and hashed.
async fn new_password(
    name: &str,
    file: Option<&Path>,
) -> anyhow::Result<mailbridge_store::PasswordHash> {
    let text = match file {
        Some(p) if p == Path::new("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .take(64 * 1024)
                .read_line(&mut line)
                .context("failed to read the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
        Some(p) => {
            let mut text = String::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
                .with_context(|| format!("failed to read the password from {}", p.display()))?;
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password(format!("Password for {name}: "))
                .context("failed to read the password")?;
            let second = rpassword::prompt_password("Password again: ")
                .context("failed to read the password")?;
            if first != second {
                bail!(
                    "the two passwords differ: run the command again and type the same password twice"
                );
            }
            first
        }
        None => bail!(
            "no terminal to ask for the password of {name}: give it with --password-file FILE (or --password-file - to read standard input)"
        ),
    };
    let password = SecretString::from(text);
    mailbridge_web::password::hash(password)
        .await
        .with_context(|| format!("the password for {name} was not accepted"))
}

/// Runs a user command.
pub async fn run(global: &GlobalArgs, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            admin,
            language,
            password_file,
            json,
            store,
        } => {
            if !mailbridge_web::valid_user_name(&name) {
                bail!(
                    "{:?} is not a valid user name: use 1 to 64 letters, digits, `.`, `-`, `_` or `@`",
                    mailbridge_types::printable(&name)
                );
            }
            let language = match language.as_deref() {
                None => None,
                Some(l) => Some(mailbridge_web::i18n::supported(l).with_context(|| {
                    format!(
                        "the web UI has no language {:?}: choose en, pl, de, fr or ru",
                        mailbridge_types::printable(l)
                    )
                })?),
            };
            let role = if admin {
                Role::Administrator
            } else {
                role.into()
            };
            let hash = new_password(&name, password_file.as_deref()).await?;
            let store = store.open(global).await?;
            let added = store
                .add_user(NewUser {
                    name: &name,
                    role,
                    password: &hash,
                    language,
                })
                .await;
            store.close().await;
            let user = match added {
                Err(StoreError::Exists { .. }) => bail!(
                    "a user named {name:?} exists already: choose another name, or change the password with `mailbridge user passwd {name}`"
                ),
                other => other.context("failed to add the user")?,
            };
            if json {
                println!("{}", json_pretty(&listed(user))?);
            } else {
                println!(
                    "added user \"{}\" ({}): they can sign in to the web UI now",
                    user.name,
                    user.role.as_str()
                );
            }
            Ok(())
        }
        UserCommand::List { json, store } => {
            let store = store.open(global).await?;
            let users = store.users().await;
            store.close().await;
            let users: Vec<Listed> = users
                .context("failed to read the users")?
                .into_iter()
                .map(listed)
                .collect();
            if json {
                println!("{}", json_pretty(&users)?);
            } else if users.is_empty() {
                println!(
                    "no users yet (open the setup link `mailbridge serve` prints, or run `mailbridge user add NAME --admin`)"
                );
            } else {
                for u in users {
                    println!(
                        "{}  {}  language {}  created {}{}",
                        mailbridge_types::printable(&u.name),
                        u.role,
                        u.language.as_deref().unwrap_or("from the browser"),
                        u.created_at,
                        if u.disabled { "  disabled" } else { "" }
                    );
                }
            }
            Ok(())
        }
        UserCommand::Passwd {
            name,
            password_file,
            store,
        } => {
            let hash = new_password(&name, password_file.as_deref()).await?;
            let store = store.open(global).await?;
            let changed = store.set_user_password(&name, &hash).await;
            store.close().await;
            not_found(&name, changed)?;
            println!("changed the password of \"{name}\"; their web sessions ended");
            Ok(())
        }
        UserCommand::Disable { name, store } => {
            set_disabled(global, &name, &store, true).await?;
            println!("disabled \"{name}\": they cannot sign in; their web sessions ended");
            Ok(())
        }
        UserCommand::Enable { name, store } => {
            set_disabled(global, &name, &store, false).await?;
            println!("enabled \"{name}\": they can sign in again");
            Ok(())
        }
    }
}

async fn set_disabled(
    global: &GlobalArgs,
    name: &str,
    store: &StoreArgs,
    disabled: bool,
) -> anyhow::Result<()> {
    let store = store.open(global).await?;
    let changed = store.set_user_disabled(name, disabled).await;
    store.close().await;
    not_found(name, changed)
}

/// A store answer about the user `name`, with "no such user" said with the fix.
fn not_found(name: &str, answer: Result<User, StoreError>) -> anyhow::Result<()> {
    match answer {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => bail!(
            "no user named {:?}: `mailbridge user list` shows the users",
            mailbridge_types::printable(name)
        ),
        Err(e) => Err(e).context("failed to change the user"),
    }
}
