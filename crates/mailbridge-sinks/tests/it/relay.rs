use mailbridge_sinks::relay::{RelayConfig, RelaySink};
use mailbridge_smtp::{SmtpConfig, TlsMode};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{Tenant, TenantModel, User};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::ErrorClass;

use crate::delivery;

const BOB: &str = "bob@contoso.example";

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
