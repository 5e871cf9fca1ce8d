//! `mailbridge fetch --account A [--folder F] [--since last|all|DATE] [--out DIR]`: new
//! messages of a folder into a local Maildir, durably, with a progress bar; where it
//! stopped is kept in the store per account, folder and output directory.
//!
//! `--since DATE` lists the messages received on or after DATE (IMAP `SINCE`, Graph
//! `receivedDateTime ge`, EWS FindItem on `DateTimeReceived`; POP3 refuses), downloads
//! them the same durable way, and stores the listing's checkpoint: a later
//! `--since last` goes on with what arrives after the run.
//!
//! The run itself is the connector's sync loop ([`mailbridge_connector::sync()`]); this
//! command parses, shows the progress bar and prints.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mailbridge_connector::{MaildirSink, Start};
use mailbridge_mailbox::connect::open_incoming;
use mailbridge_mailbox::download::{DownloadOptions, Progress};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::context::{self, GlobalArgs};

/// Where a fetch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Where the last fetch into this directory stopped.
    Last,
    /// The whole folder (messages already in the directory are not fetched again).
    All,
    /// Messages received at or after this instant.
    Date(OffsetDateTime),
}

/// `last`, `all`, `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time.
fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    match text.to_ascii_lowercase().as_str() {
        "last" => return Ok(Since::Last),
        "all" => return Ok(Since::All),
        _ => {}
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(Since::Date(t));
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &day)
        .map(|d| Since::Date(d.midnight().assume_utc()))
        .map_err(|_| {
            format!(
                "{text:?} is not last, all, a date (2026-12-01) or an RFC 3339 date-time (2026-12-01T08:00:00+01:00)"
            )
        })
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
    /// Where to start: `last` (where the last fetch into this directory stopped),
    /// `all` (the whole folder), or a date, `YYYY-MM-DD` (from midnight UTC) or RFC 3339
    /// (`2026-12-01T08:00:00+01:00`): the messages received on or after it. IMAP
    /// compares whole days (the server's received date), so it may add earlier
    /// messages of that day; POP3 keeps no received date and refuses a date. After a
    /// date run, `--since last` goes on with what arrives after it.
    #[arg(long, value_parser = parse_since, default_value = "last")]
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
    // A new Maildir is private (0700), whatever the umask; one the user made keeps its mode.
    mailbridge_store::files::create_private_dir(&args.out)
        .with_context(|| format!("failed to create {}", args.out.display()))?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("failed to open {}", args.out.display()))?;
    let sign_in = context::sign_in_now(&store, &account, app.as_ref(), transport).await?;
    let mut mailbox = open_incoming(&account, sign_in).await.map_err(|e| {
        anyhow::anyhow!(
            "could not open the mailbox of account {} [{}]: {}; `mailbridge test receive {}` shows which step fails and the fix",
            account.name,
            e.class,
            e.detail(),
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
    let progress_bar = bar.clone();
    let on_progress = move |p: &Progress| {
        progress_bar.set_length(p.total);
        progress_bar.set_position(p.messages);
        progress_bar.set_message(format!("{} MB", megabytes(p.bytes)));
        std::ops::ControlFlow::Continue(())
    };
    let start = match args.since {
        Since::Last => Start::Last,
        Since::All => Start::All,
        Since::Date(since) => Start::Since(since),
    };
    // The checkpoint belongs to the pair (folder, directory): another directory starts
    // over. Each is stored as its batch becomes durable, so a stop loses nothing.
    let sink = MaildirSink {
        dir: out.clone(),
        options: DownloadOptions::default(),
    };
    let result = mailbridge_connector::sync(
        &mut mailbox,
        &account.name,
        &args.folder,
        start,
        &sink,
        &store,
        on_progress,
    )
    .await;
    bar.finish_and_clear();
    // The whole chain: `{e:#}` on a library error prints only its own words ("failed to
    // read new messages from the mailbox"), never why (a 503, a timeout, a cut-off
    // message).
    let summary = result.map_err(|e| {
        let since = match args.since {
            Since::Date(since) => format!(
                " (received since {})",
                since.format(&Rfc3339).unwrap_or_else(|_| since.to_string())
            ),
            Since::Last | Since::All => String::new(),
        };
        anyhow::anyhow!(
            "fetching {}{since} of account {} stopped [{}]: {}; what was written is kept, and the next `mailbridge fetch` goes on from there",
            args.folder,
            account.name,
            e.class(),
            mailbridge_types::error_chain(&e)
        )
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_words_dates_and_rfc_3339() {
        assert_eq!(parse_since("last"), Ok(Since::Last));
        assert_eq!(parse_since("ALL"), Ok(Since::All));
        assert_eq!(
            parse_since("2026-12-01"),
            Ok(Since::Date(time::macros::datetime!(2026-12-01 00:00 UTC)))
        );
        assert_eq!(
            parse_since("2026-12-01T08:00:00+01:00"),
            Ok(Since::Date(
                time::macros::datetime!(2026-12-01 08:00 +01:00)
            ))
        );
        for bad in ["2026-13-01", "yesterday", "2026-12-01T08:00", ""] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
