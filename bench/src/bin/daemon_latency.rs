//! Daemon latency benchmark: the time from a delivery into Dovecot (LMTP) to a
//! webhook's receipt of the message, through `mailbridge serve`'s IMAP watcher
//! waiting in IDLE; median, 99th percentile and worst over 1,000 mails sent one at a
//! time. Beside it, in the same run and on the same mailbox, the ceiling: a raw IMAP
//! client in IDLE, timed to Dovecot's `* N EXISTS`.
//!
//! Each mail's clock starts just before its LMTP transaction (so both figures
//! include Dovecot's delivery) and stops when the webhook receiver has the request
//! (the daemon: fetch, route, sign, POST) or when the raw client reads the EXISTS.

#![expect(
    clippy::cast_precision_loss,
    reason = "milliseconds for a printed table"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use mailbridge_bench::daemon::{Account, Home, Side, until};
use mailbridge_bench::{MailWorld, PASSWORD, USER};
use mailbridge_tls::MailStream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Mails sent (`BENCH_MESSAGES` overrides, for a quick try).
const MESSAGES: u32 = 1_000;
/// The longest one mail may take to arrive before the run is called failed.
const LIMIT: Duration = Duration::from_secs(30);

/// A small notification-sized message (about 1 KB).
fn message(i: u32) -> Vec<u8> {
    let mut body = String::new();
    for _ in 0..12 {
        body.push_str("Your order has shipped and will arrive within two working days.\r\n");
    }
    format!(
        "From: Shop <orders@example.org>\r\nTo: Alice <{USER}>\r\nSubject: Latency {i}\r\n\
         Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <latency-{i}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

/// One LMTP connection into Dovecot.
struct Lmtp {
    stream: BufReader<TcpStream>,
}

impl Lmtp {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut lmtp = Self {
            stream: BufReader::new(TcpStream::connect(addr).await?),
        };
        lmtp.reply("greeting").await?;
        lmtp.command(b"LHLO bench.example\r\n", "LHLO").await?;
        Ok(lmtp)
    }

    /// Reads a reply to its last line; refuses anything but 2xx/3xx.
    async fn reply(&mut self, what: &str) -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(LIMIT, self.stream.read_line(&mut line))
                .await
                .with_context(|| format!("LMTP {what}: no answer"))??;
            ensure!(n > 0, "LMTP {what}: Dovecot closed the connection");
            ensure!(
                line.starts_with('2') || line.starts_with('3'),
                "LMTP {what}: {}",
                line.trim_end()
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    async fn command(&mut self, line: &[u8], what: &str) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(line).await?;
        self.reply(what).await
    }

    async fn deliver(&mut self, to: &str, raw: &[u8]) -> anyhow::Result<()> {
        self.command(b"MAIL FROM:<orders@example.org>\r\n", "MAIL FROM")
            .await?;
        self.command(format!("RCPT TO:<{to}>\r\n").as_bytes(), "RCPT TO")
            .await?;
        self.command(b"DATA\r\n", "DATA").await?;
        let mut data = Vec::with_capacity(raw.len() + 8);
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        self.command(&data, "end of DATA").await
    }
}

/// The ceiling: a raw IMAP client in IDLE on INBOX, sending the instant of each
/// `* N EXISTS` to `tx`. Returns once it is idling.
async fn raw_idle(world: &MailWorld, tx: mpsc::UnboundedSender<Instant>) -> anyhow::Result<()> {
    let addr = world.mail.imaps();
    let limit = Duration::from_mins(1);
    let tcp = mailbridge_tls::connect_tcp(&addr.ip().to_string(), addr.port(), limit).await?;
    let mut s = MailStream::implicit(&world.trust(), world.mail.tls_name(), tcp, limit).await?;
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
    s.write_line(b"c IDLE").await?;
    let line = s.read_line(1024, limit).await?;
    ensure!(
        line.starts_with(b"+"),
        "IDLE refused: {}",
        String::from_utf8_lossy(&line)
    );
    tokio::spawn(async move {
        // Dovecot reports every new message while the IDLE lasts (and says
        // "* OK Still here" every few minutes).
        while let Ok(line) = s.read_line(64 * 1024, Duration::from_hours(1)).await {
            let text = String::from_utf8_lossy(&line);
            if text.starts_with("* ") && text.trim_end().ends_with(" EXISTS") {
                let _ = tx.send(Instant::now());
            }
        }
    });
    Ok(())
}

/// A webhook receiver: sends each request's subject with the instant it arrived.
async fn receiver(tx: mpsc::UnboundedSender<(String, Instant)>) -> anyhow::Result<String> {
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let at = Instant::now();
            let tx = tx.clone();
            async move {
                let subject = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["subject"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = tx.send((subject, at));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/hook"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an index within the slice"
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let world = MailWorld::start().await?;
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
    let (hook_tx, mut hooks) = mpsc::unbounded_channel();
    let url = receiver(hook_tx).await?;
    daemon
        .sink(json!({
            "name": "hook",
            "settings": {"kind": "webhook", "url": url, "allow_private_addresses": true},
            "secret": "whsec-bench-0123456789abcdef",
        }))
        .await?;
    let id = daemon
        .account_ids()
        .await?
        .remove("alice")
        .context("the imported account is not listed")?;
    daemon.watch(&id, "hook").await?;
    let d = &daemon;
    until(
        "the watcher is idle",
        Duration::from_mins(1),
        Duration::from_millis(50),
        move || async move {
            Ok(d.watcher_states().await?.get("alice").map(String::as_str) == Some("idle"))
        },
    )
    .await?;
    let (exists_tx, mut exists) = mpsc::unbounded_channel();
    raw_idle(&world, exists_tx).await?;
    let mut lmtp = Lmtp::connect(world.mail.lmtp()).await?;

    eprintln!("sending {count} mails one at a time ...");
    let (mut webhook, mut ceiling) = (Vec::new(), Vec::new());
    for i in 0..count {
        let raw = message(i);
        let subject = format!("Latency {i}");
        let start = Instant::now();
        lmtp.deliver(USER, &raw).await?;
        let seen = tokio::time::timeout(LIMIT, exists.recv())
            .await
            .with_context(|| format!("the raw IDLE client saw no EXISTS for mail {i}"))?
            .context("the raw IDLE client stopped")?;
        let got = tokio::time::timeout(LIMIT, async {
            while let Some((s, at)) = hooks.recv().await {
                if s == subject {
                    return Some(at);
                }
            }
            None
        })
        .await;
        let Ok(Some(got)) = got else {
            bail!(
                "the webhook did not receive mail {i} within {LIMIT:?}; daemon log:\n{}",
                daemon.log_tail()
            );
        };
        webhook.push(got.saturating_duration_since(start));
        ceiling.push(seen.saturating_duration_since(start));
        // No mail is sent while the previous one is on its way: the watcher is
        // back in IDLE (or about to be) when the next arrives.
    }
    daemon.stop().await?;
    world.mail.stop().await;
    world.server.stop().await;

    webhook.sort();
    ceiling.sort();
    println!(
        "daemon-latency: {count} mails (~1 KB) delivered one at a time by LMTP into Dovecot; webhook over HTTP on loopback"
    );
    println!(
        "{:<50} {:>10} {:>10} {:>10} {:>10}",
        "", "median", "p90", "p99", "worst"
    );
    for (name, rows) in [
        (
            "mailbridge serve: IDLE watcher -> webhook receipt",
            &webhook,
        ),
        ("ceiling: raw IMAP IDLE client, * N EXISTS", &ceiling),
    ] {
        println!(
            "{:<50} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>7.1} ms",
            name,
            ms(percentile(rows, 50.0)),
            ms(percentile(rows, 90.0)),
            ms(percentile(rows, 99.0)),
            ms(rows.last().copied().unwrap_or_default()),
        );
    }
    Ok(())
}
