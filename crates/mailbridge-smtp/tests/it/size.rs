//! The message size: a message larger than the account's `limits.max_message_size`
//! or the server's EHLO `SIZE` is refused before `MAIL FROM` when its size is known
//! (and `SIZE=n` goes with `MAIL FROM` otherwise, RFC 1870), or stopped while `DATA`
//! is streamed, before its final `.`, when it is not. Against scripted servers
//! (`mailbridge_testkit::hostile`) for what goes on the wire, and real Postfix with a
//! small `message_size_limit`.

use std::time::Duration;

use mailbridge_smtp::{Credentials, SizeLimit, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_testkit::mailservers::Options;
use mailbridge_types::ErrorClass;
use tokio::io::AsyncReadExt as _;

use crate::{ALICE, BOB, message, world_with};

const FROM: &str = "a@contoso.example";
const TO: &str = "b@contoso.example";

fn send(bytes: &str) -> Step {
    Step::Send(bytes.as_bytes().to_vec())
}

/// Greeting and EHLO with these capability lines (the last one without `-`).
fn greeting(capabilities: &[&str]) -> Vec<Step> {
    let ehlo = if capabilities.is_empty() {
        "250 mx.contoso.example\r\n".to_owned()
    } else {
        let mut lines = vec!["250-mx.contoso.example\r\n".to_owned()];
        for (i, c) in capabilities.iter().enumerate() {
            let sep = if i + 1 == capabilities.len() {
                ' '
            } else {
                '-'
            };
            lines.push(format!("250{sep}{c}\r\n"));
        }
        lines.concat()
    };
    vec![send("220 ready\r\n"), Step::ReadLine, send(&ehlo)]
}

/// A server that takes one message command by command, then `QUIT`.
fn accepting(capabilities: &[&str]) -> Vec<Step> {
    let mut script = greeting(capabilities);
    script.extend([
        Step::ReadLine,
        send("250 2.1.0 ok\r\n"),
        Step::ReadLine,
        send("250 2.1.5 ok\r\n"),
        Step::ReadLine,
        send("354 go ahead\r\n"),
        Step::ReadUntil(b".\r\n".to_vec()),
        send("250 2.0.0 queued as 1234\r\n"),
        Step::ReadLine,
        send("221 bye\r\n"),
    ]);
    script
}

fn config(server: &HostileServer) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", server.port(), TlsMode::None);
    c.timeout = Duration::from_secs(10);
    c
}

const MESSAGE: &[u8] =
    b"From: a@contoso.example\r\nTo: b@contoso.example\r\nSubject: hi\r\n\r\nhello\r\n";

#[tokio::test]
async fn a_message_known_to_be_larger_than_the_servers_size_is_refused_before_mail_from() {
    let mut script = greeting(&["SIZE 1000", "8BITMIME"]);
    script.extend([Step::ReadLine, send("221 bye\r\n")]);
    let server = HostileServer::start(script).await;
    let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
    assert_eq!(c.size_limit(), SizeLimit::Server(1000));
    let err = c
        .send_sized(FROM, &[TO.into()], &[b'x'; 5000][..], Some(5000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::MessageTooLarge {
                size: Some(5000),
                limit: SizeLimit::Server(1000)
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert_eq!(err.size_limit().and_then(SizeLimit::setting), None);
    let text = err.to_string();
    assert!(
        text.contains("5000 bytes") && text.contains("the server accepts at most 1000 bytes"),
        "{text}"
    );
    assert!(text.contains("nothing was sent"), "{text}");
    // Nothing reached the server, and the session goes on.
    assert!(c.is_open());
    c.quit().await.unwrap();
    assert_eq!(
        server.received_text(),
        "EHLO mailbridge.localhost\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn a_message_known_to_be_larger_than_max_message_size_names_the_setting() {
    // The server's bound is larger, or it announces none.
    for capabilities in [&["SIZE 100000"][..], &["8BITMIME"][..], &[][..]] {
        let mut script = greeting(capabilities);
        script.extend([Step::ReadLine, send("221 bye\r\n")]);
        let server = HostileServer::start(script).await;
        let mut config = config(&server);
        config.max_message_size = 2000;
        let mut c = SmtpClient::connect(&config).await.unwrap();
        let err = c
            .send_sized(FROM, &[TO.into()], &[b'x'; 5000][..], Some(5000))
            .await
            .unwrap_err();
        assert_eq!(
            err.size_limit(),
            Some(SizeLimit::Setting(2000)),
            "{capabilities:?}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::LimitExceeded);
        let text = err.to_string();
        assert!(
            text.contains("5000 bytes")
                && text.contains("2000 bytes")
                && text.contains("limits.max_message_size"),
            "{text}"
        );
        c.quit().await.unwrap();
        assert!(
            !server.received_text().contains("MAIL FROM"),
            "{capabilities:?}"
        );
    }
}

#[tokio::test]
async fn a_known_size_goes_with_mail_from_when_the_server_offers_size() {
    let size = MESSAGE.len() as u64;
    // Command by command, with and without SIZE offered.
    for (capabilities, mail_from) in [
        (
            &["SIZE 100000", "8BITMIME"][..],
            format!("MAIL FROM:<{FROM}> SIZE={size}\r\n"),
        ),
        (&["8BITMIME"][..], format!("MAIL FROM:<{FROM}>\r\n")),
    ] {
        let server = HostileServer::start(accepting(capabilities)).await;
        let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
        let reply = c
            .send_sized(FROM, &[TO.into()], MESSAGE, Some(size))
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
        c.quit().await.unwrap();
        let heard = server.received_text();
        assert!(
            heard.starts_with(&format!(
                "EHLO mailbridge.localhost\r\n{mail_from}RCPT TO:<{TO}>\r\nDATA\r\n"
            )),
            "{heard}"
        );
    }
    // Pipelined: the envelope in one write, SIZE included.
    let mut script = greeting(&["PIPELINING", "SIZE 100000"]);
    script.extend([
        Step::ReadLine,
        Step::ReadLine,
        Step::ReadLine,
        send("250 ok\r\n250 ok\r\n354 go ahead\r\n"),
        Step::ReadUntil(b".\r\n".to_vec()),
        send("250 2.0.0 queued\r\n"),
    ]);
    let server = HostileServer::start(script).await;
    let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
    c.send_sized(FROM, &[TO.into()], MESSAGE, Some(size))
        .await
        .unwrap();
    assert!(
        server.received_text().contains(&format!(
            "MAIL FROM:<{FROM}> SIZE={size}\r\nRCPT TO:<{TO}>\r\nDATA\r\n"
        )),
        "{}",
        server.received_text()
    );
}

/// What the server received after `DATA`.
fn data_part(server: &HostileServer) -> Vec<u8> {
    let all = server.received();
    let start = all
        .windows(6)
        .position(|w| w == b"DATA\r\n")
        .expect("DATA was sent")
        + 6;
    all[start..].to_vec()
}

#[tokio::test]
async fn a_message_that_grows_past_the_bound_is_stopped_before_its_end() {
    // Unknown size, or a size that says less than the message holds; the account's
    // bound or the server's.
    for (size, server_size, setting, limit) in [
        (None, 10_000_000, 100_000, SizeLimit::Setting(100_000)),
        (Some(10), 10_000_000, 100_000, SizeLimit::Setting(100_000)),
        (None, 50_000, 150 * 1024 * 1024, SizeLimit::Server(50_000)),
    ] {
        let mut script = greeting(&[&format!("SIZE {server_size}"), "8BITMIME"]);
        script.extend([
            Step::ReadLine,
            send("250 ok\r\n"),
            Step::ReadLine,
            send("250 ok\r\n"),
            Step::ReadLine,
            send("354 go ahead\r\n"),
        ]);
        let server = HostileServer::start(script).await;
        let mut config = config(&server);
        config.max_message_size = setting;
        let mut c = SmtpClient::connect(&config).await.unwrap();
        let body = tokio::io::repeat(b'x').take(20 * 1024 * 1024);
        let err = c
            .send_sized(FROM, &[TO.into()], body, size)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SmtpError::MessageTooLarge { size: None, limit: l } if l == limit),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::LimitExceeded);
        let text = err.to_string();
        assert!(
            text.contains(&format!("{} bytes", limit.bytes()))
                && text.contains("nothing was delivered"),
            "{text}"
        );
        if let Some(setting) = limit.setting() {
            assert!(text.contains(setting), "{text}");
        } else {
            assert!(text.contains("the server accepts at most"), "{text}");
        }
        // The connection was dropped without the final dot: nothing past the bound
        // went out, and the message never ended.
        assert!(!c.is_open());
        assert!(server.wait_ended(1, Duration::from_secs(30)).await);
        let data = data_part(&server);
        assert!(data.len() as u64 <= limit.bytes(), "{} bytes", data.len());
        assert!(data.iter().all(|b| *b == b'x'), "no end of DATA was sent");
    }
}

#[tokio::test]
async fn a_message_within_the_bound_streams_whole_whatever_its_size_hint() {
    for size in [None, Some(MESSAGE.len() as u64)] {
        let server = HostileServer::start(accepting(&["SIZE 1000"])).await;
        let mut config = config(&server);
        config.max_message_size = MESSAGE.len() as u64;
        let mut c = SmtpClient::connect(&config).await.unwrap();
        c.send_sized(FROM, &[TO.into()], MESSAGE, size)
            .await
            .unwrap();
        c.quit().await.unwrap();
        let data = data_part(&server);
        assert_eq!(data, [MESSAGE, b".\r\n", b"QUIT\r\n"].concat(), "{size:?}");
    }
}

/// A reader producing `len` bytes of a message (76-character lines) without
/// holding it in memory.
fn large(subject: &str, len: usize) -> impl tokio::io::AsyncRead + Unpin {
    let header = message(ALICE, BOB, subject, "");
    let line = [b"y".repeat(76), b"\r\n".to_vec()].concat();
    let lines = (len.saturating_sub(header.len())).div_ceil(line.len());
    std::io::Cursor::new(header).chain(std::io::Cursor::new(line.repeat(lines)))
}

#[tokio::test]
async fn postfix_message_size_limit_refuses_a_known_large_message_and_stops_an_unknown_one() {
    const LIMIT: u64 = 64 * 1024;
    let w = world_with(
        |_| {},
        Options {
            message_size_limit: LIMIT,
        },
    )
    .await;
    let connect = || async {
        let mut c = SmtpClient::connect(&w.config()).await.unwrap();
        c.authenticate(&Credentials::XOAuth2 {
            user: ALICE.into(),
            token: w.app_token(&["SMTP.SendAsApp"]),
        })
        .await
        .unwrap();
        c
    };
    let mut c = connect().await;
    // Postfix announces its message_size_limit as SIZE.
    assert_eq!(
        c.size_limit(),
        SizeLimit::Server(LIMIT),
        "{:?}",
        c.capabilities
    );

    // Known size: refused before MAIL FROM, the session goes on.
    let big = 200 * 1024;
    let err = c
        .send_sized(
            ALICE,
            &[BOB.into()],
            large("too big, known", big),
            Some(big as u64),
        )
        .await
        .unwrap_err();
    assert_eq!(err.size_limit(), Some(SizeLimit::Server(LIMIT)), "{err}");
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert!(
        err.to_string()
            .contains(&format!("the server accepts at most {LIMIT} bytes")),
        "{err}"
    );
    assert!(c.is_open());
    let small = message(ALICE, BOB, "small, sized", "x");
    c.send_sized(
        ALICE,
        &[BOB.into()],
        small.as_slice(),
        Some(small.len() as u64),
    )
    .await
    .unwrap();

    // Unknown size: stopped while streaming, the connection dropped before the end.
    let err = c
        .send(ALICE, &[BOB.into()], large("too big, unknown", big))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SmtpError::MessageTooLarge {
                size: None,
                limit: SizeLimit::Server(LIMIT)
            }
        ),
        "{err:?}"
    );
    assert!(!c.is_open());

    // The account's own bound, below the server's, is named with its setting.
    let mut config = w.config();
    config.max_message_size = 10_000;
    let mut c = SmtpClient::connect(&config).await.unwrap();
    c.authenticate(&Credentials::XOAuth2 {
        user: ALICE.into(),
        token: w.app_token(&["SMTP.SendAsApp"]),
    })
    .await
    .unwrap();
    let err = c
        .send_sized(
            ALICE,
            &[BOB.into()],
            large("too big for the account", 20_000),
            Some(20_000),
        )
        .await
        .unwrap_err();
    assert_eq!(err.size_limit(), Some(SizeLimit::Setting(10_000)), "{err}");
    assert!(err.to_string().contains("limits.max_message_size"), "{err}");
    // A message of unknown size under both bounds goes through after it.
    let last = message(ALICE, BOB, "small, unknown size", "y");
    c.send(ALICE, &[BOB.into()], last.as_slice()).await.unwrap();
    c.quit().await.unwrap();

    // Bob has the two small messages and none of the large ones.
    let got = w.inbox(BOB, 2).await;
    let subjects: Vec<String> = got
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["small, sized", "small, unknown size"],
        "{subjects:?}"
    );
}
