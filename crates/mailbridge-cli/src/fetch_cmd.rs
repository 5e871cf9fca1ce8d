//! `mailbridge fetch --account A [--folder F] [--since last|all] [--out DIR]`: new
//! messages of a folder into a local Maildir, durably, with a progress bar; where it
//! stopped is kept in the store per account, folder and output directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mailbridge_mailbox::connect::open_incoming;
use mailbridge_mailbox::download::{DownloadOptions, download};
use mailbridge_mailbox::mailbox::Checkpoint;

use crate::context::{self, GlobalArgs};

/// Where a fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Since {
    /// Where the last fetch into this directory stopped.
    Last,
    /// The whole folder (messages already in the directory are not fetched again).
    All,
}

/// `mailbridge fetch`
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The account (name or address).
    #[arg(long)]
    account: String,
    /// The folder (IMAP name, Graph well-known name or id; INBOX by default).
    #[arg(long, default_value = "INBOX")]
    folder: String,
    /// Where to start.
    #[arg(long, value_enum, default_value_t = Since::Last)]
    since: Since,
    /// The Maildir to write into (created when missing).
    #[arg(long, default_value = "mail")]
    out: PathBuf,
    /// Print the result as JSON (no progress bar).
    #[arg(long)]
    json: bool,
}

/// Bytes as megabytes with one decimal.
fn megabytes(bytes: u64) -> String {
    format!("{}.{}", bytes / 1_000_000, (bytes / 100_000) % 10)
}

/// Runs `mailbridge fetch`.
pub async fn run(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<()> {
    let store = context::open_store(global).await?;
    let (account, app) = context::lookup_account(global, &store, &args.account).await?;
    let Some(endpoint) = account.incoming_side() else {
        bail!(
            "account {} does not download mail (no incoming side, or download = false): `mailbridge account edit {} --incoming ...`",
            account.name,
            account.name
        );
    };
    let transport = endpoint.transport;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("failed to create {}", args.out.display()))?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("failed to open {}", args.out.display()))?;
    // The checkpoint belongs to the pair (folder, directory): another directory starts over.
    let key = format!("{}\u{1f}{}", args.folder, out.display());
    let checkpoint: Checkpoint = match args.since {
        Since::All => Checkpoint::Start,
        Since::Last => store
            .checkpoint(&account.name, &key)
            .await?
            .unwrap_or(Checkpoint::Start),
    };
    let sign_in = context::sign_in_now(&store, &account, app.as_ref(), transport).await?;
    let mut mailbox = open_incoming(&account, sign_in).await.map_err(|e| {
        anyhow::anyhow!(
            "could not open the mailbox of account {} [{}]: {e}; `mailbridge test receive {}` shows which step fails and the fix",
            account.name,
            e.class,
            account.name
        )
    })?;
    let bar = if args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} messages {msg} [{elapsed_precise}, {per_sec}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    // Checkpoints are stored as batches become durable, so a stop loses nothing.
    let (durable_tx, mut durable_rx) = tokio::sync::mpsc::unbounded_channel::<Checkpoint>();
    let saver = {
        let store = store.clone();
        let name = account.name.clone();
        let key = key.clone();
        tokio::spawn(async move {
            while let Some(cp) = durable_rx.recv().await {
                store.set_checkpoint(&name, &key, &cp).await?;
            }
            Ok::<_, mailbridge_store::StoreError>(())
        })
    };
    let progress_bar = bar.clone();
    let result = download(
        &mut mailbox,
        &args.folder,
        &checkpoint,
        &out,
        &DownloadOptions::default(),
        move |p| {
            progress_bar.set_length(p.total);
            progress_bar.set_position(p.messages);
            progress_bar.set_message(format!("{} MB", megabytes(p.bytes)));
            if let Some(cp) = &p.durable {
                let _ = durable_tx.send(cp.clone());
            }
            std::ops::ControlFlow::Continue(())
        },
    )
    .await;
    bar.finish_and_clear();
    saver
        .await
        .context("the checkpoint writer stopped")?
        .context("failed to store the checkpoint")?;
    let summary = result.map_err(|e| {
        anyhow::anyhow!(
            "fetching {} of account {} stopped [{}]: {e:#}; what was written is kept, and the next `mailbridge fetch` goes on from there",
            args.folder,
            account.name,
            e.class()
        )
    })?;
    store
        .set_checkpoint(&account.name, &key, &summary.checkpoint)
        .await?;
    let _ = mailbox.close().await;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "account": account.name,
                "folder": args.folder,
                "out": out,
                "messages": summary.messages,
                "bytes": summary.bytes,
                "already_present": summary.already_present,
            })
        );
    } else {
        println!(
            "fetched {} new message(s), {} MB, from {} of {} into {}{}",
            summary.messages,
            megabytes(summary.bytes),
            args.folder,
            account.name,
            out.display(),
            if summary.already_present > 0 {
                format!(
                    " ({} already there from an interrupted run)",
                    summary.already_present
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
