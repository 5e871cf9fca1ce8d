//! `mailbridge app add|list|show|edit|remove`: app registrations kept in the store, as
//! accounts are, checked before they are saved. A client secret is read from a
//! terminal prompt (hidden), a file or standard input, sealed under the master key and
//! never printed; a certificate is named by its files.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mailbridge_accounts::account::{Problem, validate_app};
use mailbridge_store::{SecretKind, Store};
use mailbridge_types::config::{AppConfig, AppCredentialConfig, Cloud};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::account_cmd::{config_word, interactive};
use crate::context::{self, GlobalArgs};

/// `mailbridge app ...`
#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Add an app registration: its tenant, client id, cloud and credential (a client
    /// secret is prompted for on a terminal, or read with --client-secret-file).
    Add {
        /// Local name, used by accounts (`account add --app NAME`).
        name: String,
        #[command(flatten)]
        settings: AppSettings,
        #[arg(long)]
        json: bool,
    },
    /// List the apps (store and configuration file), their credential and accounts.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one app (never its secret): settings, credential, accounts, problems.
    Show {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Change settings of an app (only those given); a new client secret replaces the
    /// stored one.
    Edit {
        app: String,
        #[command(flatten)]
        settings: AppSettings,
        #[arg(long)]
        json: bool,
    },
    /// Remove an app and its stored client secret (not while accounts use it).
    Remove {
        app: String,
        #[arg(long)]
        json: bool,
    },
}

/// Settings of `app add` and `app edit`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AppSettings {
    /// Directory (tenant) ID, a verified domain, or common / organizations /
    /// consumers (delegated sign-in only).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Application (client) ID (Azure portal -> App registrations -> the app ->
    /// Overview).
    #[arg(long)]
    pub client_id: Option<String>,
    /// global, us-gov-high, us-gov-dod or china.
    #[arg(long, value_parser = config_word::<Cloud>)]
    pub cloud: Option<Cloud>,
    /// Sign-in host replacing the cloud's (the sandbox, a proxy); "" removes it.
    #[arg(long)]
    pub authority_host: Option<String>,
    /// Graph root for requests, replacing the cloud's; "" removes it.
    #[arg(long)]
    pub graph_root: Option<String>,
    /// Extra trusted CA (PEM file) for the sign-in host; "" removes it.
    #[arg(long)]
    pub extra_ca_file: Option<PathBuf>,
    /// none (a public client: device code, browser), secret or certificate. Follows
    /// from the secret or certificate options when not given.
    #[arg(long, value_parser = ["none", "secret", "certificate"])]
    pub credential: Option<String>,
    /// Read the client secret's Value from this file (`-`: standard input). Without
    /// it a terminal prompts for the secret, hidden.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// When the client secret expires (the portal's Expires column): YYYY-MM-DD or
    /// RFC 3339. `auth status` warns 30 days ahead.
    #[arg(long, value_parser = parse_expiry)]
    pub secret_expires: Option<OffsetDateTime>,
    /// The certificate (PEM) uploaded under Certificates & secrets.
    #[arg(long)]
    pub certificate_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Sign the certificate's assertion with RS256 + x5t (true) instead of PS256 +
    /// x5t#S256 (false, the default).
    #[arg(long)]
    pub rs256: Option<bool>,
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time.
fn parse_expiry(text: &str) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &day)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{text:?} is not a date (2027-06-30) or an RFC 3339 date-time"))
}

/// The kind of credential asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Secret,
    Certificate,
}

fn kind_of(c: &AppCredentialConfig) -> Kind {
    match c {
        AppCredentialConfig::None => Kind::None,
        AppCredentialConfig::Secret { .. } => Kind::Secret,
        AppCredentialConfig::Certificate { .. } => Kind::Certificate,
    }
}

/// The credential kind the options ask for, if they ask for one.
fn asked_kind(s: &AppSettings) -> anyhow::Result<Option<Kind>> {
    let secret = s.client_secret_file.is_some() || s.secret_expires.is_some();
    let certificate = s.certificate_file.is_some() || s.key_file.is_some() || s.rs256.is_some();
    if secret && certificate {
        bail!(
            "give either a client secret (--client-secret-file, --secret-expires) or a certificate (--certificate-file, --key-file, --rs256), not both"
        );
    }
    let implied = if secret {
        Some(Kind::Secret)
    } else if certificate {
        Some(Kind::Certificate)
    } else {
        None
    };
    let explicit = match s.credential.as_deref() {
        Some("none") => Some(Kind::None),
        Some("secret") => Some(Kind::Secret),
        Some("certificate") => Some(Kind::Certificate),
        _ => None,
    };
    match (explicit, implied) {
        (Some(e), Some(i)) if e != i => bail!(
            "--credential {} does not go with the {} options",
            s.credential.as_deref().unwrap_or_default(),
            if i == Kind::Secret {
                "client secret"
            } else {
                "certificate"
            }
        ),
        (e, i) => Ok(e.or(i)),
    }
}

/// Applies the settings to `app`; the new credential kind when it changed or was asked.
fn apply(app: &mut AppConfig, s: &AppSettings) -> anyhow::Result<Option<Kind>> {
    if let Some(v) = &s.tenant {
        app.tenant.clone_from(v);
    }
    if let Some(v) = &s.client_id {
        app.client_id.clone_from(v);
    }
    if let Some(v) = s.cloud {
        app.cloud = v;
    }
    if let Some(v) = &s.authority_host {
        app.authority_host = (!v.is_empty()).then(|| v.trim_end_matches('/').to_owned());
    }
    if let Some(v) = &s.graph_root {
        app.graph_root = (!v.is_empty()).then(|| v.trim_end_matches('/').to_owned());
    }
    if let Some(v) = &s.extra_ca_file {
        app.extra_ca_file = (!v.as_os_str().is_empty()).then(|| v.clone());
    }
    let kind = asked_kind(s)?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    app.credential = match (kind, &app.credential) {
        (Kind::None, _) => AppCredentialConfig::None,
        (Kind::Secret, AppCredentialConfig::Secret { expires }) => AppCredentialConfig::Secret {
            expires: s.secret_expires.or(*expires),
        },
        (Kind::Secret, _) => AppCredentialConfig::Secret {
            expires: s.secret_expires,
        },
        (Kind::Certificate, current) => {
            let (cert, key, rs256) = match current {
                AppCredentialConfig::Certificate {
                    certificate_file,
                    key_file,
                    rs256,
                } => (
                    Some(certificate_file.clone()),
                    Some(key_file.clone()),
                    *rs256,
                ),
                _ => (None, None, false),
            };
            let (Some(certificate_file), Some(key_file)) = (
                s.certificate_file.clone().or(cert),
                s.key_file.clone().or(key),
            ) else {
                bail!(
                    "a certificate credential needs --certificate-file (the certificate uploaded under Certificates & secrets) and --key-file (its private key)"
                );
            };
            AppCredentialConfig::Certificate {
                certificate_file,
                key_file,
                rs256: s.rs256.unwrap_or(rs256),
            }
        }
    };
    Ok(Some(kind))
}

/// Reads the client secret's Value: from a file, standard input (`-`), or a hidden
/// prompt on a terminal.
fn read_secret(app: &str, file: Option<&Path>) -> anyhow::Result<SecretString> {
    let text = match file {
        Some(p) if p == Path::new("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("failed to read the client secret from standard input")?;
            line
        }
        Some(p) => {
            let mut text = String::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
                .with_context(|| {
                    format!("failed to read the client secret from {}", p.display())
                })?;
            text
        }
        None if interactive() => rpassword::prompt_password(
            "Client secret (its Value from App registrations -> Certificates & secrets): ",
        )
        .context("failed to read the client secret")?,
        None => bail!(
            "app {app} uses a client secret: give it with --client-secret-file FILE (or --client-secret-file - to read standard input)"
        ),
    };
    let value = SecretString::from(text.trim().to_owned());
    if value.expose_secret().is_empty() {
        bail!("no client secret was given for app {app}");
    }
    if crate::secrets_cmd::uuid_like(value.expose_secret()) {
        eprintln!(
            "warning: this looks like a Secret ID (a GUID), not the secret's Value; Microsoft will answer AADSTS7000215"
        );
    }
    Ok(value)
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The view of an app that `show` and `list` print: no secret, its presence only.
#[derive(Debug, Serialize)]
struct AppView {
    #[serde(flatten)]
    app: AppConfig,
    /// The sign-in host and Graph root in force (the cloud's unless replaced).
    authority_host_in_force: String,
    graph_root_in_force: String,
    secret_stored: bool,
    /// The accounts that sign in with it.
    accounts: Vec<String>,
    /// Where the app is kept: store or the configuration file.
    source: &'static str,
    problems: Vec<Problem>,
}

async fn view(
    store: &Store,
    app: &AppConfig,
    accounts: Vec<String>,
    source: &'static str,
) -> anyhow::Result<AppView> {
    Ok(AppView {
        authority_host_in_force: app.authority_host().to_owned(),
        graph_root_in_force: app.graph_root().to_owned(),
        secret_stored: store.get_secret(&app.secret_id()).await?.is_some(),
        accounts,
        source,
        problems: validate_app(app),
        app: app.clone(),
    })
}

fn credential_text(v: &AppView) -> String {
    match &v.app.credential {
        AppCredentialConfig::None => "none (public client)".to_owned(),
        AppCredentialConfig::Secret { expires } => format!(
            "client secret, {}{}",
            if v.secret_stored {
                "stored"
            } else {
                "not stored"
            },
            expires
                .map(|e| format!(", expires {}", e.date()))
                .unwrap_or_default()
        ),
        AppCredentialConfig::Certificate { rs256, .. } => {
            format!("certificate ({})", if *rs256 { "RS256" } else { "PS256" })
        }
    }
}

async fn views(global: &GlobalArgs, store: &Store) -> anyhow::Result<Vec<AppView>> {
    let catalog = context::catalog(global, store).await?;
    let stored: Vec<String> = store.apps().await?.into_iter().map(|a| a.name).collect();
    let mut out = Vec::new();
    for app in &catalog.apps {
        let accounts = catalog
            .accounts
            .iter()
            .filter(|a| a.app.as_deref() == Some(app.name.as_str()))
            .map(|a| a.name.clone())
            .collect();
        let source = if stored.contains(&app.name) {
            "store"
        } else {
            "config"
        };
        out.push(view(store, app, accounts, source).await?);
    }
    Ok(out)
}

/// Runs an app command.
pub async fn run(global: &GlobalArgs, command: AppCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    match command {
        AppCommand::Add {
            name,
            settings,
            json,
        } => add(global, &store, name, &settings, json).await,
        AppCommand::List { json } => list(global, &store, json).await,
        AppCommand::Show { app, json } => show(global, &store, &app, json).await,
        AppCommand::Edit {
            app,
            settings,
            json,
        } => edit(global, &store, &app, &settings, json).await,
        AppCommand::Remove { app, json } => remove(global, &store, &app, json).await,
    }
}

async fn add(
    global: &GlobalArgs,
    store: &Store,
    name: String,
    settings: &AppSettings,
    json: bool,
) -> anyhow::Result<()> {
    let catalog = context::catalog(global, store).await?;
    if catalog.app(&name).is_some() {
        bail!(
            "an app named {name:?} exists already: use `mailbridge app edit {name}` or another name"
        );
    }
    let mut missing = Vec::new();
    if settings.tenant.is_none() {
        missing.push("--tenant (the Directory (tenant) ID, a verified domain, or organizations)");
    }
    if settings.client_id.is_none() {
        missing.push("--client-id (the Application (client) ID)");
    }
    if !missing.is_empty() {
        bail!(
            "app {name} was not saved: give {} (Azure portal -> App registrations -> the app -> Overview)",
            missing.join(" and ")
        );
    }
    let mut app = AppConfig {
        name,
        tenant: String::new(),
        client_id: String::new(),
        cloud: Cloud::default(),
        authority_host: None,
        graph_root: None,
        extra_ca_file: None,
        credential: AppCredentialConfig::None,
    };
    apply(&mut app, settings)?;
    let problems = validate_app(&app);
    if !problems.is_empty() {
        bail!(
            "app {} was not saved:\n{}",
            app.name,
            problems_text(&problems)
        );
    }
    let secret = if kind_of(&app.credential) == Kind::Secret {
        Some(read_secret(
            &app.name,
            settings.client_secret_file.as_deref(),
        )?)
    } else {
        None
    };
    store.put_app(&app).await?;
    if let Some(secret) = secret {
        put_secret(store, &app, &secret).await?;
    }
    if json {
        let v = view(store, &app, Vec::new(), "store").await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("added app {} (client id {})", app.name, app.client_id);
        println!(
            "next: add an account that signs in with it: `mailbridge account add ADDRESS --app {} --sign-in {}`",
            app.name,
            if kind_of(&app.credential) == Kind::None {
                "delegated"
            } else {
                "app-only"
            }
        );
    }
    Ok(())
}

async fn put_secret(store: &Store, app: &AppConfig, secret: &SecretString) -> anyhow::Result<()> {
    let expires = match &app.credential {
        AppCredentialConfig::Secret { expires } => *expires,
        _ => None,
    };
    store
        .put_secret(
            &app.secret_id(),
            SecretKind::ClientSecret,
            secret,
            expires,
            store.now(),
        )
        .await
        .with_context(|| format!("failed to store the client secret of app {}", app.name))
}

async fn list(global: &GlobalArgs, store: &Store, json: bool) -> anyhow::Result<()> {
    let views = views(global, store).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no apps: add one with `mailbridge app add NAME --tenant ... --client-id ...`");
        return Ok(());
    }
    println!(
        "{:<20} {:<28} {:<38} {:<36} ACCOUNTS",
        "NAME", "TENANT", "CLIENT ID", "CREDENTIAL"
    );
    for v in &views {
        let accounts = if !v.problems.is_empty() {
            format!("{} problem(s): see `app show`", v.problems.len())
        } else if v.accounts.is_empty() {
            "-".to_owned()
        } else {
            v.accounts.join(", ")
        };
        println!(
            "{:<20} {:<28} {:<38} {:<36} {accounts}",
            v.app.name,
            v.app.tenant,
            v.app.client_id,
            credential_text(v)
        );
    }
    Ok(())
}

async fn show(global: &GlobalArgs, store: &Store, name: &str, json: bool) -> anyhow::Result<()> {
    let views = views(global, store).await?;
    let Some(v) = views.iter().find(|v| v.app.name == name) else {
        bail!("no app named {name:?}; `mailbridge app list` shows them");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let a = &v.app;
    println!("app         {} ({})", a.name, v.source);
    println!("tenant      {}", a.tenant);
    println!("client id   {}", a.client_id);
    println!(
        "cloud       {}",
        serde_json::to_value(a.cloud)?.as_str().unwrap_or_default()
    );
    println!("sign-in     {}", v.authority_host_in_force);
    println!("graph       {}", v.graph_root_in_force);
    if let Some(ca) = &a.extra_ca_file {
        println!("extra CA    {}", ca.display());
    }
    println!("credential  {}", credential_text(v));
    if let AppCredentialConfig::Certificate {
        certificate_file,
        key_file,
        ..
    } = &a.credential
    {
        println!("certificate {}", certificate_file.display());
        println!("key         {}", key_file.display());
    }
    println!(
        "accounts    {}",
        if v.accounts.is_empty() {
            "none".to_owned()
        } else {
            v.accounts.join(", ")
        }
    );
    if !v.problems.is_empty() {
        println!("problems:\n{}", problems_text(&v.problems));
    }
    Ok(())
}

async fn edit(
    global: &GlobalArgs,
    store: &Store,
    name: &str,
    settings: &AppSettings,
    json: bool,
) -> anyhow::Result<()> {
    let Some(mut app) = store.apps().await?.into_iter().find(|a| a.name == name) else {
        if context::load_config(&global.config)?.app(name).is_some() {
            bail!(
                "app {name:?} is defined in the configuration file {}: edit it there, or `mailbridge account import` the file to keep it in the store",
                global.config.display()
            );
        }
        bail!("no app named {name:?}; `mailbridge app list` shows them");
    };
    let before = kind_of(&app.credential);
    apply(&mut app, settings)?;
    let problems = validate_app(&app);
    if !problems.is_empty() {
        bail!(
            "app {} was not changed:\n{}",
            app.name,
            problems_text(&problems)
        );
    }
    let after = kind_of(&app.credential);
    // A new secret when one was given or asked for, or when the app turns to a secret
    // now; a new expiry alone goes to the stored secret.
    let secret = if after == Kind::Secret
        && (settings.client_secret_file.is_some()
            || before != Kind::Secret
            || settings.credential.as_deref() == Some("secret"))
    {
        Some(read_secret(
            &app.name,
            settings.client_secret_file.as_deref(),
        )?)
    } else if after == Kind::Secret && settings.secret_expires.is_some() {
        store.get_secret(&app.secret_id()).await?
    } else {
        None
    };
    store.put_app(&app).await?;
    if let Some(secret) = secret {
        put_secret(store, &app, &secret).await?;
    } else if after != Kind::Secret && before == Kind::Secret {
        store.delete_secret(&app.secret_id()).await?;
    }
    if json {
        let views = views(global, store).await?;
        if let Some(v) = views.iter().find(|v| v.app.name == app.name) {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
    } else {
        println!("changed app {}", app.name);
    }
    Ok(())
}

async fn remove(global: &GlobalArgs, store: &Store, name: &str, json: bool) -> anyhow::Result<()> {
    let stored = store.apps().await?.into_iter().any(|a| a.name == name);
    if !stored {
        if context::load_config(&global.config)?.app(name).is_some() {
            bail!(
                "app {name:?} is defined in the configuration file {}, not in the store: remove it there",
                global.config.display()
            );
        }
        bail!("no app named {name:?}; `mailbridge app list` shows them");
    }
    let catalog = context::catalog(global, store).await?;
    let using: Vec<&str> = catalog
        .accounts
        .iter()
        .filter(|a| a.app.as_deref() == Some(name))
        .map(|a| a.name.as_str())
        .collect();
    if !using.is_empty() {
        bail!(
            "app {name} is used by the accounts {}: give them another app first (`mailbridge account edit ACCOUNT --app OTHER`) or remove them",
            using.join(", ")
        );
    }
    store.remove_app(name).await?;
    if json {
        println!("{}", serde_json::json!({ "removed": name }));
    } else {
        println!("removed app {name} with its stored client secret");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_options_choose_one_kind() {
        let s = AppSettings {
            client_secret_file: Some("-".into()),
            ..AppSettings::default()
        };
        assert_eq!(asked_kind(&s).unwrap(), Some(Kind::Secret));
        let s = AppSettings {
            key_file: Some("k.pem".into()),
            ..AppSettings::default()
        };
        assert_eq!(asked_kind(&s).unwrap(), Some(Kind::Certificate));
        let s = AppSettings {
            client_secret_file: Some("-".into()),
            certificate_file: Some("c.pem".into()),
            ..AppSettings::default()
        };
        assert!(asked_kind(&s).unwrap_err().to_string().contains("not both"));
        let s = AppSettings {
            credential: Some("none".into()),
            secret_expires: Some(OffsetDateTime::UNIX_EPOCH),
            ..AppSettings::default()
        };
        assert!(asked_kind(&s).is_err());
        assert_eq!(asked_kind(&AppSettings::default()).unwrap(), None);
        assert!(parse_expiry("2027-06-30").is_ok());
        assert!(parse_expiry("2027-06-30T00:00:00Z").is_ok());
        assert!(parse_expiry("June").is_err());
    }
}
