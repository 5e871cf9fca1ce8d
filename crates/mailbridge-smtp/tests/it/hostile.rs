//! Hostile SMTP servers on loopback: one that swallows the final `.` or hangs up
//! after it (the message may be accepted: outcome unknown, never "retry later"), one
//! whose multi-line reply never ends or trickles, and refusals of a password with
//! escape sequences in their text. Every server is a `mailbridge_testkit::hostile`
//! script.

use std::time::Duration;

use mailbridge_smtp::{Credentials, Mechanism, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use tokio::io::AsyncReadExt as _;

/// After the final `.` of DATA.
#[derive(Debug, Clone, Copy)]
enum AfterDot {
    /// Say nothing, keep the connection open.
    Swallow,
    /// Close the connection.
    HangUp,
}

fn send(bytes: &[u8]) -> Step {
    Step::Send(bytes.to_vec())
}

/// EHLO's answer unless a test says otherwise.
const EHLO: &[u8] = b"250-mx\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 8BITMIME\r\n";

/// The greeting, then `ehlo` to EHLO.
fn greeted(ehlo: &[u8]) -> Vec<Step> {
    vec![send(b"220 ready\r\n"), Step::ReadLine, send(ehlo)]
}

/// [`greeted`], then each AUTH line the client sends answered in turn.
fn auth_script(answers: &[&[u8]]) -> Vec<Step> {
    let mut script = greeted(EHLO);
    for a in answers {
        script.extend([Step::ReadLine, send(a)]);
    }
    script
}

/// [`greeted`], then `MAIL FROM` and `RCPT TO` accepted and `DATA` answered 354.
fn to_data(ehlo: &[u8]) -> Vec<Step> {
    let mut script = greeted(ehlo);
    script.extend([
        Step::ReadLine,
        send(b"250 ok\r\n"),
        Step::ReadLine,
        send(b"250 ok\r\n"),
        Step::ReadLine,
        send(b"354 go\r\n"),
    ]);
    script
}

fn config(server: &HostileServer) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", server.port(), TlsMode::None);
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
        let mut script = to_data(EHLO);
        script.push(Step::ReadUntil(b".\r\n".to_vec()));
        match after_dot {
            // The script ends: the server holds the connection until the client leaves.
            AfterDot::Swallow => {}
            AfterDot::HangUp => script.push(Step::Close),
        }
        let server = HostileServer::start(script).await;
        let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
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
        assert_eq!(
            server.received_text().matches("\r\nDATA\r\n").count(),
            1,
            "{after_dot:?}"
        );
    }
}

#[tokio::test]
async fn an_endless_multi_line_reply_is_bounded_in_lines() {
    let server = HostileServer::start(vec![
        send(b"220-hello\r\n"),
        Step::Endless(b"220-and more\r\n".repeat(50)),
    ])
    .await;
    let err = SmtpClient::connect(&config(&server)).await.unwrap_err();
    assert!(matches!(err, SmtpError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("more than 256 lines"), "{err}");
}

#[tokio::test]
async fn an_endless_reply_of_long_lines_is_bounded_in_bytes() {
    let mut line = b"220-".to_vec();
    line.extend_from_slice(&[b'x'; 4000]);
    line.extend_from_slice(b"\r\n");
    let server = HostileServer::start(vec![send(b"220-hello\r\n"), Step::Endless(line)]).await;
    let err = SmtpClient::connect(&config(&server)).await.unwrap_err();
    assert!(err.to_string().contains("more than 65536 bytes"), "{err}");
}

#[tokio::test]
async fn a_reply_that_trickles_forever_is_bounded_in_time() {
    let server = HostileServer::start(vec![
        send(b"220-hello\r\n"),
        Step::Trickle(b"220-still here\r\n".to_vec(), Duration::from_millis(50)),
    ])
    .await;
    let mut c = config(&server);
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
    for (credentials, mechanism, answers) in [
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
        let server = HostileServer::start(auth_script(&answers)).await;
        let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
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
    let server = HostileServer::start(auth_script(&[
        b"535 5.7.3 Authentication unsuccessful [SN4PR0501CA0123]\r\n",
    ]))
    .await;
    let mut c = SmtpClient::connect(&config(&server)).await.unwrap();
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
    let mut script = to_data(b"250-mx\r\n250 8BITMIME\r\n");
    // Never read again; keep the connection.
    script.push(Step::Deaf(Duration::from_mins(1)));
    let server = HostileServer::start(script).await;
    let mut config = config(&server);
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
    let server = HostileServer::start(greeted(b"250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n")).await;
    let mut client = SmtpClient::connect(&config(&server)).await.unwrap();
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
