//! Property tests of the SMTP client against a scripted server on loopback
//! (`mailbridge_testkit::hostile`): multi-line
//! replies with mixed separators are read as RFC 5321 §4.2.1 says or refused clearly,
//! `DATA` dot stuffing is undone by a receiver's unstuffing to the message with CR LF
//! line ends, and the SASL blobs decode to exactly what was meant.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_smtp::{Credentials, SmtpClient, SmtpConfig, SmtpError, TlsMode};
use mailbridge_testkit::hostile::{HostileServer, Step};
use proptest::prelude::*;
use secrecy::SecretString;

/// A scripted server (`mailbridge_testkit::hostile`): `greeting`, then `then`.
async fn server(greeting: Vec<u8>, then: Vec<Step>) -> HostileServer {
    let mut script = vec![Step::Send(greeting)];
    script.extend(then);
    HostileServer::start(script).await
}

/// EHLO answered with `ehlo`.
fn ehlo(ehlo: &[u8]) -> Vec<Step> {
    vec![Step::ReadLine, Step::Send(ehlo.to_vec())]
}

/// Each line the client sends answered with the next of `replies`.
fn answers(replies: &[&[u8]]) -> Vec<Step> {
    replies
        .iter()
        .flat_map(|r| [Step::ReadLine, Step::Send(r.to_vec())])
        .collect()
}

const EHLO: &[u8] = b"250-localhost\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 8BITMIME\r\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(server: &HostileServer) -> Result<SmtpClient, SmtpError> {
    let mut config = SmtpConfig::new("127.0.0.1", server.port(), TlsMode::None);
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
    let srv = runtime().block_on(async {
        let mut then = ehlo(EHLO);
        then.extend(answers(&[
            b"250 ok\r\n",
            b"250 ok\r\n",
            b"354 go ahead\r\n",
        ]));
        then.extend([
            Step::ReadUntil(b".\r\n".to_vec()),
            Step::Send(b"250 2.0.0 queued\r\n".to_vec()),
        ]);
        then.extend(answers(&[b"221 bye\r\n"]));
        let srv = server(b"220 ready\r\n".to_vec(), then).await;
        let mut client = connect(&srv).await.unwrap();
        client
            .send("a@example.org", &["b@example.org".to_owned()], body)
            .await
            .unwrap();
        client.quit().await.unwrap();
        srv
    });
    // What came between DATA and the final dot (the envelope before it holds no
    // `DATA` line).
    let heard = srv.received();
    let start = heard
        .windows(8)
        .position(|w| w == b"\r\nDATA\r\n")
        .expect("no DATA received")
        + 8;
    heard[start..]
        .strip_suffix(b".\r\nQUIT\r\n")
        .expect("the final dot, then QUIT")
        .to_vec()
}

fn sasl_lines(credentials: &Credentials) -> Vec<Vec<u8>> {
    let srv = runtime().block_on(async {
        let mut then = ehlo(EHLO);
        then.extend(match credentials {
            Credentials::Login { .. } => answers(&[
                b"334 VXNlcm5hbWU6\r\n",
                b"334 UGFzc3dvcmQ6\r\n",
                b"235 ok\r\n",
            ]),
            _ => answers(&[b"235 2.7.0 ok\r\n"]),
        });
        let srv = server(b"220 ready\r\n".to_vec(), then).await;
        let mut client = connect(&srv).await.unwrap();
        client.authenticate(credentials).await.unwrap();
        srv
    });
    srv.received()
        .split_inclusive(|b| *b == b'\n')
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
            // A reply that is not complete would leave the client waiting for the rest.
            let then = if model(&lines).is_none() { vec![Step::Close] } else { ehlo(EHLO) };
            let srv = server(wire.clone().into_bytes(), then).await;
            connect(&srv).await
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
    fn garbage_ehlo_answers_never_panic(answer in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n'), Just(b'-'), Just(b'2'), Just(b'5'), Just(b' ')], 0..200)
    ) {
        let result = runtime().block_on(async {
            let mut then = ehlo(&answer);
            then.push(Step::Close);
            let srv = server(b"220 ready\r\n".to_vec(), then).await;
            connect(&srv).await
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
