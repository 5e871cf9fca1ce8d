//! `mailbridge outbox`: the durable outbox's messages (`list`) and sending what is
//! due (`send-pending`: the connector's sender worker, run until nothing is due).
//! Messages get there with `mailbridge send --queue`.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::bail;
use mailbridge_connector::outbox::{
    OutboxSettings, OutboxWorker, Outcome, OutgoingSide, OutgoingSides,
};
use mailbridge_mailbox::mailbox::MailboxError;
use mailbridge_store::{AccountId, OutboxEntry, Store};
use mailbridge_types::config::{AccountConfig, AppConfig};
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::context::{self, GlobalArgs};

/// `mailbridge outbox ...`
#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// The outbox's messages, in the order they were queued, with their state.
    List {
        /// Only this account's (name or address).
        #[arg(long)]
        account: Option<String>,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send every message that is due, until none is (everything sent, failed, or
    /// waiting for a later retry); what the daemon does all the time.
    SendPending {
        /// Print what happened as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `mailbridge outbox`.
pub async fn run(global: &GlobalArgs, command: OutboxCommand) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    match command {
        OutboxCommand::List { account, json } => list(global, &store, account, json).await,
        OutboxCommand::SendPending { json } => send_pending(global, &store, json).await,
    }
}

/// Every account of the catalog by its outbox id.
async fn accounts_by_id(
    global: &GlobalArgs,
    store: &Store,
) -> anyhow::Result<HashMap<AccountId, (AccountConfig, Option<AppConfig>)>> {
    let catalog = context::catalog(global, store).await?;
    let mut by_id = HashMap::new();
    for account in &catalog.accounts {
        // An account whose app is missing still has its messages listed; sending
        // them fails with the reason.
        let app = mailbridge_accounts::catalog::lookup_account(&catalog, &account.name)
            .ok()
            .and_then(|(_, app)| app);
        let id = store.outbox_account_id(&account.name).await?;
        by_id.insert(id, (account.clone(), app));
    }
    Ok(by_id)
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn entry_json(e: &OutboxEntry, account: &str) -> serde_json::Value {
    serde_json::json!({
        "id": e.id.to_string(),
        "account": account,
        "state": e.state.as_str(),
        "created_at": time_text(e.created_at),
        "size": e.size,
        "attempts": e.attempts,
        "next_attempt_at": (!e.state.is_final()).then(|| time_text(e.next_attempt_at)),
        "last_error": e.last_error,
        "error_class": e.error_class,
        "sent_at": e.sent_at.map(time_text),
        "server_reply": e.server_reply,
        "idempotency_key": e.idempotency_key,
    })
}

async fn list(
    global: &GlobalArgs,
    store: &Store,
    account: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let by_id = accounts_by_id(global, store).await?;
    let filter = match &account {
        Some(name) => {
            let (account, _) = context::lookup_account(global, store, name).await?;
            Some(store.outbox_account_id(&account.name).await?)
        }
        None => None,
    };
    let entries = store.outbox_list(filter).await?;
    let name = |id: &AccountId| {
        by_id
            .get(id)
            .map_or_else(|| id.to_string(), |(a, _)| a.name.clone())
    };
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| entry_json(e, &name(&e.account)))
            .collect();
        println!("{}", crate::output::json_pretty(&v)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("the outbox is empty");
        return Ok(());
    }
    for e in &entries {
        let when = match e.state {
            mailbridge_store::OutboxState::Retrying => {
                format!(" at {}", time_text(e.next_attempt_at))
            }
            mailbridge_store::OutboxState::Sent => e
                .sent_at
                .map(|t| format!(" at {}", time_text(t)))
                .unwrap_or_default(),
            _ => String::new(),
        };
        println!(
            "{}  {}  {}{when}  {} bytes, {} attempt(s), queued {}",
            e.id,
            name(&e.account),
            e.state,
            e.size,
            e.attempts,
            time_text(e.created_at)
        );
        if let Some(error) = &e.last_error
            && !matches!(e.state, mailbridge_store::OutboxState::Sent)
        {
            println!("    {}", mailbridge_types::printable(error));
        }
    }
    Ok(())
}

/// The accounts' outgoing sides, signed in through the process's `SignIn`.
struct CliSides {
    store: Store,
    accounts: HashMap<AccountId, (AccountConfig, Option<AppConfig>)>,
}

impl OutgoingSides for CliSides {
    async fn outgoing(&self, account: AccountId) -> Result<OutgoingSide, MailboxError> {
        let Some((account, app)) = self.accounts.get(&account) else {
            return Err(MailboxError::misconfigured(format!(
                "the message's account ({account}) is not in the configuration any more: add it again, or leave the message"
            )));
        };
        mailbridge_server::daemon::outgoing_side(
            context::sign_in(&self.store),
            account,
            app.as_ref(),
        )
        .await
    }
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Sent { id, server_reply } => {
            serde_json::json!({ "id": id.to_string(), "state": "sent", "server_reply": server_reply })
        }
        Outcome::Retrying { id, at, error } => serde_json::json!({
            "id": id.to_string(), "state": "retrying", "next_attempt_at": time_text(*at), "error": error,
        }),
        Outcome::Failed { id, error } => {
            serde_json::json!({ "id": id.to_string(), "state": "failed", "error": error })
        }
        Outcome::OutcomeUnknown { id, error } => {
            serde_json::json!({ "id": id.to_string(), "state": "outcome-unknown", "error": error })
        }
        other => serde_json::json!({ "id": other.id().to_string() }),
    }
}

async fn send_pending(global: &GlobalArgs, store: &Store, json: bool) -> anyhow::Result<()> {
    let sides = CliSides {
        store: store.clone(),
        accounts: accounts_by_id(global, store).await?,
    };
    let worker = OutboxWorker::new(
        store.clone(),
        Arc::new(sides),
        OutboxSettings {
            instance: format!("cli-{}", std::process::id()),
            ..OutboxSettings::default()
        },
    );
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    // Ctrl-C: no new message is taken; the one being sent is finished.
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let done = worker.send_pending(&cancel).await;
    signal.abort();
    let done = done?;
    let next = store.outbox_next_due().await?;
    if json {
        let v = serde_json::json!({
            "outcomes": done.iter().map(outcome_json).collect::<Vec<_>>(),
            "next_due": next.map(time_text),
        });
        println!("{}", crate::output::json_pretty(&v)?);
    } else {
        for o in &done {
            match o {
                Outcome::Sent { id, .. } => println!("{id}  sent"),
                Outcome::Retrying { id, at, error } => println!(
                    "{id}  retrying at {}: {}",
                    time_text(*at),
                    mailbridge_types::printable(error)
                ),
                Outcome::Failed { id, error } => {
                    println!("{id}  failed: {}", mailbridge_types::printable(error));
                }
                Outcome::OutcomeUnknown { id, error } => println!(
                    "{id}  outcome unknown: {}",
                    mailbridge_types::printable(error)
                ),
                other => println!("{}", other.id()),
            }
        }
        match next {
            Some(t) => println!("next message due at {}", time_text(t)),
            None if done.is_empty() => println!("nothing to send"),
            None => {}
        }
    }
    let failed = done
        .iter()
        .filter(|o| matches!(o, Outcome::Failed { .. } | Outcome::OutcomeUnknown { .. }))
        .count();
    if failed > 0 {
        bail!(
            "{failed} message(s) could not be sent (see above); `mailbridge outbox list` shows them"
        );
    }
    Ok(())
}
