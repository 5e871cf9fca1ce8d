//! `mailbridge provider list|add|remove`: the built-in providers and the user's own,
//! with the domains they serve and the defaults they give their accounts (app, extra
//! CA file, TLS pins). A provider that accounts use cannot be removed.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use mailbridge_accounts::account::{from_provider, validate};
use mailbridge_accounts::catalog::provider_table;
use mailbridge_accounts::endpoint::parse_endpoint;
use mailbridge_accounts::provider::{Endpoint, Provider, ProviderDefaults};
use mailbridge_types::config::{LoginFormat, SignInMethod};

use crate::context::{self, GlobalArgs};

/// `mailbridge provider ...`
#[derive(Debug, clap::Subcommand)]
pub enum ProviderCommand {
    /// List the providers (built in and your own) and their domains.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Define a provider (or replace one of yours).
    Add {
        /// Stable id, used by accounts.
        id: String,
        /// Name shown to people.
        #[arg(long)]
        name: String,
        /// Where mail is read (as in `account add --incoming`).
        #[arg(long)]
        incoming: Option<String>,
        /// Where mail is sent (as in `account add --outgoing`).
        #[arg(long)]
        outgoing: Option<String>,
        /// Sign-in methods it offers, best first (password, delegated, app-only).
        #[arg(long = "sign-in", value_delimiter = ',', default_value = "password")]
        sign_in: Vec<String>,
        /// Login format: manual, email or mailbox-name.
        #[arg(long, default_value = "email")]
        login_format: String,
        /// A domain it serves (repeat).
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[command(flatten)]
        defaults: Box<DefaultsArgs>,
    },
    /// Remove one of your providers (not while accounts use it).
    Remove { id: String },
}

/// What a provider's accounts take unless they set it.
#[derive(Debug, Clone, clap::Args)]
pub struct DefaultsArgs {
    /// The app its accounts sign in with, unless they name another.
    #[arg(long)]
    app: Option<String>,
    /// Extra trusted CA (PEM file) its accounts' servers are checked with.
    #[arg(long)]
    extra_ca_file: Option<PathBuf>,
    /// The incoming server's certificate, pinned (`sha256:<hex>`).
    #[arg(long)]
    incoming_tls_pin: Option<String>,
    /// The outgoing server's certificate, pinned (`sha256:<hex>`).
    #[arg(long)]
    outgoing_tls_pin: Option<String>,
}

fn endpoint(text: Option<&String>) -> anyhow::Result<Option<Endpoint>> {
    text.map(|t| {
        let e = parse_endpoint(t)?;
        Ok(Endpoint {
            transport: e.transport,
            port: e.port(),
            tls: e.tls_mode(),
            host: e.host,
        })
    })
    .transpose()
}

/// Runs a provider command.
pub async fn run(global: &GlobalArgs, command: ProviderCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    match command {
        ProviderCommand::List { json } => {
            let table = provider_table(&store).await?;
            let mut ids: Vec<String> = mailbridge_accounts::provider::builtin()
                .into_iter()
                .map(|p| p.id)
                .collect();
            let own: Vec<Provider> = store.providers().await?;
            for p in own {
                if !ids.contains(&p.id) {
                    ids.push(p.id);
                }
            }
            let providers: Vec<&Provider> = ids.iter().filter_map(|id| table.get(id)).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&providers)?);
            } else {
                for p in providers {
                    let mut extra = String::new();
                    if !p.domains.is_empty() {
                        let _ = write!(extra, "; domains: {}", p.domains.join(", "));
                    }
                    if let Some(app) = &p.defaults.app {
                        let _ = write!(extra, "; app: {app}");
                    }
                    println!(
                        "{:<22} {:<28} {}{extra}",
                        p.id,
                        p.name,
                        if p.builtin { "built in" } else { "yours" },
                    );
                    if let Some(notice) = &p.notice {
                        println!("{:<22} note: {notice}", "");
                    }
                }
            }
            Ok(())
        }
        ProviderCommand::Add {
            id,
            name,
            incoming,
            outgoing,
            sign_in,
            login_format,
            domains,
            defaults,
        } => {
            let DefaultsArgs {
                app,
                extra_ca_file,
                incoming_tls_pin,
                outgoing_tls_pin,
            } = *defaults;
            if mailbridge_accounts::provider::builtin()
                .iter()
                .any(|p| p.id == id)
            {
                bail!("{id} is a built-in provider: choose another id");
            }
            let sign_in = sign_in
                .iter()
                .map(|s| match s.as_str() {
                    "password" => Ok(SignInMethod::Password),
                    "delegated" => Ok(SignInMethod::Delegated),
                    "app-only" => Ok(SignInMethod::AppOnly),
                    other => bail!("unknown sign-in method {other:?}"),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let login = match login_format.as_str() {
                "manual" => LoginFormat::Manual,
                "email" => LoginFormat::Email,
                "mailbox-name" => LoginFormat::MailboxName,
                other => bail!("unknown login format {other:?}"),
            };
            let provider = Provider {
                id: id.clone(),
                name,
                incoming: endpoint(incoming.as_ref())?,
                outgoing: endpoint(outgoing.as_ref())?,
                sign_in,
                login,
                domains,
                builtin: false,
                defaults: ProviderDefaults {
                    app,
                    extra_ca_file,
                    incoming_tls_pin,
                    outgoing_tls_pin,
                },
                notice: None,
            };
            if provider.incoming.is_none() && provider.outgoing.is_none() {
                bail!("a provider needs --incoming, --outgoing or both");
            }
            // What its accounts would get must pass the account checks: the sides
            // (hosts, ports, CA file, pins) and the app.
            let catalog = context::catalog(global, &store).await?;
            let sample = from_provider("someone@example.org", &provider);
            let mut problems: Vec<String> = validate(&sample, &catalog.apps)
                .into_iter()
                .filter(|p| p.field.starts_with("incoming") || p.field.starts_with("outgoing"))
                .map(|p| p.to_string())
                .collect();
            if let Some(app) = &provider.defaults.app
                && catalog.app(app).is_none()
            {
                problems.push(format!(
                    "app: app {app:?} is not defined; `mailbridge app add {app} ...` defines it"
                ));
            }
            if !problems.is_empty() {
                bail!(
                    "provider {id} was not saved:\n{}",
                    problems
                        .iter()
                        .map(|p| format!("  - {p}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            store.put_provider(&id, &provider).await?;
            println!("saved provider {id}");
            Ok(())
        }
        ProviderCommand::Remove { id } => {
            let mut table = provider_table(&store).await?;
            let catalog = context::catalog(global, &store).await?;
            let using: Vec<String> = catalog
                .accounts
                .iter()
                .filter(|a| a.provider.as_deref() == Some(id.as_str()))
                .map(|a| a.name.clone())
                .collect();
            table.remove(&id, &using)?;
            store.remove_provider(&id).await?;
            println!("removed provider {id}");
            Ok(())
        }
    }
}
