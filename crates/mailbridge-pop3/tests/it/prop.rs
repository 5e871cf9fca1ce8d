//! Property tests of the POP3 client against a scripted server on loopback
//! (`mailbridge_testkit::hostile`): a dot-stuffed `RETR` comes back as the original
//! message byte for byte, the XOAUTH2 blob decodes to exactly what was meant, and
//! garbage answers give errors, not panics.

use std::time::Duration;

use base64::Engine as _;
use mailbridge_pop3::{Credentials, Pop3Client, Pop3Config, Pop3Error, TlsMode};
use mailbridge_testkit::hostile::{HostileServer, Step};
use proptest::prelude::*;
use secrecy::SecretString;

/// A scripted server (`mailbridge_testkit::hostile`) that greets and then sends
/// `replies[i]` to the i-th command line, closing after the last; it records the
/// command lines it received.
async fn server(replies: Vec<Vec<u8>>) -> HostileServer {
    let mut script = vec![Step::Send(b"+OK POP3 ready\r\n".to_vec())];
    for reply in replies {
        script.extend([Step::ReadLine, Step::Send(reply)]);
    }
    script.push(Step::Close);
    HostileServer::start(script).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(server: &HostileServer) -> Result<Pop3Client, Pop3Error> {
    let mut config = Pop3Config::new("127.0.0.1", server.port(), TlsMode::None);
    config.timeout = Duration::from_secs(5);
    Pop3Client::connect(&config).await
}

/// USER + PASS, then `RETR 1` answered with `retr`; the result and the sink.
fn retr(retr: Vec<u8>) -> (Result<u64, Pop3Error>, Vec<u8>) {
    runtime().block_on(async {
        let srv = server(vec![b"+OK\r\n".to_vec(), b"+OK\r\n".to_vec(), retr]).await;
        let mut client = connect(&srv).await.unwrap();
        client
            .authenticate(&Credentials::UserPass {
                user: "u".into(),
                password: SecretString::from("p"),
            })
            .await
            .unwrap();
        let mut sink = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(20), client.retr(1, &mut sink))
            .await
            .expect("the client hung");
        (r, sink)
    })
}

/// RFC 1939 §3 as a server applies it: a line starting with "." gets another one, and
/// the message ends with a line of one ".".
fn dot_stuff(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"+OK message follows\r\n".to_vec();
    for l in lines {
        if l.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A message line: any bytes but LF, with dots and CRs more likely than chance.
fn message_line() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => any::<u8>().prop_filter("no LF", |b| *b != b'\n'),
            1 => Just(b'.'),
            1 => Just(b'\r'),
        ],
        0..120,
    )
}

#[test]
fn a_line_ending_in_cr_keeps_it() {
    // Found by `dot_stuffed_messages_come_back_unchanged` (with the line reader's fix):
    // "text\r\r\n" lost both CRs.
    let (r, sink) = retr(dot_stuff(&[b"text\r".to_vec(), b".".to_vec()]));
    assert_eq!(sink, b"text\r\r\n.\r\n");
    assert_eq!(r.unwrap(), 10);
}

fn pop_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"+OK".to_vec()),
        Just(b"-ERR".to_vec()),
        Just(b"+ ".to_vec()),
        Just(b" [AUTH] ".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"1 abc".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Dot unstuffing inverts dot stuffing: the message comes back byte for byte, and
    /// the size returned is the size written.
    #[test]
    fn dot_stuffed_messages_come_back_unchanged(
        lines in proptest::collection::vec(message_line(), 0..40)
    ) {
        let (r, sink) = retr(dot_stuff(&lines));
        let want: Vec<u8> = lines.iter().flat_map(|l| [l.as_slice(), b"\r\n"].concat()).collect();
        prop_assert_eq!(r.unwrap(), want.len() as u64);
        prop_assert_eq!(sink, want);
    }

    /// A message cut off before its terminating dot is an error, not a short message.
    #[test]
    fn truncated_messages_are_errors(
        lines in proptest::collection::vec(message_line(), 0..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let full = dot_stuff(&lines);
        // Keep the status line, drop at least the final ".\r\n".
        let status = b"+OK message follows\r\n".len();
        let end = status + cut.index(full.len() - 3 - status + 1);
        let (r, _) = retr(full.get(..end).unwrap().to_vec());
        let err = r.unwrap_err();
        prop_assert!(matches!(err, Pop3Error::Io { .. }), "{}", err);
    }

    /// Whatever the server answers to RETR, UIDL or STAT, the client returns a result.
    #[test]
    fn garbage_answers_never_panic(answer in pop_ish(), command in 0usize..3) {
        runtime().block_on(async {
            let srv = server(vec![answer]).await;
            let Ok(mut client) = connect(&srv).await else { return };
            let mut sink = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(20), async {
                match command {
                    0 => client.retr(1, &mut sink).await.map(|_| ()),
                    1 => client.uidl().await.map(|_| ()),
                    _ => client.stat().await.map(|_| ()),
                }
            })
            .await
            .expect("the client hung");
            if let Err(e) = r {
                assert!(!e.to_string().is_empty());
                let _ = e.class();
            }
        });
    }

    /// The XOAUTH2 blob is base64 of `user=U^Aauth=Bearer T^A^A`, whatever U and T are.
    #[test]
    fn xoauth2_blob_round_trips(user in "[!-~]{1,60}", token in "[!-~]{1,300}") {
        let (result, srv) = runtime().block_on(async {
            let srv = server(vec![b"+ \r\n".to_vec(), b"+OK signed in\r\n".to_vec()]).await;
            let mut client = connect(&srv).await.unwrap();
            let result = client
                .authenticate(&Credentials::XOAuth2 {
                    user: user.clone(),
                    token: SecretString::from(token.clone()),
                })
                .await;
            (result, srv)
        });
        prop_assert!(result.is_ok(), "{:?}", result);
        let heard: Vec<String> = srv.received_text().lines().map(str::to_owned).collect();
        prop_assert_eq!(heard.first().map(String::as_str), Some("AUTH XOAUTH2"));
        let blob = base64::engine::general_purpose::STANDARD
            .decode(heard.get(1).unwrap())
            .unwrap();
        prop_assert_eq!(blob, format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes());
    }
}

/// The pure parsers, without TCP.
mod pure {
    use mailbridge_pop3::response::{
        Body, ListEntry, ListingError, Status, UidlEntry, decode_body, parse_listing,
    };
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Dot stuffing undone in any chunking: the message comes back byte for byte,
        /// the terminator is found, and the bytes after it are left alone.
        #[test]
        fn body_decoding_inverts_stuffing_in_any_chunks(
            lines in proptest::collection::vec(super::message_line(), 0..40),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stuffed = super::dot_stuff(&lines);
            let stuffed = stuffed.get(b"+OK message follows\r\n".len()..).unwrap();
            let mut input = stuffed.to_vec();
            input.extend_from_slice(b"+OK next");
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len())).collect();
            cuts.sort_unstable();
            let mut body = Body::new(u64::MAX);
            let mut out = Vec::new();
            let mut at = 0;
            for end in cuts.into_iter().chain([input.len()]) {
                let end = end.max(at);
                let chunk = input.get(at..end).unwrap();
                let before = out.len();
                let used = body.decode(chunk, &mut out).unwrap();
                prop_assert!(used <= chunk.len());
                prop_assert!(out.len() - before <= 2 * used);
                at += used;
                if body.is_done() { break; }
            }
            let want: Vec<u8> =
                lines.iter().flat_map(|l| [l.as_slice(), b"\r\n"].concat()).collect();
            prop_assert!(body.is_done());
            prop_assert_eq!(input.get(at..).unwrap(), b"+OK next");
            prop_assert_eq!(body.size(), want.len() as u64);
            prop_assert_eq!(out, want);
        }

        /// A limit is never passed: the output is at most `max` bytes or an error.
        #[test]
        fn body_size_is_bounded(input in proptest::collection::vec(any::<u8>(), 0..2000), max in 0u64..1500) {
            match decode_body(&input, max) {
                Ok((out, used, _)) => {
                    prop_assert!(out.len() as u64 <= max);
                    prop_assert!(used <= input.len());
                }
                Err(e) => prop_assert_eq!(e.max, max),
            }
        }

        /// Listings: never more than `max` entries, never more bytes used than given,
        /// and any bytes give a result.
        #[test]
        fn listings_are_bounded(input in super::pop_ish(), max in 0u64..5) {
            match parse_listing::<UidlEntry>(&input, max) {
                Ok((items, used)) => {
                    prop_assert!(items.len() as u64 <= max);
                    prop_assert!(used <= input.len());
                }
                Err(ListingError::TooMany { max: m }) => prop_assert_eq!(m, max),
                Err(_) => {}
            }
            let _ = parse_listing::<ListEntry>(&input, max);
            let _ = Status::parse_bytes(&input);
        }
    }
}
