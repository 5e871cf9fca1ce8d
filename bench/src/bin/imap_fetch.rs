//! IMAP fetch benchmark: download every message of a 10,000-message INBOX from
//! Dovecot over IMAPS into a Maildir. mailbridge's durable download beside mbsync
//! (isync) and getmail6, with one raw `UID FETCH 1:* BODY.PEEK[]` read and discarded
//! as the ceiling; all against the same Dovecot in this run. Each client runs as its
//! own process, so its wall time includes start-up and login and its peak memory
//! (VmHWM) is its own.
//!
//! `imap_fetch` runs the benchmark; `imap_fetch child-download <maildir>` is the
//! mailbridge side, started by the benchmark.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and megabytes for a printed table"
)]

use std::ops::ControlFlow;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mailbridge_bench::peers::{self, peer_dir, write_owned};
use mailbridge_bench::{
    MailWorld, PASSWORD, USER, count_maildir_messages, fill, peak, settle_disk, version,
};
use mailbridge_connector::{MaildirSink, Start};
use mailbridge_imap::{Credentials, ImapClient, ImapConfig, TlsMode};
use mailbridge_mailbox::download::DownloadOptions;
use mailbridge_mailbox::mailbox::ImapMailbox;
use mailbridge_store::{MasterKey, Store};
use mailbridge_tls::{MailStream, TlsSettings};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Messages in the mailbox (`BENCH_MESSAGES` overrides, for a quick try).
const MESSAGES: u32 = 10_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child-download") {
        let maildir = PathBuf::from(args.get(2).context("child-download <maildir>")?);
        let runtime = if std::env::var("MB_RUNTIME").as_deref() == Ok("multi") {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        };
        return runtime.block_on(child_download(&maildir));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

/// The mailbridge side: a durable sync of the whole INBOX; prints
/// `messages bytes vmhwm_kib`.
async fn child_download(maildir: &Path) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).with_context(|| format!("{k} not set"));
    let mut config = ImapConfig::new("127.0.0.1", env("MB_PORT")?.parse()?, TlsMode::Implicit);
    config.trust = TlsSettings {
        extra_ca_pem: Some(std::fs::read_to_string(env("MB_CA")?)?),
        server_name: Some("localhost".into()),
        pin: None,
    };
    let mut client = ImapClient::connect(&config).await?;
    client
        .authenticate(&Credentials::Login {
            user: env("MB_USER")?,
            password: SecretString::from(env("MB_PASS")?),
        })
        .await?;
    let mut mailbox = ImapMailbox::new(client);
    let mut options = DownloadOptions::default();
    if let Some(b) = std::env::var("MB_BATCH").ok().and_then(|v| v.parse().ok()) {
        options.batch = b;
    }
    if let Some(s) = std::env::var("MB_SYNCS").ok().and_then(|v| v.parse().ok()) {
        options.parallel_syncs = s;
    }
    // The path `mailbridge fetch` runs: the connector's sync loop, each durable batch's
    // checkpoint stored in a SQLite store.
    let state = tempfile::tempdir()?;
    let store = Store::open(&state.path().join("db.sqlite"), &MasterKey::generate()?).await?;
    let sink = MaildirSink {
        dir: maildir.to_owned(),
        options,
    };
    let summary = mailbridge_connector::sync(
        &mut mailbox,
        "bench",
        "INBOX",
        Start::All,
        &sink,
        &store,
        |_| ControlFlow::Continue(()),
    )
    .await
    .map_err(|e| anyhow::anyhow!(mailbridge_types::error_chain(&e)))
    .context("download failed")?;
    println!(
        "{} {} {}",
        summary.messages,
        summary.bytes,
        peak::vm_hwm(std::process::id()).unwrap_or(0)
    );
    Ok(())
}

/// The ceiling: one `UID FETCH 1:* BODY.PEEK[]` over TLS, every byte read and
/// dropped. Returns the bytes read and the time from connecting to the completion.
async fn ceiling(world: &MailWorld) -> anyhow::Result<(u64, Duration)> {
    let start = Instant::now();
    let addr = world.mail.imaps();
    let tcp =
        mailbridge_tls::connect_tcp(&addr.ip().to_string(), addr.port(), Duration::from_mins(1))
            .await?;
    let mut s =
        MailStream::implicit(&world.trust(), "localhost", tcp, Duration::from_mins(1)).await?;
    let limit = Duration::from_mins(1);
    s.read_line(1024, limit).await?;
    for (tag, command) in [
        ("a", format!("a LOGIN \"{USER}\" \"{PASSWORD}\"")),
        ("b", "b SELECT INBOX".to_owned()),
    ] {
        s.write_line(command.as_bytes()).await?;
        loop {
            let line = s.read_line(64 * 1024, limit).await?;
            if line.starts_with(format!("{tag} ").as_bytes()) {
                ensure!(
                    line.starts_with(format!("{tag} OK").as_bytes()),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
                break;
            }
        }
    }
    s.write_line(b"zq9 UID FETCH 1:* BODY.PEEK[]").await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        ensure!(n > 0, "Dovecot closed the connection during the fetch");
        total += n as u64;
        tail.extend_from_slice(buf.get(..n).unwrap_or_default());
        let keep = tail.len().saturating_sub(200);
        tail.drain(..keep);
        if tail.ends_with(b"\r\n") && tail.windows(8).any(|w| w == b"\r\nzq9 OK") {
            break;
        }
    }
    let elapsed = start.elapsed();
    s.write_line(b"z LOGOUT").await?;
    let _ = s.shutdown().await;
    Ok((total, elapsed))
}

struct Row {
    name: String,
    run: Option<peak::Run>,
    elapsed: Duration,
    messages: u64,
}

/// Rounds of mailbridge and mbsync.
const ROUNDS: u32 = 2;

/// mailbridge: a durable download into a Maildir, in a child process.
fn run_mailbridge(base: &Path, round: u32, port: u16, ca: &Path) -> anyhow::Result<Row> {
    let maildir = base.join(format!("mailbridge-{round}/INBOX"));
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("child-download")
        .arg(&maildir)
        .env("MB_PORT", port.to_string())
        .env("MB_CA", ca)
        .env("MB_USER", USER)
        .env("MB_PASS", PASSWORD);
    let mut run = peak::run(command)?;
    if !run.status.success() {
        bail!("mailbridge download failed: {}", run.stderr);
    }
    let reported: Vec<u64> = run
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if let Some(&own_peak) = reported.get(2) {
        run.peak_kib = run.peak_kib.max(own_peak);
    }
    Ok(Row {
        name: "mailbridge download (durable)".into(),
        elapsed: run.elapsed,
        run: Some(run),
        messages: count_maildir_messages(&maildir),
    })
}

async fn bench() -> anyhow::Result<()> {
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let owner = mailbridge_bench::peer_user()?;
    let world = MailWorld::start().await?;
    let base = tempfile::Builder::new()
        .prefix("mailbridge-bench-imap-")
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

    let mut rows = Vec::new();

    // Warm Dovecot's caches once, then the measured ceiling.
    ceiling(&world).await?;
    let (ceiling_bytes, elapsed) = ceiling(&world).await?;
    ensure!(ceiling_bytes >= corpus_bytes, "the ceiling read too little");
    rows.push(Row {
        name: "ceiling: UID FETCH 1:* read, discarded".into(),
        run: None,
        elapsed,
        messages: u64::from(count),
    });

    // mailbridge: a durable download into a Maildir, in a child process.
    // BENCH_VARIANTS="batch:syncs:runtime ..." tries settings (and skips the peers).
    let variants = std::env::var("BENCH_VARIANTS").unwrap_or_default();
    for (n, variant) in variants.split_whitespace().enumerate() {
        let mut parts = variant.split(':');
        let (batch, syncs, rt) = (
            parts.next().unwrap_or("500"),
            parts.next().unwrap_or("32"),
            parts.next().unwrap_or("current"),
        );
        let maildir = base.path().join(format!("variant-{n}"));
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("child-download")
            .arg(&maildir)
            .env("MB_PORT", port.to_string())
            .env("MB_CA", &ca)
            .env("MB_USER", USER)
            .env("MB_PASS", PASSWORD)
            .env("MB_BATCH", batch)
            .env("MB_SYNCS", syncs)
            .env("MB_RUNTIME", rt);
        let run = tokio::task::spawn_blocking(move || peak::run(command)).await??;
        println!(
            "variant {variant}: {:.0} msg/s, {} KiB peak, {} stored {}",
            f64::from(count) / run.elapsed.as_secs_f64(),
            run.peak_kib,
            count_maildir_messages(&maildir),
            run.stderr.trim()
        );
        std::fs::remove_dir_all(&maildir)?;
    }
    if !variants.is_empty() {
        return Ok(());
    }
    // mailbridge and mbsync alternate over ROUNDS rounds (the one that goes second
    // would otherwise pay for the first one's writeback); the best round counts.
    let (mut best_ours, mut best_mbsync): (Option<Row>, Option<Row>) = (None, None);
    for round in 0..ROUNDS {
        for which in [round % 2, (round + 1) % 2] {
            settle_disk();
            let row = if which == 0 {
                run_mailbridge(base.path(), round, port, &ca)?
            } else {
                let m = peers::mbsync(base.path(), round, port, &ca, owner)?;
                Row {
                    name: m.name,
                    elapsed: m.run.elapsed,
                    run: Some(m.run),
                    messages: m.messages,
                }
            };
            eprintln!(
                "round {round}: {} {:.0} msg/s",
                row.name,
                row.messages as f64 / row.elapsed.as_secs_f64()
            );
            let slot = if which == 0 {
                &mut best_ours
            } else {
                &mut best_mbsync
            };
            if slot.as_ref().is_none_or(|b| row.elapsed < b.elapsed) {
                *slot = Some(row);
            }
        }
    }
    rows.extend(best_ours);
    rows.extend(best_mbsync);
    settle_disk();

    // getmail6, as the peer user. Its SIGCHLD handling can miss the delivery child's
    // exit and give up after 60 s ("waiting child pid N timed out"), more often on a
    // busy machine: such a run is tried again once, into a fresh Maildir; a second
    // failure is printed under the table and the other rows still stand.
    let mut getmail_failed = None;
    for attempt in 0..2 {
        let dir = peer_dir(base.path(), &format!("getmail-{attempt}"), owner)?;
        let target = peer_dir(&dir, "Maildir", owner)?;
        for sub in ["tmp", "new", "cur"] {
            peer_dir(&target, sub, owner)?;
        }
        let rc = dir.join("getmailrc");
        write_owned(
            &rc,
            &format!(
                "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\nport = {port}\n\
                 username = {USER}\npassword = {PASSWORD}\nmailboxes = (\"INBOX\",)\n\
                 ca_certs = {ca}\n\n\
                 [destination]\ntype = Maildir\npath = {target}/\n\n\
                 [options]\nread_all = true\ndelete = false\nverbose = 0\n\
                 message_log_syslog = false\n",
                ca = ca.display(),
                target = target.display(),
            ),
            owner,
        )?;
        let mut command = Command::new("getmail");
        command
            .arg(format!("--getmaildir={}", dir.display()))
            .arg(format!("--rcfile={}", rc.display()))
            .env("HOME", &dir)
            .current_dir(&dir)
            .uid(owner.0)
            .gid(owner.1);
        eprintln!("getmail ...");
        settle_disk();
        let run = tokio::task::spawn_blocking(move || peak::run(command)).await??;
        if run.status.success() {
            getmail_failed = None;
            rows.push(Row {
                name: format!("getmail6 ({})", version("getmail", "--version")),
                elapsed: run.elapsed,
                run: Some(run),
                messages: count_maildir_messages(&target),
            });
            break;
        }
        let why = format!("{}{}", run.stdout, run.stderr);
        let missed_child = why.contains("timed out");
        getmail_failed = Some(why);
        if !missed_child {
            break;
        }
        eprintln!("getmail missed its delivery child; trying once more");
    }

    world.mail.stop().await;
    world.server.stop().await;

    let rate = |r: &Row| r.messages as f64 / r.elapsed.as_secs_f64();
    let mbsync = rows
        .iter()
        .find(|r| r.name.starts_with("mbsync"))
        .map_or(f64::NAN, rate);
    println!(
        "imap-fetch: {count} messages, {:.1} MB, Dovecot over IMAPS (test CA), into a Maildir",
        corpus_bytes as f64 / 1e6
    );
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>10} {:>11}",
        "", "messages", "msg/s", "MB/s", "vs mbsync", "peak RSS"
    );
    for r in &rows {
        let peak = r.run.as_ref().map_or("-".to_owned(), |run| {
            format!("{:.1} MB", run.peak_kib as f64 / 1024.0)
        });
        println!(
            "{:<44} {:>9} {:>8.0} {:>8.1} {:>9.2}x {:>11}",
            r.name,
            r.messages,
            rate(r),
            corpus_bytes as f64 / 1e6 / r.elapsed.as_secs_f64(),
            rate(r) / mbsync,
            peak
        );
    }
    if let Some(why) = getmail_failed {
        println!("getmail6 failed, so it has no row: {}", why.trim());
    }
    for r in &rows {
        if r.messages != u64::from(count) {
            bail!("{} stored {} messages, not {count}", r.name, r.messages);
        }
    }
    Ok(())
}
