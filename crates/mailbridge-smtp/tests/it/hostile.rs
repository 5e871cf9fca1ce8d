//! Hostile SMTP servers on loopback: one that swallows the final `.` or hangs up
//! after it (the message may be accepted: outcome unknown, never "retry later"), one
//! whose multi-line reply never ends or trickles, and refusals of a password with
//! escape sequences in their text.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbridge_smtp::{Credentials, Mechanism, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// After the final `.` of DATA.
#[derive(Debug, Clone, Copy)]
enum AfterDot {
    /// Say nothing, keep the connection open.
    Swallow,
    /// Close the connection.
    HangUp,
    /// Answer 250.
    Accept,
}

/// What a scripted server does.
#[derive(Debug, Clone)]
struct Script {
    greeting: Vec<u8>,
    /// Lines written again and again after the greeting (an endless reply), with a
    /// pause between.
    endless: Option<(Vec<u8>, Duration)>,
    ehlo: &'static [u8],
    /// Answers to the AUTH exchange, one per line the client sends.
    auth: Vec<&'static [u8]>,
    after_dot: AfterDot,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            greeting: b"220 ready\r\n".to_vec(),
            endless: None,
            ehlo: b"250-mx\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 8BITMIME\r\n",
            auth: Vec::new(),
            after_dot: AfterDot::Accept,
        }
    }
}

/// Serves `script` to one client; counts the DATA commands it saw.
async fn server(script: Script, datas: Arc<Mutex<usize>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        if w.write_all(&script.greeting).await.is_err() {
            return;
        }
        if let Some((line, pause)) = &script.endless {
            while w.write_all(line).await.is_ok() {
                tokio::time::sleep(*pause).await;
            }
            return;
        }
        let mut auth = script.auth.iter();
        let mut in_auth = false;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_ascii_uppercase();
            let answer: &[u8] = if in_auth || command.starts_with("AUTH") {
                let a = auth.next().copied().unwrap_or(b"535 5.7.8 no\r\n");
                in_auth = a.starts_with(b"334");
                a
            } else if command.starts_with("EHLO") {
                script.ehlo
            } else if command.starts_with("MAIL") || command.starts_with("RCPT") {
                b"250 ok\r\n"
            } else if command == "DATA" {
                *datas.lock().unwrap() += 1;
                w.write_all(b"354 go\r\n").await.unwrap();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                match script.after_dot {
                    AfterDot::Swallow => {
                        // Hold the connection until the client leaves.
                        let _ = r.read_line(&mut line).await;
                        return;
                    }
                    AfterDot::HangUp => return,
                    AfterDot::Accept => b"250 2.0.0 queued as 1234\r\n",
                }
            } else if command == "QUIT" {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"250 ok\r\n"
            };
            if w.write_all(answer).await.is_err() {
                return;
            }
        }
    });
    addr
}

fn config(addr: SocketAddr) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", addr.port(), TlsMode::None);
    c.timeout = Duration::from_secs(10);
    c.final_reply_timeout = Duration::from_millis(500);
    c
}

const MESSAGE: &[u8] =
    b"From: a@contoso.example\r\nTo: b@contoso.example\r\nSubject: hi\r\n\r\nhello\r\n";

#[test]
fn the_final_reply_waits_ten_minutes_by_default() {
    let c = SmtpConfig::new("h", 587, TlsMode::StartTls);
    assert_eq!(c.final_reply_timeout, Duration::from_mins(10));
}

#[tokio::test]
async fn a_swallowed_final_dot_is_outcome_unknown_not_retry_later() {
    for after_dot in [AfterDot::Swallow, AfterDot::HangUp] {
        let datas = Arc::default();
        let addr = server(
            Script {
                after_dot,
                ..Script::default()
            },
            Arc::clone(&datas),
        )
        .await;
        let mut c = SmtpClient::connect(&config(addr)).await.unwrap();
        let err = c
            .send("a@contoso.example", &["b@contoso.example".into()], MESSAGE)
            .await
            .unwrap_err();
        assert!(err.is_outcome_unknown(), "{after_dot:?}: {err}");
        assert_eq!(err.class(), ErrorClass::OutcomeUnknown, "{after_dot:?}");
        assert!(!err.class().is_retryable());
        let text = err.to_string();
        assert!(
            text.contains("may have accepted the message") && !text.contains("retry later"),
            "{text}"
        );
        assert!(!c.is_open(), "the session is closed, not reused");
        assert_eq!(*datas.lock().unwrap(), 1);
    }
}

#[tokio::test]
async fn an_endless_multi_line_reply_is_bounded_in_lines() {
    let datas = Arc::default();
    let addr = server(
        Script {
            greeting: b"220-hello\r\n".to_vec(),
            endless: Some((b"220-and more\r\n".repeat(50), Duration::ZERO)),
            ..Script::default()
        },
        datas,
    )
    .await;
    let err = SmtpClient::connect(&config(addr)).await.unwrap_err();
    assert!(matches!(err, SmtpError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("more than 256 lines"), "{err}");
}

#[tokio::test]
async fn an_endless_reply_of_long_lines_is_bounded_in_bytes() {
    let datas = Arc::default();
    let mut line = b"220-".to_vec();
    line.extend_from_slice(&[b'x'; 4000]);
    line.extend_from_slice(b"\r\n");
    let addr = server(
        Script {
            greeting: b"220-hello\r\n".to_vec(),
            endless: Some((line, Duration::ZERO)),
            ..Script::default()
        },
        datas,
    )
    .await;
    let err = SmtpClient::connect(&config(addr)).await.unwrap_err();
    assert!(err.to_string().contains("more than 65536 bytes"), "{err}");
}

#[tokio::test]
async fn a_reply_that_trickles_forever_is_bounded_in_time() {
    let datas = Arc::default();
    let addr = server(
        Script {
            greeting: b"220-hello\r\n".to_vec(),
            endless: Some((b"220-still here\r\n".to_vec(), Duration::from_millis(50))),
            ..Script::default()
        },
        datas,
    )
    .await;
    let mut c = config(addr);
    // Each line comes well within it; the whole reply does not.
    c.timeout = Duration::from_secs(1);
    let err = SmtpClient::connect(&c).await.unwrap_err();
    assert!(
        matches!(&err, SmtpError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_password_names_the_login_and_the_password_causes() {
    for (credentials, mechanism, auth) in [
        (
            Credentials::Plain {
                user: "alice.smith".into(),
                password: SecretString::from("not the password"),
            },
            Mechanism::Plain,
            vec![&b"535 5.7.8 Error: \x1b[31mauthentication failed\x1b[0m\x07\r\n"[..]],
        ),
        (
            Credentials::Login {
                user: "alice.smith".into(),
                password: SecretString::from("not the password"),
            },
            Mechanism::Login,
            vec![
                &b"334 VXNlcm5hbWU6\r\n"[..],
                &b"334 UGFzc3dvcmQ6\r\n"[..],
                &b"535 5.7.3 Authentication unsuccessful\x1b]0;pwned\x07\r\n"[..],
            ],
        ),
    ] {
        let datas = Arc::default();
        let addr = server(
            Script {
                auth,
                ..Script::default()
            },
            datas,
        )
        .await;
        let mut c = SmtpClient::connect(&config(addr)).await.unwrap();
        let err = c.authenticate(&credentials).await.unwrap_err();
        let sign_in = err.sign_in().unwrap();
        assert_eq!(sign_in.mechanism, mechanism);
        assert_eq!(sign_in.login, "alice.smith");
        let text = err.to_string();
        assert!(text.contains("\"alice.smith\""), "{text}");
        assert!(
            text.contains("app password") && text.contains("Basic authentication"),
            "{text}"
        );
        assert!(!text.contains("SMTP.SendAsApp"), "no token advice: {text}");
        assert!(!text.contains("not the password"));
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
}

#[tokio::test]
async fn a_refused_token_names_the_mailbox_and_keeps_the_token_checklist() {
    let datas = Arc::default();
    let addr = server(
        Script {
            auth: vec![b"535 5.7.3 Authentication unsuccessful [SN4PR0501CA0123]\r\n"],
            ..Script::default()
        },
        datas,
    )
    .await;
    let mut c = SmtpClient::connect(&config(addr)).await.unwrap();
    let err = c
        .authenticate(&Credentials::XOAuth2 {
            user: "alice@contoso.example".into(),
            token: SecretString::from("t0ken"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.sign_in().unwrap().mechanism, Mechanism::XOAuth2);
    let text = err.to_string();
    assert!(
        text.contains("alice@contoso.example") && text.contains("SMTP.SendAsApp"),
        "{text}"
    );
}

/// A server that says 354 and then stops reading: the body's writes are not waited
/// for forever, and since the final `.` never went out the failure is an ordinary one.
#[tokio::test]
async fn a_server_that_stops_reading_the_body_is_not_waited_for_forever() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 ready\r\n").await.unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let answer: &[u8] = if line.starts_with("EHLO") {
                b"250-mx\r\n250 8BITMIME\r\n"
            } else if line.starts_with("DATA") {
                w.write_all(b"354 go\r\n").await.unwrap();
                // Never read again; keep the connection.
                tokio::time::sleep(Duration::from_mins(1)).await;
                return;
            } else {
                b"250 ok\r\n"
            };
            w.write_all(answer).await.unwrap();
        }
    });
    let mut config = config(addr);
    config.timeout = Duration::from_secs(1);
    let mut c = SmtpClient::connect(&config).await.unwrap();
    let body = tokio::io::repeat(b'x').take(512 * 1024 * 1024);
    let err = c
        .send("a@contoso.example", &["b@contoso.example".into()], body)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SmtpError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn no_auth_before_starttls_says_to_set_tls_to_starttls() {
    // smtp.office365.com:587 offers AUTH only after STARTTLS: with tls = none the
    // sign-in fails for the TLS mode, not as a refused credential.
    let script = Script {
        ehlo: b"250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
        ..Script::default()
    };
    let addr = server(script, Arc::default()).await;
    let mut client = SmtpClient::connect(&config(addr)).await.unwrap();
    let err = client
        .authenticate(&Credentials::Plain {
            user: "ops@contoso.example".into(),
            password: SecretString::from("pw"),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SmtpError::AuthOnlyAfterStartTls), "{err}");
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert!(err.to_string().contains("set TLS to STARTTLS"), "{err}");
}
