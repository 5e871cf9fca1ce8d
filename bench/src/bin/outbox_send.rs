//! Outbox benchmark: N messages (default 1,000, `BENCH_MESSAGES`) queued through
//! `POST /api/v1/accounts/{id}/outbox` (raw MIME) and sent by `mailbridge serve`'s
//! outbox to the testkit's Postfix (submission, STARTTLS, AUTH PLAIN), beside
//! Python's smtplib sending the same files on one connection, in the same run.
//!
//! The daemon is timed from the first POST to the moment the API shows every
//! message `sent` (polled every 100 ms); smtplib from connecting to `QUIT`.
//! Postfix's queue is drained into Dovecot in between so neither side pays for the
//! other's deliveries. The messages are the imap-fetch corpus with `From:` set to
//! the sending mailbox (Postfix's SendAs check refuses other senders).

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and megabytes for a printed table"
)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mailbridge_bench::daemon::{Account, Daemon, Home, Side, until};
use mailbridge_bench::{MailWorld, PASSWORD, USER, corpus};
use serde_json::Value;

/// Messages each side sends.
const MESSAGES: u32 = 1_000;
/// The longest either side may take.
const LIMIT: Duration = Duration::from_mins(30);

/// Corpus message `i` from the sending mailbox (its `From:` replaced, its
/// `Return-Path:` left out; the body unchanged).
fn message(i: u32) -> Vec<u8> {
    let raw = corpus::message(i);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut out = String::with_capacity(text.len());
    for line in head.split("\r\n") {
        if line.starts_with("From: ") {
            let _ = write!(out, "From: Alice <{USER}>\r\n");
        } else if !line.starts_with("Return-Path: ") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Waits until INBOX holds `count` messages (Postfix has handed everything on).
async fn drained(world: &MailWorld, count: u32) -> anyhow::Result<()> {
    let store = world.mail.mail_store();
    until(
        "Postfix delivers every message into Dovecot",
        LIMIT,
        Duration::from_millis(200),
        move || {
            let store = store.clone();
            async move {
                let total = store
                    .folders(USER)
                    .await?
                    .into_iter()
                    .find(|f| f.name == "INBOX")
                    .map_or(0, |f| f.total);
                Ok(total >= count)
            }
        },
    )
    .await
}

/// How many of the outbox's messages are sent; fails on one that failed for good.
async fn sent(daemon: &Daemon) -> anyhow::Result<usize> {
    let rows = daemon
        .call(reqwest::Method::GET, "/api/v1/outbox", None, 200)
        .await?;
    let rows = rows.as_array().context("outbox: not a list")?;
    if let Some(failed) = rows.iter().find(|r| r["state"] == "failed") {
        bail!("a message failed: {failed}");
    }
    Ok(rows.iter().filter(|r| r["state"] == "sent").count())
}

async fn outbox(world: &MailWorld, dir: &Path, count: u32) -> anyhow::Result<Duration> {
    let home = Home::new(world.mail.ca_pem(), world.mail.tls_name())?;
    let submission = world.mail.submission();
    home.import(&[Account {
        name: "alice".into(),
        address: USER.into(),
        password: PASSWORD.into(),
        incoming: None,
        outgoing: Some(Side {
            transport: "smtp",
            host: submission.ip().to_string(),
            port: submission.port(),
            tls: "starttls",
        }),
    }])
    .await?;
    let daemon = home.serve().await?;
    let id = daemon
        .account_ids()
        .await?
        .remove("alice")
        .context("the imported account is not listed")?;
    let mut files = Vec::new();
    for i in 0..count {
        files.push(tokio::fs::read(dir.join(format!("{i}.eml"))).await?);
    }
    let start = Instant::now();
    for (i, raw) in files.into_iter().enumerate() {
        let res = daemon
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/accounts/{id}/outbox"),
            )
            .header("Content-Type", "message/rfc822")
            .header("Idempotency-Key", format!("bench-{i}"))
            .body(raw)
            .send()
            .await?;
        if res.status().as_u16() != 201 {
            let status = res.status();
            let body: Value = res.json().await.unwrap_or_default();
            bail!("queueing message {i} answered {status}: {body}");
        }
    }
    let queued = start.elapsed();
    let d = &daemon;
    let done = until(
        "the outbox sends every message",
        LIMIT,
        Duration::from_millis(100),
        move || async move { Ok(sent(d).await? >= count as usize) },
    )
    .await;
    let elapsed = start.elapsed();
    if let Err(e) = done {
        bail!("{e:#}; daemon log:\n{}", daemon.log_tail());
    }
    eprintln!(
        "queued {count} in {:.1} s, all sent after {:.1} s",
        queued.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    daemon.stop().await?;
    Ok(elapsed)
}

/// Python's smtplib sending `dir`'s messages: on one connection, or (`each`) on a
/// new connection per message; the time it took.
async fn smtplib(
    world: &MailWorld,
    dir: &Path,
    ca: &Path,
    count: u32,
    each: bool,
) -> anyhow::Result<Duration> {
    let addr = world.mail.submission();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_peer.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("localhost")
        .arg(addr.port().to_string())
        .args([USER, PASSWORD])
        .arg(ca)
        .arg(dir)
        .arg(count.to_string());
    if each {
        command.arg("each");
    }
    let out = tokio::task::spawn_blocking(move || command.output()).await??;
    if !out.status.success() {
        bail!(
            "smtplib peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("smtplib peer output")?;
    Ok(Duration::from_secs_f64(
        v["seconds"].as_f64().context("no seconds")?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let world = MailWorld::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("mailbridge-bench-outbox-")
        .tempdir()?;
    let mut bytes = 0u64;
    for i in 0..count {
        let raw = message(i);
        bytes += raw.len() as u64;
        std::fs::write(dir.path().join(format!("{i}.eml")), raw)?;
    }
    let ca = dir.path().join("ca.pem");
    world.write_ca(&ca)?;

    eprintln!("mailbridge outbox ...");
    let ours = outbox(&world, dir.path(), count).await?;
    drained(&world, count).await?;

    eprintln!("Python smtplib, one connection ...");
    let peer = smtplib(&world, dir.path(), &ca, count, false).await?;
    drained(&world, 2 * count).await?;
    eprintln!("Python smtplib, a connection per message ...");
    let peer_each = smtplib(&world, dir.path(), &ca, count, true).await?;
    drained(&world, 3 * count).await?;
    world.mail.stop().await;
    world.server.stop().await;

    let rate = |d: Duration| f64::from(count) / d.as_secs_f64();
    println!(
        "outbox-send: {count} messages ({:.1} MB) to Postfix submission (STARTTLS + AUTH PLAIN)",
        bytes as f64 / 1e6
    );
    println!("{:<52} {:>12} {:>17}", "", "msg/s", "mailbridge is");
    println!(
        "{:<52} {:>12.1} {:>17}",
        "mailbridge serve: API -> outbox -> Postfix",
        rate(ours),
        ""
    );
    for (name, d) in [
        ("Python smtplib, one connection", peer),
        ("Python smtplib, a connection + AUTH per message", peer_each),
    ] {
        println!(
            "{:<52} {:>12.1} {:>16.2}x",
            name,
            rate(d),
            rate(ours) / rate(d)
        );
    }
    Ok(())
}
