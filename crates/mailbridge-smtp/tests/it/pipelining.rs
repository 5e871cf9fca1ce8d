//! `PIPELINING` (RFC 2920) against a scripted server on loopback: with the keyword the
//! envelope (`MAIL FROM`, every `RCPT TO`, `DATA`) arrives in one write and the server
//! answers only then, all replies at once; without it the client waits for each reply.
//! Either way each reply is taken as the answer to its own command: a refused
//! `MAIL FROM` first, then the first refused recipient (its address and reply), then
//! `DATA`; a refused message is never sent, and the session stays usable unless the
//! client had to drop a `DATA` the server had already accepted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbridge_smtp::{SmtpClient, SmtpConfig, SmtpError, TlsMode};
use proptest::prelude::*;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// How the server answers one envelope.
#[derive(Debug, Clone)]
struct Script {
    pipelining: bool,
    mail: u16,
    rcpts: Vec<u16>,
    data: u16,
    /// Close the connection right after answering `MAIL FROM` (a 421 goodbye).
    hang_up_after_mail: bool,
}

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    commands: Vec<String>,
    /// A command arrived while the previous one was still unanswered (without
    /// PIPELINING), or the envelope came in pieces (with it).
    out_of_turn: bool,
    messages: Vec<Vec<u8>>,
}

fn reply(code: u16) -> String {
    format!("{code} {}\r\n", if code < 400 { "ok" } else { "no" })
}

async fn server(script: Script, seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let ehlo = if script.pipelining {
            "250-localhost\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        } else {
            "250-localhost\r\n250 8BITMIME\r\n"
        };
        if w.write_all(b"220 ready\r\n").await.is_err() {
            return;
        }
        let mut next_rcpt = 0;
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = String::from_utf8_lossy(&line).trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let more_waiting = !r.buffer().is_empty();
            seen.lock().unwrap().commands.push(command.clone());
            let mut out = String::new();
            if upper.starts_with("EHLO") {
                out.push_str(ehlo);
            } else if upper.starts_with("MAIL FROM") {
                if script.pipelining {
                    // Everything up to DATA must be here already: read it before
                    // answering anything (a client waiting for the MAIL reply hangs).
                    let expected = script.rcpts.len() + 1;
                    let mut rest = Vec::new();
                    while rest.len() < expected && !r.buffer().is_empty() {
                        let mut l = Vec::new();
                        if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                            return;
                        }
                        rest.push(String::from_utf8_lossy(&l).trim_end().to_owned());
                    }
                    if rest.len() < expected {
                        seen.lock().unwrap().out_of_turn = true;
                        while rest.len() < expected {
                            let mut l = Vec::new();
                            if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                                return;
                            }
                            rest.push(String::from_utf8_lossy(&l).trim_end().to_owned());
                        }
                    }
                    seen.lock().unwrap().commands.extend(rest);
                    out.push_str(&reply(script.mail));
                    if script.hang_up_after_mail {
                        let _ = w.write_all(out.as_bytes()).await;
                        return;
                    }
                    for &c in &script.rcpts {
                        out.push_str(&reply(c));
                    }
                    out.push_str(&reply(script.data));
                } else {
                    if more_waiting {
                        seen.lock().unwrap().out_of_turn = true;
                    }
                    out.push_str(&reply(script.mail));
                    if script.hang_up_after_mail {
                        let _ = w.write_all(out.as_bytes()).await;
                        return;
                    }
                }
            } else if upper.starts_with("RCPT TO") {
                if more_waiting {
                    seen.lock().unwrap().out_of_turn = true;
                }
                out.push_str(&reply(script.rcpts.get(next_rcpt).copied().unwrap_or(503)));
                next_rcpt += 1;
            } else if upper == "DATA" {
                if more_waiting {
                    seen.lock().unwrap().out_of_turn = true;
                }
                out.push_str(&reply(script.data));
            } else if upper == "RSET" {
                next_rcpt = 0;
                out.push_str("250 reset\r\n");
            } else if upper == "QUIT" {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            } else {
                out.push_str("500 what\r\n");
            }
            if w.write_all(out.as_bytes()).await.is_err() {
                return;
            }
            // The reply to DATA ends the batch: a 354 is followed by the message.
            if out.ends_with(&reply(354)) {
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                seen.lock().unwrap().messages.push(data);
                if w.write_all(b"250 2.0.0 queued\r\n").await.is_err() {
                    return;
                }
            }
        }
    });
    addr
}

/// What the client should report: `Ok`, or the step and code (and the address for a
/// recipient) of the refusal, as if the commands had gone one by one.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    Refused(&'static str, u16),
    Recipient(String, u16),
}

fn address(i: usize) -> String {
    format!("r{i}@example.org")
}

fn model(s: &Script) -> Outcome {
    if s.mail != 250 {
        return Outcome::Refused("MAIL FROM", s.mail);
    }
    // 251 "user not local; will forward" is a success (RFC 5321 §4.2.2).
    if let Some((i, &c)) = s
        .rcpts
        .iter()
        .enumerate()
        .find(|(_, c)| !matches!(**c, 250 | 251))
    {
        return Outcome::Recipient(address(i), c);
    }
    if s.data != 354 {
        return Outcome::Refused("DATA", s.data);
    }
    Outcome::Sent
}

fn scripts() -> impl Strategy<Value = Script> {
    (
        any::<bool>(),
        prop_oneof![6 => Just(250u16), 1 => Just(550), 1 => Just(421), 1 => Just(451)],
        proptest::collection::vec(
            prop_oneof![
                6 => Just(250u16),
                1 => Just(251),
                1 => Just(550),
                1 => Just(450),
                1 => Just(501)
            ],
            1..6,
        ),
        prop_oneof![4 => Just(354u16), 1 => Just(554), 1 => Just(503), 1 => Just(451)],
        any::<bool>(),
    )
        .prop_map(|(pipelining, mail, rcpts, data, hang_up)| Script {
            pipelining,
            mail,
            rcpts,
            data,
            hang_up_after_mail: hang_up && mail == 421,
        })
}

struct Run {
    outcome: Result<Outcome, String>,
    open_after: bool,
    reset: Result<(), String>,
}

fn run(script: &Script, seen: Arc<Mutex<Seen>>) -> Run {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = server(script.clone(), seen).await;
        let mut config = SmtpConfig::new("127.0.0.1", addr.port(), TlsMode::None);
        config.timeout = Duration::from_secs(5);
        let mut client = SmtpClient::connect(&config).await.unwrap();
        assert_eq!(client.has_capability("PIPELINING"), script.pipelining);
        let recipients: Vec<String> = (0..script.rcpts.len()).map(address).collect();
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            client.send(
                "a@example.org",
                &recipients,
                &b"Subject: x\r\n\r\n.dot\r\nbody\r\n"[..],
            ),
        )
        .await
        .expect("the client hung");
        let outcome = match result {
            Ok(_) => Ok(Outcome::Sent),
            Err(SmtpError::Refused { step, reply, .. }) => Ok(Outcome::Refused(step, reply.code)),
            Err(SmtpError::RecipientRefused { address, reply }) => {
                Ok(Outcome::Recipient(address, reply.code))
            }
            Err(other) => Err(other.to_string()),
        };
        let open_after = client.is_open();
        let reset = client.reset().await.map_err(|e| e.to_string());
        Run {
            outcome,
            open_after,
            reset,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn each_reply_answers_its_own_command(script in scripts()) {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let got = run(&script, seen.clone());
        let want = model(&script);
        prop_assert_eq!(got.outcome.as_ref(), Ok(&want), "{:?}", script);
        let seen = seen.lock().unwrap();
        prop_assert!(!seen.out_of_turn, "{:?}: {:?}", script, seen.commands);
        // The message went out exactly when every step said yes, dots stuffed.
        let sent = usize::from(want == Outcome::Sent);
        prop_assert_eq!(seen.messages.len(), sent);
        if sent == 1 {
            prop_assert_eq!(&seen.messages[0][..], &b"Subject: x\r\n\r\n..dot\r\nbody\r\n"[..]);
        }
        let envelope: Vec<&String> = seen
            .commands
            .iter()
            .filter(|c| !c.starts_with("EHLO") && c.as_str() != "RSET")
            .collect();
        if script.pipelining {
            // The whole envelope, in order, whatever the answers.
            let mut expected = vec!["MAIL FROM:<a@example.org>".to_owned()];
            expected.extend((0..script.rcpts.len()).map(|i| format!("RCPT TO:<{}>", address(i))));
            expected.push("DATA".to_owned());
            prop_assert_eq!(envelope, expected.iter().collect::<Vec<_>>());
        } else {
            // One by one, stopping at the first refusal.
            let stop = match &want {
                Outcome::Refused("MAIL FROM", _) => 1,
                Outcome::Recipient(a, _) => 2 + (0..script.rcpts.len()).position(|i| &address(i) == a).unwrap(),
                _ => 2 + script.rcpts.len(),
            };
            prop_assert_eq!(envelope.len(), stop, "{:?}", seen.commands);
        }
        // The connection is dropped only to stop a DATA the server said 354 to (or
        // by a server that hung up); otherwise RSET works for the next message.
        let must_drop = script.pipelining && want != Outcome::Sent && script.data == 354 && !script.hang_up_after_mail;
        if script.hang_up_after_mail {
            prop_assert!(got.reset.is_err());
        } else if must_drop {
            prop_assert!(!got.open_after);
            prop_assert!(got.reset.is_err());
        } else {
            prop_assert!(got.open_after);
            prop_assert!(got.reset.is_ok(), "{:?}", got.reset);
        }
    }
}

#[test]
fn every_recipient_refused_is_reported_not_the_data_refusal() {
    let script = Script {
        pipelining: true,
        mail: 250,
        rcpts: vec![550, 450],
        data: 554,
        hang_up_after_mail: false,
    };
    let got = run(&script, Arc::default());
    assert_eq!(got.outcome, Ok(Outcome::Recipient(address(0), 550)));
    assert!(got.open_after);
    assert!(got.reset.is_ok());
}

/// More recipients than [`mailbridge_smtp::client::MAX_PIPELINED_RECIPIENTS`]: the
/// envelope goes command by command even though the server offers `PIPELINING`, so the
/// replies waiting to be read never outgrow the socket buffers; every recipient is
/// still accepted and the message delivered once.
#[tokio::test]
async fn a_very_large_envelope_is_not_pipelined() {
    let recipients: Vec<String> = (0..=mailbridge_smtp::client::MAX_PIPELINED_RECIPIENTS)
        .map(address)
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 ready\r\n").await.unwrap();
        let (mut out_of_turn, mut rcpts, mut delivered) = (false, 0usize, 0usize);
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                break;
            }
            let upper = String::from_utf8_lossy(&line)
                .trim_end()
                .to_ascii_uppercase();
            if !r.buffer().is_empty() && !upper.starts_with("EHLO") {
                out_of_turn = true;
            }
            let answer: &[u8] = if upper.starts_with("EHLO") {
                b"250-localhost\r\n250 PIPELINING\r\n"
            } else if upper.starts_with("RCPT TO") {
                rcpts += 1;
                b"250 ok\r\n"
            } else if upper == "DATA" {
                w.write_all(b"354 go\r\n").await.unwrap();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 || l == b".\r\n" {
                        break;
                    }
                }
                delivered += 1;
                b"250 queued\r\n"
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            w.write_all(answer).await.unwrap();
        }
        (out_of_turn, rcpts, delivered)
    });
    let mut config = SmtpConfig::new("127.0.0.1", addr.port(), TlsMode::None);
    config.timeout = Duration::from_secs(20);
    let mut client = SmtpClient::connect(&config).await.unwrap();
    assert!(client.has_capability("PIPELINING"));
    client
        .send(
            "sender@example.org",
            &recipients,
            &b"Subject: many\r\n\r\nhello\r\n"[..],
        )
        .await
        .unwrap();
    client.quit().await.unwrap();
    let (out_of_turn, rcpts, delivered) = server.await.unwrap();
    assert!(!out_of_turn, "a command came before the previous reply");
    assert_eq!((rcpts, delivered), (recipients.len(), 1));
}
