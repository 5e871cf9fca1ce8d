//! Daemon drain benchmark: a 10,000-message INBOX (the imap-fetch corpus) on the
//! testkit's Dovecot, drained by `mailbridge serve`'s IMAP watcher into a folder
//! sink (one `.eml` per message), beside mbsync into a Maildir in the same run.
//!
//! The daemon is set up as a user would: the account imported, a folder sink made
//! through the API; the clock starts at the `PUT /api/v1/accounts/{id}/watch` that
//! turns the watcher on and stops when the last `.eml` is in the folder. mbsync is
//! timed from its start to its exit. Peak memory is each process's VmHWM.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and megabytes for a printed table"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mailbridge_bench::daemon::{Account, Home, Side, count_files, until};
use mailbridge_bench::{MailWorld, PASSWORD, USER, fill, peers, settle_disk};
use serde_json::json;

/// Messages in the mailbox (`BENCH_MESSAGES` overrides, for a quick try).
const MESSAGES: u32 = 10_000;
/// Rounds of the daemon and mbsync, alternating; the best of each counts.
const ROUNDS: u32 = 2;
/// The longest a drain may take before the run is called failed.
const LIMIT: Duration = Duration::from_mins(30);

struct Row {
    name: String,
    elapsed: Duration,
    peak_kib: u64,
    messages: u64,
}

/// One drain by a fresh daemon (new data directory, so nothing is checkpointed).
async fn daemon_round(world: &MailWorld, count: u32) -> anyhow::Result<Row> {
    let home = Home::new(world.mail.ca_pem(), world.mail.tls_name())?;
    home.import(&[Account {
        name: "alice".into(),
        address: USER.into(),
        password: PASSWORD.into(),
        incoming: Some(Side {
            transport: "imap",
            host: "127.0.0.1".into(),
            port: world.mail.imaps().port(),
            tls: "implicit",
        }),
        outgoing: None,
    }])
    .await?;
    let daemon = home.serve().await?;
    let archive = home.path("archive");
    daemon
        .sink(json!({"name": "archive", "settings": {"kind": "folder", "path": archive}}))
        .await?;
    let id = daemon
        .account_ids()
        .await?
        .remove("alice")
        .context("the imported account is not listed")?;
    tokio::task::spawn_blocking(settle_disk).await?;
    let start = Instant::now();
    daemon.watch(&id, "archive").await?;
    let expected = u64::from(count);
    let done = until(
        "the daemon's folder sink holds every message",
        LIMIT,
        Duration::from_millis(50),
        || {
            let archive = archive.clone();
            async move { Ok(count_files(&archive, ".eml") >= expected) }
        },
    )
    .await;
    let elapsed = start.elapsed();
    if let Err(e) = done {
        bail!(
            "{e:#} ({} of {count}); daemon log:\n{}",
            count_files(&archive, ".eml"),
            daemon.log_tail()
        );
    }
    let peak_kib = daemon.status_kib("VmHWM");
    daemon.stop().await?;
    Ok(Row {
        name: "mailbridge serve: IMAP watcher -> folder sink".into(),
        elapsed,
        peak_kib,
        messages: count_files(&archive, ".eml"),
    })
}

fn mbsync_round(base: &Path, round: u32, port: u16, ca: &Path) -> anyhow::Result<Row> {
    let owner = mailbridge_bench::peer_user()?;
    let m = peers::mbsync(base, round, port, ca, owner)?;
    Ok(Row {
        name: m.name,
        elapsed: m.run.elapsed,
        peak_kib: m.run.peak_kib,
        messages: m.messages,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    mailbridge_bench::peer_user()?;
    let world = MailWorld::start().await?;
    let base = tempfile::Builder::new()
        .prefix("mailbridge-bench-drain-")
        .tempdir()?;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))?;
    let ca = base.path().join("ca.pem");
    world.write_ca(&ca)?;
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644))?;
    let port = world.mail.imaps().port();

    eprintln!("filling INBOX with {count} messages ...");
    let started = Instant::now();
    let corpus_bytes = fill(&world, USER, count).await?;
    eprintln!(
        "filled: {:.1} MB in {:.1} s",
        corpus_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // The daemon and mbsync alternate (the one that goes second would otherwise pay
    // for the first one's writeback); the best round of each counts.
    let (mut ours, mut theirs): (Option<Row>, Option<Row>) = (None, None);
    for round in 0..ROUNDS {
        for which in [round % 2, (round + 1) % 2] {
            let row = if which == 0 {
                daemon_round(&world, count).await?
            } else {
                let (base, ca) = (base.path().to_owned(), ca.clone());
                tokio::task::spawn_blocking(move || {
                    settle_disk();
                    mbsync_round(&base, round, port, &ca)
                })
                .await??
            };
            eprintln!(
                "round {round}: {} {:.0} msg/s",
                row.name,
                row.messages as f64 / row.elapsed.as_secs_f64()
            );
            let slot = if which == 0 { &mut ours } else { &mut theirs };
            if slot.as_ref().is_none_or(|b| row.elapsed < b.elapsed) {
                *slot = Some(row);
            }
        }
    }
    world.mail.stop().await;
    world.server.stop().await;

    let rows: Vec<Row> = ours.into_iter().chain(theirs).collect();
    let rate = |r: &Row| r.messages as f64 / r.elapsed.as_secs_f64();
    let mbsync = rows
        .iter()
        .find(|r| r.name.starts_with("mbsync"))
        .map_or(f64::NAN, rate);
    println!(
        "daemon-drain: {count} messages, {:.1} MB, Dovecot over IMAPS (test CA); best of {ROUNDS} rounds",
        corpus_bytes as f64 / 1e6
    );
    println!(
        "{:<46} {:>9} {:>8} {:>8} {:>10} {:>11}",
        "", "messages", "msg/s", "MB/s", "vs mbsync", "peak RSS"
    );
    for r in &rows {
        println!(
            "{:<46} {:>9} {:>8.0} {:>8.1} {:>9.2}x {:>8.1} MB",
            r.name,
            r.messages,
            rate(r),
            corpus_bytes as f64 / 1e6 / r.elapsed.as_secs_f64(),
            rate(r) / mbsync,
            r.peak_kib as f64 / 1024.0
        );
    }
    for r in &rows {
        if r.messages != u64::from(count) {
            bail!("{} stored {} messages, not {count}", r.name, r.messages);
        }
    }
    Ok(())
}
