//! A hostile server that keeps talking: endless untagged lines, endless continuation
//! requests, escape sequences in its refusals. The client ends each command within
//! its bounds with an error that says which bound, instead of hanging or growing.

use std::time::Duration;

use mailbridge_imap::{Credentials, ImapClient, ImapConfig, ImapError, TlsMode};
use mailbridge_testkit::hostile::imap::{ImapAnswer, serve};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::SecretString;

/// What the server does after signing in.
#[derive(Clone, Copy)]
enum Hostility {
    /// `* OK still here` every 20 ms, forever.
    SlowUntagged,
    /// 1 KB untagged lines as fast as the connection takes them, forever.
    FastUntagged,
    /// `+ more` as fast as the connection takes them, forever.
    Continuations,
    /// `* n FETCH (FLAGS ())` about other messages every 20 ms, forever.
    SlowFetchNoise,
    /// A refusal with terminal escape sequences.
    EscapeSequences,
}

async fn server(hostility: Hostility) -> u16 {
    let (port, _) = serve(move |tag, command| {
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("CAPABILITY") || upper.starts_with("LOGIN") {
            return ImapAnswer::text(format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"));
        }
        let slow = Some(Duration::from_millis(20));
        match hostility {
            Hostility::SlowUntagged => ImapAnswer::repeat(*b"* OK still here\r\n", slow),
            Hostility::FastUntagged => {
                ImapAnswer::repeat(format!("* OK {}\r\n", "x".repeat(1000)), None)
            }
            Hostility::Continuations => ImapAnswer::repeat(*b"+ more\r\n", None),
            Hostility::SlowFetchNoise => ImapAnswer::Forever {
                make: Box::new(|n| format!("* {n} FETCH (FLAGS ())\r\n").into_bytes()),
                pause: slow,
            },
            Hostility::EscapeSequences => ImapAnswer::text(format!(
                "{tag} NO \x1b]0;owned\x07\x1b[31mno such\r folder\x1b[0m\r\n"
            )),
        }
    })
    .await;
    port
}

async fn signed_in(port: u16, command_timeout_secs: u64) -> ImapClient {
    let mut config = ImapConfig::new("127.0.0.1", port, TlsMode::None);
    config.timeout = Duration::from_secs(5);
    config.limits = Limits {
        command_timeout_secs,
        ..Limits::default()
    };
    let mut client = ImapClient::connect(&config).await.unwrap();
    client
        .authenticate(&Credentials::Login {
            user: "u".into(),
            password: SecretString::from("p"),
        })
        .await
        .unwrap();
    client
}

/// `SELECT` against `hostility`; the error, within 60 s or the test fails as a hang.
async fn select_error(hostility: Hostility, command_timeout_secs: u64) -> ImapError {
    let mut client = signed_in(server(hostility).await, command_timeout_secs).await;
    tokio::time::timeout(Duration::from_mins(1), client.select("INBOX"))
        .await
        .expect("the client hung on a server that keeps talking")
        .unwrap_err()
}

#[tokio::test]
async fn a_server_that_keeps_sending_untagged_lines_is_cut_off_at_the_command_time() {
    let err = select_error(Hostility::SlowUntagged, 1).await;
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("limits.command_timeout_secs") && text.contains("SELECT"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_that_floods_untagged_lines_is_cut_off_at_the_byte_bound() {
    let err = select_error(Hostility::FastUntagged, 3_600).await;
    assert!(matches!(err, ImapError::Flooded { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err}");
    assert!(err.to_string().contains("bytes of responses"), "{err}");
}

#[tokio::test]
async fn a_server_that_keeps_asking_for_more_is_cut_off() {
    let err = select_error(Hostility::Continuations, 3_600).await;
    assert!(matches!(err, ImapError::Flooded { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err}");
    assert!(err.to_string().contains("continuation requests"), "{err}");
}

#[tokio::test]
async fn a_fetch_drowned_in_noise_about_other_messages_ends_at_the_command_time() {
    let mut client = signed_in(server(Hostility::SlowFetchNoise).await, 1).await;
    let mut sink = Vec::new();
    let err = tokio::time::timeout(Duration::from_mins(1), client.fetch(7, &mut sink))
        .await
        .expect("the client hung")
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err}");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn refusal_texts_lose_their_escape_sequences() {
    let err = select_error(Hostility::EscapeSequences, 3_600).await;
    let text = err.to_string();
    assert!(text.contains("no such folder"), "{text}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
}
