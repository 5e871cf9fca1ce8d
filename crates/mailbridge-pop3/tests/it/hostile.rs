//! Hostile POP3 servers on loopback: endless listings and messages, a trickle, a size
//! announced larger than the bound, refusals with escape sequences. Each must end in
//! an error that names the bound and its setting, never in unbounded memory or time.
//! Every server is a `mailbridge_testkit::hostile` script.

use std::time::Duration;

use mailbridge_pop3::{Credentials, Limit, Mechanism, Pop3Client, Pop3Config, Pop3Error, TlsMode};
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::SecretString;

/// What the server answers to one command.
#[derive(Clone)]
enum Answer {
    Bytes(&'static [u8]),
    /// `head`, then `repeat` again and again (with `pause` between) until the client
    /// goes away.
    Endless {
        head: &'static [u8],
        repeat: Vec<u8>,
        pause: Option<Duration>,
    },
}

/// A scripted server (`mailbridge_testkit::hostile`) that greets and answers the i-th
/// command with `answers[i]`, then waits for the client to leave; it records the
/// commands it heard.
async fn server(answers: Vec<Answer>) -> HostileServer {
    let mut script = vec![Step::Send(b"+OK POP3 ready\r\n".to_vec())];
    for answer in answers {
        script.push(Step::ReadLine);
        match answer {
            Answer::Bytes(b) => script.push(Step::Send(b.to_vec())),
            Answer::Endless {
                head,
                repeat,
                pause,
            } => {
                script.push(Step::Send(head.to_vec()));
                script.push(match pause {
                    Some(p) => Step::Trickle(repeat, p),
                    None => Step::Endless(repeat),
                });
            }
        }
    }
    HostileServer::start(script).await
}

async fn client(server: &HostileServer, limits: Limits) -> Pop3Client {
    let mut config = Pop3Config::new("127.0.0.1", server.port(), TlsMode::None);
    config.timeout = Duration::from_secs(10);
    config.limits = limits;
    Pop3Client::connect(&config).await.unwrap()
}

fn limits(adjust: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    adjust(&mut l);
    l
}

fn assert_limit(err: &Pop3Error, setting: &str) {
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err}");
    assert_eq!(err.limit().map(Limit::setting), Some(setting), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(setting),
        "the message names the setting: {text}"
    );
}

#[tokio::test]
async fn an_endless_uidl_listing_stops_at_max_list_items() {
    let srv = server(vec![Answer::Endless {
        head: b"+OK\r\n",
        repeat: b"1 abcdefghijklmnop\r\n".repeat(100),
        pause: None,
    }])
    .await;
    let mut c = client(&srv, limits(|l| l.max_list_items = 5_000)).await;
    let err = c.uidl().await.unwrap_err();
    assert_limit(&err, "limits.max_list_items");
    assert!(err.to_string().contains("5000 entries"), "{err}");
    assert!(!c.is_open(), "the session is out of step and closed");
}

#[tokio::test]
async fn an_endless_list_listing_stops_at_max_list_items() {
    let mut lines = Vec::new();
    for n in 1..=100u32 {
        lines.extend_from_slice(format!("{n} 1000\r\n").as_bytes());
    }
    let srv = server(vec![Answer::Endless {
        head: b"+OK\r\n",
        repeat: lines,
        pause: None,
    }])
    .await;
    let mut c = client(&srv, limits(|l| l.max_list_items = 1_000)).await;
    let err = c.list().await.unwrap_err();
    assert_limit(&err, "limits.max_list_items");
}

#[tokio::test]
async fn a_listing_that_trickles_forever_stops_at_the_time_per_command() {
    let srv = server(vec![Answer::Endless {
        head: b"+OK\r\n",
        repeat: b"1 a\r\n".to_vec(),
        pause: Some(Duration::from_millis(20)),
    }])
    .await;
    // Every line comes well within the per-answer timeout; only the command's own
    // bound ends it (the same number is listed again and again, but the listing is
    // checked for that only at its end).
    let mut c = client(&srv, limits(|l| l.command_timeout_secs = 1)).await;
    let err = c.uidl().await.unwrap_err();
    assert_limit(&err, "limits.command_timeout_secs");
}

#[tokio::test]
async fn an_endless_retr_stops_at_max_message_size_and_writes_no_more() {
    for repeat in [b"x".repeat(64 * 1024), b"a line\r\n".repeat(8 * 1024)] {
        let srv = server(vec![Answer::Endless {
            head: b"+OK message follows\r\n",
            repeat,
            pause: None,
        }])
        .await;
        let max = 1024 * 1024;
        let mut c = client(&srv, limits(|l| l.max_message_size = max)).await;
        let mut sink = Vec::new();
        let err = c.retr(1, &mut sink).await.unwrap_err();
        assert_limit(&err, "limits.max_message_size");
        assert!(err.to_string().contains("message 1"), "{err}");
        assert!(sink.len() as u64 <= max, "{} bytes written", sink.len());
        assert!(!c.is_open());
    }
}

#[tokio::test]
async fn a_message_announced_too_large_is_refused_before_retr_and_the_session_goes_on() {
    let srv = server(vec![
        Answer::Bytes(b"+OK 2 messages\r\n1 5000000000\r\n2 10\r\n.\r\n"),
        Answer::Bytes(b"+OK\r\nshort\r\n.\r\n"),
    ])
    .await;
    let mut c = client(&srv, Limits::default()).await;
    assert_eq!(c.list().await.unwrap(), [(1, 5_000_000_000), (2, 10)]);
    let mut sink = Vec::new();
    let err = c.retr(1, &mut sink).await.unwrap_err();
    assert_limit(&err, "limits.max_message_size");
    assert!(err.to_string().contains("5000000000"), "{err}");
    assert!(sink.is_empty());
    // The session is in step: the next message comes.
    assert_eq!(c.retr(2, &mut sink).await.unwrap(), 7);
    assert_eq!(sink, b"short\r\n");
    assert_eq!(srv.received_text(), "LIST\r\nRETR 2\r\n");
}

#[tokio::test]
async fn a_size_announced_small_is_not_trusted() {
    let srv = server(vec![
        Answer::Bytes(b"+OK\r\n1 10\r\n.\r\n"),
        Answer::Endless {
            head: b"+OK\r\n",
            repeat: b"y".repeat(4096),
            pause: None,
        },
    ])
    .await;
    let mut c = client(&srv, limits(|l| l.max_message_size = 100_000)).await;
    c.list().await.unwrap();
    let mut sink = Vec::new();
    let err = c.retr(1, &mut sink).await.unwrap_err();
    assert_limit(&err, "limits.max_message_size");
}

#[tokio::test]
async fn a_message_line_longer_than_a_status_line_is_fetched() {
    let long = "z".repeat(100_000);
    let answer: &'static [u8] = format!("+OK\r\nSubject: x\r\n\r\n{long}\r\n.\r\n")
        .into_bytes()
        .leak();
    let srv = server(vec![Answer::Bytes(answer)]).await;
    let mut c = client(&srv, Limits::default()).await;
    let mut sink = Vec::new();
    let n = c.retr(1, &mut sink).await.unwrap();
    assert_eq!(n, sink.len() as u64);
    assert_eq!(sink, format!("Subject: x\r\n\r\n{long}\r\n").into_bytes());
}

#[tokio::test]
async fn a_refused_password_names_the_login_and_the_password_causes() {
    let srv = server(vec![
        Answer::Bytes(b"+OK\r\n"),
        Answer::Bytes(b"-ERR [AUTH] Authentication failed.\x1b[2J\x1b]0;pwned\x07\r\n"),
    ])
    .await;
    let mut c = client(&srv, Limits::default()).await;
    let err = c
        .authenticate(&Credentials::UserPass {
            user: "alice.smith".into(),
            password: SecretString::from("not the password"),
        })
        .await
        .unwrap_err();
    let sign_in = err.sign_in().unwrap();
    assert_eq!(sign_in.mechanism, Mechanism::UserPass);
    assert_eq!(sign_in.login, "alice.smith");
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    let text = err.to_string();
    assert!(text.contains("\"alice.smith\""), "{text}");
    assert!(
        text.contains("app password") && text.contains("Basic authentication"),
        "{text}"
    );
    assert!(
        !text.contains("New-ServicePrincipal"),
        "no token advice: {text}"
    );
    assert!(!text.contains("not the password"), "{text}");
    assert!(
        !text.chars().any(char::is_control),
        "server text loses its escape sequences: {text:?}"
    );
}

#[tokio::test]
async fn a_refused_token_keeps_the_token_checklist_and_names_the_mailbox() {
    let srv = server(vec![
        Answer::Bytes(b"+ \r\n"),
        Answer::Bytes(b"-ERR Authentication failure: unknown user name or bad password.\r\n"),
    ])
    .await;
    let mut c = client(&srv, Limits::default()).await;
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
        text.contains("alice@contoso.example") && text.contains("POP.AccessAsApp"),
        "{text}"
    );
}

/// Env var that makes [`child_lists_an_endless_uidl`] do its work.
const MEMORY_CHILD: &str = "MAILBRIDGE_POP3_MEMORY_CHILD";

/// The child's part of [`an_endless_uidl_listing_is_bounded_in_memory_at_the_defaults`]:
/// lists an endless `UIDL` with the default limits and prints its peak memory. Does
/// nothing unless started by the parent.
#[test]
fn child_lists_an_endless_uidl() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = server(vec![Answer::Endless {
            head: b"+OK\r\n",
            repeat: b"1 AAMkADU3NzBmZjQ4LTVmMjEtNDI0Yy1hZjk1LTQ0\r\n".repeat(200),
            pause: None,
        }])
        .await;
        let mut c = client(&srv, Limits::default()).await;
        let err = c.uidl().await.unwrap_err();
        assert_limit(&err, "limits.max_list_items");
        println!("PEAK_KIB={}", mailbridge_testkit::memory::peak_kib());
    });
}

/// Measured before the bound: an endless `UIDL` reached 1.5 GB. With the default
/// limits (1,000,000 entries) the listing stops with a clear error, its memory far
/// below that.
#[test]
fn an_endless_uidl_listing_is_bounded_in_memory_at_the_defaults() {
    let (peak, stdout) = mailbridge_testkit::memory::child_peak_kib(
        "hostile::child_lists_an_endless_uidl",
        MEMORY_CHILD,
    );
    assert!(peak < 512 * 1024, "peak resident set {peak} KiB: {stdout}");
    eprintln!("{stdout}");
}
