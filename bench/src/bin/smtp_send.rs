//! SMTP send benchmark: 2,000 messages submitted on one connection (STARTTLS, AUTH
//! PLAIN) to the testkit's Postfix, through mailbridge's SMTP client and through
//! Python's smtplib, in the same run. Each side is timed from connecting to `QUIT`;
//! Postfix's queue is drained in between so neither pays for the other's deliveries.

#![expect(
    clippy::cast_precision_loss,
    reason = "rates and megabytes for a printed table"
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use mailbridge_bench::{MailWorld, PASSWORD, USER, corpus};
use mailbridge_smtp::{Credentials, SmtpClient, SmtpConfig, TlsMode};
use secrecy::SecretString;

/// Messages each side sends (`BENCH_MESSAGES` overrides, for a quick try).
const MESSAGES: u32 = 2_000;

/// Waits until INBOX holds `count` messages (Postfix has handed everything on).
async fn drained(world: &MailWorld, count: u32) -> anyhow::Result<()> {
    let store = world.mail.mail_store();
    let deadline = Instant::now() + Duration::from_mins(10);
    loop {
        let total = store
            .folders(USER)
            .await?
            .into_iter()
            .find(|f| f.name == "INBOX")
            .map_or(0, |f| f.total);
        if total >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {total} of {count} messages were delivered");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn mailbridge_send(world: &MailWorld, dir: &Path, count: u32) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let addr = world.mail.submission();
    let mut config = SmtpConfig::new(&addr.ip().to_string(), addr.port(), TlsMode::StartTls);
    config.trust = world.trust();
    let mut client = SmtpClient::connect(&config).await?;
    client
        .authenticate(&Credentials::Plain {
            user: USER.into(),
            password: SecretString::from(PASSWORD),
        })
        .await?;
    let to = [USER.to_owned()];
    for i in 0..count {
        let file = tokio::fs::File::open(dir.join(format!("{i}.eml"))).await?;
        client.send(USER, &to, file).await?;
    }
    client.quit().await?;
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let world = MailWorld::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("mailbridge-bench-smtp-")
        .tempdir()?;
    let mut bytes = 0u64;
    for i in 0..count {
        let raw = corpus::message(i);
        bytes += raw.len() as u64;
        std::fs::write(dir.path().join(format!("{i}.eml")), raw)?;
    }
    let ca = dir.path().join("ca.pem");
    world.write_ca(&ca)?;

    eprintln!("mailbridge ...");
    let ours = mailbridge_send(&world, dir.path(), count).await?;
    drained(&world, count).await?;

    eprintln!("Python smtplib ...");
    let addr = world.mail.submission();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_peer.py");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new("python3")
                .arg(script)
                .arg("localhost")
                .arg(addr.port().to_string())
                .args([USER, PASSWORD])
                .arg(&ca)
                .arg(&dir)
                .arg(count.to_string())
                .output()
        }
    })
    .await??;
    if !out.status.success() {
        bail!(
            "smtplib peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("smtplib peer output")?;
    let peer = Duration::from_secs_f64(v["seconds"].as_f64().context("no seconds")?);
    drained(&world, 2 * count).await?;
    world.mail.stop().await;
    world.server.stop().await;

    let rate = |d: Duration| f64::from(count) / d.as_secs_f64();
    println!(
        "smtp-send: {count} messages ({:.1} MB) on one connection, STARTTLS + AUTH PLAIN, to Postfix submission",
        bytes as f64 / 1e6
    );
    println!(
        "{:<28} {:>12} {:>14} {:>9}",
        "", "mailbridge", "Python smtplib", "ratio"
    );
    println!(
        "{:<28} {:>8.0} msg/s {:>8.0} msg/s {:>8.2}x",
        "messages per second",
        rate(ours),
        rate(peer),
        rate(ours) / rate(peer)
    );
    Ok(())
}
