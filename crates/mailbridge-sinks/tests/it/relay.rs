use mailbridge_sinks::relay::{RelayConfig, RelaySink};
use mailbridge_smtp::{SmtpConfig, TlsMode};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::delivery;

const BOB: &str = "bob@contoso.example";

/// A TCP proxy on loopback in front of `upstream` that counts the connections it
/// accepts and can cut them all (the server side going away).
struct CountingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicU32>,
    cut: tokio::sync::watch::Sender<u32>,
    _task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let (cut, _) = tokio::sync::watch::channel(0u32);
        let (count, cuts) = (accepted.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            cut,
            _task: task,
        }
    }

    fn connections(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection open now, both ways.
    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// A message to Bob with a numbered subject.
fn numbered(n: usize) -> Vec<u8> {
    format!(
        "From: alerts@fabrikam.example\r\nTo: {BOB}\r\nSubject: alert {n}\r\nMessage-ID: <alert-{n}@fabrikam.example>\r\n\r\nAlert number {n}.\r\n"
    )
    .into_bytes()
}

/// Waits until Bob's INBOX holds `n` messages (or the deadline passes) and gives the
/// subjects' numbers, sorted.
async fn wait_for_numbered(mail: &MailServers, n: usize) -> Vec<usize> {
    let store = mail.mail_store();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let list = store.list(BOB, "INBOX").await.unwrap();
        if list.len() >= n || tokio::time::Instant::now() >= deadline {
            let mut numbers = Vec::new();
            for m in &list {
                let raw = store.fetch(&m.id).await.unwrap().unwrap();
                let text = String::from_utf8_lossy(&raw).into_owned();
                let subject = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: alert "))
                    .unwrap_or_else(|| panic!("no numbered subject in {text}"));
                numbers.push(subject.trim().parse::<usize>().unwrap());
            }
            numbers.sort_unstable();
            return numbers;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bob_and_postfix() -> (EmulatorServer, MailServers) {
    let tenant =
        Tenant::new("Contoso", "contoso.example").with_user(User::new(BOB, "Bob", "Passw0rd!"));
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    (server, mail)
}

/// Many messages into Postfix go over one connection; when the connection is cut
/// while idle, the next message gets a fresh one, and every message arrives once.
#[tokio::test]
async fn deliveries_share_one_connection_and_a_closed_one_is_replaced() {
    const N: usize = 20;
    let (_server, mail) = bob_and_postfix().await;
    let proxy = CountingProxy::start(mail.delivery()).await;
    let sink = RelaySink::new(RelayConfig::new(SmtpConfig::new(
        "127.0.0.1",
        proxy.addr.port(),
        TlsMode::None,
    )));
    let spool = tempfile::tempdir().unwrap();
    for n in 0..N {
        let d = delivery(spool.path(), &n.to_string(), &numbered(n));
        let accepted = sink.deliver(&d).await.unwrap();
        assert!(accepted.location.contains("250"), "{}", accepted.location);
    }
    assert_eq!(proxy.connections(), 1);

    // The server side goes away while the connection is idle.
    proxy.cut_all();
    let d = delivery(spool.path(), &N.to_string(), &numbered(N));
    sink.deliver(&d).await.unwrap();
    assert_eq!(proxy.connections(), 2);

    let numbers = wait_for_numbered(&mail, N + 1).await;
    assert_eq!(numbers, (0..=N).collect::<Vec<_>>(), "{}", mail.logs());
    sink.close().await;
    mail.stop().await;
}

/// The firewall connector's last step: a fetched message into the local relay
/// (Postfix), and from there into Bob's Dovecot mailbox, its bytes unchanged.
#[tokio::test]
async fn a_message_reaches_the_mailbox_behind_the_relay_byte_for_byte() {
    let tenant =
        Tenant::new("Contoso", "contoso.example").with_user(User::new(BOB, "Bob", "Passw0rd!"));
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let _server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let relay = mail.delivery();
    let sink = RelaySink::new(RelayConfig::new(SmtpConfig::new(
        &relay.ip().to_string(),
        relay.port(),
        TlsMode::None,
    )));

    // A line starting with a dot and 8-bit text: both must survive the trip.
    let original = format!(
        "Return-Path: <alerts@fabrikam.example>\r\nFrom: Fabrikam Alerts <alerts@fabrikam.example>\r\nTo: {BOB}\r\nSubject: Disk almost full\r\nMessage-ID: <disk-7@fabrikam.example>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nZażółć gęślą jaźń.\r\n.hidden line\r\n..two dots\r\n"
    );
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "1001", original.as_bytes());
    let accepted = sink.deliver(&d).await.unwrap();
    assert!(accepted.location.contains("250"), "{}", accepted.location);

    let store = mail.mail_store();
    let mut stored = None;
    for _ in 0..300 {
        let list = store.list(BOB, "INBOX").await.unwrap();
        if let Some(m) = list.first() {
            stored = store.fetch(&m.id).await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stored = stored.unwrap_or_else(|| panic!("nothing arrived\n{}", mail.logs()));
    let stored = String::from_utf8(stored).unwrap();
    // The servers add their own trace fields in front; after them come mailbridge's
    // Received line and then the message exactly as it was.
    let ours = stored
        .find("Received: by mailbridge (account alice, folder INBOX) id ")
        .unwrap();
    let rest = &stored[ours..];
    // The envelope sender came from the message's Return-Path (which Postfix, as
    // most relays, takes off the message: message_drop_headers).
    assert!(
        stored.starts_with("Return-Path: <alerts@fabrikam.example>\r\n"),
        "{stored}"
    );
    let original_at = rest.find("From: Fabrikam Alerts").unwrap();
    assert!(rest[..original_at].contains(d.key.as_str()));
    let without_return_path = original.split_once("\r\n").unwrap().1;
    assert_eq!(&rest[original_at..], without_return_path, "{stored}");
    mail.stop().await;
}

fn hostile_config(server: &HostileServer) -> RelayConfig {
    let mut c = RelayConfig::new(SmtpConfig::new("127.0.0.1", server.port(), TlsMode::None));
    c.received_header = false;
    c
}

#[tokio::test]
async fn a_relay_refusing_for_now_is_transient_and_for_good_is_permanent() {
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(
        spool.path(),
        "5",
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\n\r\nbody\r\n",
    );
    for (rcpt_reply, class) in [
        (
            "451 4.3.0 Mail server temporarily rejected message\r\n",
            ErrorClass::Transient,
        ),
        ("550 5.1.1 User unknown\r\n", ErrorClass::Permanent),
    ] {
        let server = HostileServer::start(vec![
            Step::Send(b"220 relay ESMTP\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 relay\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(rcpt_reply.as_bytes().to_vec()),
            Step::ReadLine,
            Step::Close,
        ])
        .await;
        let e = RelaySink::new(hostile_config(&server))
            .deliver(&d)
            .await
            .unwrap_err();
        assert_eq!(e.class(), class, "{e:?}");
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{}", server.port())),
            "{e}"
        );
        // The envelope came from the message.
        let seen = server.received_text();
        assert!(seen.contains("MAIL FROM:<a@example.com>"), "{seen}");
        assert!(seen.contains("RCPT TO:<b@example.com>"), "{seen}");
        // Nothing of the message was sent.
        assert!(!seen.contains("Subject: x"), "{seen}");
    }
}

#[tokio::test]
async fn a_message_over_the_bound_is_refused_before_connecting() {
    let server = HostileServer::start(vec![
        Step::Send(b"220 relay ESMTP\r\n".to_vec()),
        Step::ReadLine,
    ])
    .await;
    let mut c = hostile_config(&server);
    c.max_message_size = 10;
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(
        spool.path(),
        "6",
        b"To: b@example.com\r\n\r\nmore than ten bytes\r\n",
    );
    let e = RelaySink::new(c).deliver(&d).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::LimitExceeded);
    assert_eq!(server.connections(), 0);
}

/// A scripted relay's part of one successful transaction (no PIPELINING offered, so
/// command by command).
fn transaction_ok() -> Vec<Step> {
    vec![
        Step::ReadLine,
        Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 2.1.5 Ok\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"354 End data with <CR><LF>.<CR><LF>\r\n".to_vec()),
        Step::ReadUntil(b".\r\n".to_vec()),
        Step::Send(b"250 2.0.0 Ok: queued\r\n".to_vec()),
    ]
}

fn greeting() -> Vec<Step> {
    vec![
        Step::Send(b"220 relay ESMTP\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250 relay\r\n".to_vec()),
    ]
}

fn script(parts: &[Vec<Step>]) -> Vec<Step> {
    parts.concat()
}

fn message_body(n: u32) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: m{n}\r\n\r\nbody of message {n}\r\n"
    )
    .into_bytes()
}

/// A relay that timed the kept connection out (421, as Postfix says it, then
/// closed): the next message goes on a fresh connection, and each message reached
/// the relay once.
#[tokio::test]
async fn a_kept_connection_the_relay_timed_out_is_replaced() {
    let server = HostileServer::start(script(&[
        greeting(),
        transaction_ok(),
        vec![
            Step::Send(b"421 4.4.2 relay Error: timeout exceeded\r\n".to_vec()),
            Step::Close,
        ],
    ]))
    .await;
    let sink = RelaySink::new(hostile_config(&server));
    let spool = tempfile::tempdir().unwrap();
    for n in 1..=2 {
        sink.deliver(&delivery(spool.path(), &n.to_string(), &message_body(n)))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 2);
    let seen = server.received_text();
    for n in 1..=2 {
        assert_eq!(
            seen.matches(&format!("body of message {n}")).count(),
            1,
            "{seen}"
        );
    }
}

/// A refused message leaves the connection usable: RSET, then the next message on
/// the same connection.
#[tokio::test]
async fn after_a_refusal_the_connection_is_reset_and_kept() {
    let server = HostileServer::start(script(&[
        greeting(),
        vec![
            Step::ReadLine,
            Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"550 5.1.1 User unknown\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.0.0 Ok\r\n".to_vec()),
        ],
        transaction_ok(),
    ]))
    .await;
    let sink = RelaySink::new(hostile_config(&server));
    let spool = tempfile::tempdir().unwrap();
    let e = sink
        .deliver(&delivery(spool.path(), "1", &message_body(1)))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
    sink.deliver(&delivery(spool.path(), "2", &message_body(2)))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
    let seen = server.received_text();
    assert!(seen.contains("RSET\r\n"), "{seen}");
    assert!(!seen.contains("body of message 1"), "{seen}");
    assert_eq!(seen.matches("body of message 2").count(), 1, "{seen}");
}

/// A kept connection that breaks after the final dot of a message is not a reason
/// to send the message again: the outcome is unknown, on one connection.
#[tokio::test]
async fn a_failure_after_the_final_dot_is_not_resent() {
    let server = HostileServer::start(script(&[
        greeting(),
        transaction_ok(),
        vec![
            Step::ReadLine,
            Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.1.5 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"354 go ahead\r\n".to_vec()),
            Step::ReadUntil(b".\r\n".to_vec()),
            Step::Close,
        ],
    ]))
    .await;
    let sink = RelaySink::new(hostile_config(&server));
    let spool = tempfile::tempdir().unwrap();
    sink.deliver(&delivery(spool.path(), "1", &message_body(1)))
        .await
        .unwrap();
    let e = sink
        .deliver(&delivery(spool.path(), "2", &message_body(2)))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::OutcomeUnknown, "{e}");
    assert_eq!(server.connections(), 1);
    let seen = server.received_text();
    assert_eq!(seen.matches("body of message 2").count(), 1, "{seen}");
}

/// An idle connection is closed with QUIT once its idle time is over, without
/// another delivery.
#[tokio::test]
async fn an_idle_connection_is_closed_after_its_idle_time() {
    let server = HostileServer::start(script(&[
        greeting(),
        transaction_ok(),
        vec![
            Step::ReadLine,
            Step::Send(b"221 2.0.0 Bye\r\n".to_vec()),
            Step::Close,
        ],
    ]))
    .await;
    let mut c = hostile_config(&server);
    c.idle_timeout = Duration::from_millis(200);
    let sink = RelaySink::new(c);
    let spool = tempfile::tempdir().unwrap();
    sink.deliver(&delivery(spool.path(), "1", &message_body(1)))
        .await
        .unwrap();
    assert!(server.wait_ended(1, Duration::from_secs(30)).await);
    assert!(server.received_text().ends_with("QUIT\r\n"));
    // The next message connects again.
    sink.deliver(&delivery(spool.path(), "2", &message_body(2)))
        .await
        .unwrap();
    assert_eq!(server.connections(), 2);
}
