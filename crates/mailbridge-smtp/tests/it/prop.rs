//! Property tests of the SMTP client against a scripted server on loopback: multi-line
//! replies with mixed separators are read as RFC 5321 §4.2.1 says or refused clearly,
//! `DATA` dot stuffing is undone by a receiver's unstuffing to the message with CR LF
//! line ends, and the SASL blobs decode to exactly what was meant.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_smtp::{Credentials, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use proptest::prelude::*;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// What the scripted server heard: command lines, and each message's DATA lines.
#[derive(Debug, Default)]
struct Heard {
    lines: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
}

/// A submission server: `greeting`, then `ehlo` to EHLO, 334/235 to AUTH, 250 to MAIL,
/// RCPT and the end of DATA, 354 to DATA, 221 to QUIT; with `close_after`, it closes
/// the connection after answering that many commands (0: after the greeting).
async fn server(
    greeting: Vec<u8>,
    ehlo: Vec<u8>,
    heard: Arc<Mutex<Heard>>,
    close_after: Option<usize>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        if w.write_all(&greeting).await.is_err() {
            return;
        }
        let mut login_step = 0;
        let mut answered = 0;
        loop {
            if close_after.is_some_and(|n| answered >= n) {
                let _ = w.shutdown().await;
                return;
            }
            answered += 1;
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let text = String::from_utf8_lossy(&line)
                .trim_end()
                .to_ascii_uppercase();
            heard.lock().unwrap().lines.push(line.clone());
            let reply: Vec<u8> = if login_step > 0 {
                login_step += 1;
                if login_step == 2 {
                    b"334 UGFzc3dvcmQ6\r\n".to_vec()
                } else {
                    b"235 ok\r\n".to_vec()
                }
            } else if text.starts_with("EHLO") {
                ehlo.clone()
            } else if text == "AUTH LOGIN" {
                login_step = 1;
                b"334 VXNlcm5hbWU6\r\n".to_vec()
            } else if text.starts_with("AUTH") {
                b"235 2.7.0 ok\r\n".to_vec()
            } else if text == "DATA" {
                if w.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
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
                heard.lock().unwrap().data.push(data);
                b"250 2.0.0 queued\r\n".to_vec()
            } else if text == "QUIT" {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            } else {
                b"250 ok\r\n".to_vec()
            };
            if login_step > 2 {
                login_step = 0;
            }
            if w.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
    addr
}

const EHLO: &[u8] = b"250-localhost\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 8BITMIME\r\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(addr: SocketAddr) -> Result<SmtpClient, SmtpError> {
    let mut config = SmtpConfig::new("127.0.0.1", addr.port(), TlsMode::None);
    config.timeout = Duration::from_secs(5);
    tokio::time::timeout(Duration::from_secs(20), SmtpClient::connect(&config))
        .await
        .expect("the client hung")
}

/// One reply line as a generator makes it: code, separator, text.
#[derive(Debug, Clone)]
struct Line {
    code: String,
    sep: Option<char>,
    text: String,
}

impl Line {
    fn wire(&self) -> String {
        match self.sep {
            Some(c) => format!("{}{c}{}", self.code, self.text),
            None => self.code.clone(),
        }
    }
}

/// Mostly well-formed replies: a code (sometimes changing or malformed), `-` on every
/// line but the last, `' '` or nothing on the last; sometimes a wrong separator.
fn reply_lines() -> impl Strategy<Value = Vec<Line>> {
    let code = prop_oneof![
        8 => Just("220".to_owned()),
        1 => Just("554".to_owned()),
        1 => "[0-9]{3}",
        1 => "[0-9a-z]{0,4}",
    ];
    let sep = prop_oneof![
        6 => Just(Some('-')),
        3 => Just(Some(' ')),
        1 => Just(None),
        1 => Just(Some('x')),
        1 => Just(Some('\t')),
    ];
    proptest::collection::vec(
        (code, sep, "[ -~]{0,30}").prop_map(|(code, sep, text)| Line { code, sep, text }),
        1..8,
    )
    .prop_map(|mut lines| {
        // Most replies share one code, as servers send them.
        let first = lines.first().map(|l| l.code.clone()).unwrap_or_default();
        for l in &mut lines {
            if l.code.len() != 3 || l.code.starts_with('2') {
                l.code.clone_from(&first);
            }
        }
        // Nothing after the line that ends the reply (or breaks it): what follows would
        // be the next reply.
        if let Some(end) = lines.iter().position(|l| l.sep != Some('-')) {
            lines.truncate(end + 1);
        }
        lines
    })
}

/// RFC 5321 §4.2.1 as a model: the reply the lines make up, or `None` when they are not
/// one; the lines after the last one are not read.
fn model(lines: &[Line]) -> Option<(u16, Vec<String>)> {
    let mut code = None;
    let mut texts = Vec::new();
    for l in lines {
        if l.code.len() != 3 || !l.code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let c: u16 = l.code.parse().ok()?;
        if !(100..600).contains(&c) || code.is_some_and(|k| k != c) {
            return None;
        }
        code = Some(c);
        match l.sep {
            None => {
                texts.push(String::new());
                return Some((c, texts));
            }
            Some(' ') => {
                texts.push(l.text.clone());
                return Some((c, texts));
            }
            Some('-') => texts.push(l.text.clone()),
            Some(_) => return None,
        }
    }
    // Ran out of lines: the server closed the connection mid-reply.
    None
}

/// What a receiver does with DATA (RFC 5321 §4.5.2): drop one leading dot of a line.
fn unstuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// The message as it should arrive: every line end CR LF (a lone CR or LF is a line
/// end), ending with a line end.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'\r' if input.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn send(body: &[u8]) -> Vec<u8> {
    let heard: Arc<Mutex<Heard>> = Arc::default();
    runtime().block_on(async {
        let addr = server(
            b"220 ready\r\n".to_vec(),
            EHLO.to_vec(),
            heard.clone(),
            None,
        )
        .await;
        let mut client = connect(addr).await.unwrap();
        client
            .send("a@example.org", &["b@example.org".to_owned()], body)
            .await
            .unwrap();
        client.quit().await.unwrap();
    });
    let mut heard = heard.lock().unwrap();
    heard.data.pop().expect("no DATA received")
}

fn sasl_lines(credentials: &Credentials) -> Vec<Vec<u8>> {
    let heard: Arc<Mutex<Heard>> = Arc::default();
    runtime().block_on(async {
        let addr = server(
            b"220 ready\r\n".to_vec(),
            EHLO.to_vec(),
            heard.clone(),
            None,
        )
        .await;
        let mut client = connect(addr).await.unwrap();
        client.authenticate(credentials).await.unwrap();
    });
    let heard = heard.lock().unwrap();
    heard
        .lines
        .iter()
        .skip_while(|l| !l.starts_with(b"AUTH"))
        .map(|l| l.strip_suffix(b"\r\n").unwrap_or(l).to_vec())
        .collect()
}

fn decode(b64: &[u8]) -> Vec<u8> {
    STANDARD.decode(b64).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The greeting is read as the model reads it: a well-formed 220 connects, another
    /// code is refused with the server's lines, anything else is a protocol error.
    #[test]
    fn multi_line_greetings_follow_rfc_5321(lines in reply_lines()) {
        let mut wire = String::new();
        for l in &lines {
            wire.push_str(&l.wire());
            wire.push_str("\r\n");
        }
        let result = runtime().block_on(async {
            let heard = Arc::default();
            // A reply that is not complete would leave the client waiting for the rest.
            let close = model(&lines).is_none().then_some(0);
            let addr = server(wire.clone().into_bytes(), EHLO.to_vec(), heard, close).await;
            connect(addr).await
        });
        match (model(&lines), result) {
            (Some((code, texts)), Err(SmtpError::Refused { reply, .. })) => {
                prop_assert_eq!(reply.code, code);
                prop_assert_eq!(reply.lines, texts);
            }
            (Some((220, _)), Ok(_)) | (None, Err(SmtpError::Protocol { .. } | SmtpError::Io { .. })) => {}
            (want, got) => prop_assert!(false, "{wire:?}: model {want:?}, client {got:?}"),
        }
    }

    /// Arbitrary bytes as EHLO answer: a result, never a panic or a hang.
    #[test]
    fn garbage_ehlo_answers_never_panic(ehlo in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n'), Just(b'-'), Just(b'2'), Just(b'5'), Just(b' ')], 0..200)
    ) {
        let result = runtime().block_on(async {
            let heard = Arc::default();
            let addr = server(b"220 ready\r\n".to_vec(), ehlo, heard, Some(1)).await;
            connect(addr).await
        });
        if let Err(e) = result {
            prop_assert!(!e.to_string().is_empty());
            let _ = e.class();
        }
    }

    /// DATA as sent, unstuffed by the receiver, is the message with CR LF line ends.
    #[test]
    fn dot_stuffing_round_trips_through_unstuffing(body in proptest::collection::vec(
        prop_oneof![4 => any::<u8>(), 2 => Just(b'.'), 1 => Just(b'\r'), 2 => Just(b'\n')], 0..600)
    ) {
        let data = send(&body);
        prop_assert_eq!(unstuff(&data), normalise(&body));
    }

    /// AUTH PLAIN, LOGIN and XOAUTH2 blobs decode to exactly the credentials.
    #[test]
    fn sasl_blobs_round_trip(user in "[!-~]{1,40}", secret in "[ -~]{1,200}") {
        let lines = sasl_lines(&Credentials::Plain {
            user: user.clone(),
            password: SecretString::from(secret.clone()),
        });
        let blob = lines.first().and_then(|l| l.strip_prefix(b"AUTH PLAIN ")).unwrap();
        prop_assert_eq!(decode(blob), format!("\0{user}\0{secret}").into_bytes());

        let lines = sasl_lines(&Credentials::Login {
            user: user.clone(),
            password: SecretString::from(secret.clone()),
        });
        prop_assert_eq!(lines.first().map(Vec::as_slice), Some(b"AUTH LOGIN".as_slice()));
        prop_assert_eq!(decode(lines.get(1).unwrap()), user.clone().into_bytes());
        prop_assert_eq!(decode(lines.get(2).unwrap()), secret.clone().into_bytes());

        let lines = sasl_lines(&Credentials::XOAuth2 {
            user: user.clone(),
            token: SecretString::from(secret.clone()),
        });
        let blob = lines.first().and_then(|l| l.strip_prefix(b"AUTH XOAUTH2 ")).unwrap();
        prop_assert_eq!(decode(blob), format!("user={user}\x01auth=Bearer {secret}\x01\x01").into_bytes());
    }
}
