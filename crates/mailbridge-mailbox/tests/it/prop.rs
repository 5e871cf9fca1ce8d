//! The encoder against the decoder: what `SmtpClient::send` puts on the wire in `DATA`
//! (dot stuffing, CR LF line ends, the final dot) is exactly what a POP3 server sends
//! for `RETR`, so `Pop3Client::retr` must return the message, line ends made CR LF.

use std::net::SocketAddr;
use std::time::Duration;

use mailbridge_pop3::{Pop3Client, Pop3Config};
use mailbridge_smtp::{SmtpClient, SmtpConfig};
use mailbridge_types::config::TlsMode;
use proptest::prelude::*;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::oneshot;

/// An SMTP server that accepts one message and hands over the raw DATA bytes,
/// final dot included.
async fn smtp_capture() -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 ready\r\n").await.unwrap();
        let mut tx = Some(tx);
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let reply: &[u8] = match line.get(..4) {
                Some(b"EHLO") => b"250-localhost\r\n250 8BITMIME\r\n",
                Some(b"DATA") => {
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                    let mut data = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                            return;
                        }
                        data.extend_from_slice(&l);
                        if l == b".\r\n" {
                            break;
                        }
                    }
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(data);
                    }
                    b"250 queued\r\n"
                }
                Some(b"QUIT") => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            if w.write_all(reply).await.is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

/// A POP3 server that answers `RETR` with `+OK` and `data` as it is.
async fn pop3_serving(data: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"+OK ready\r\n").await.unwrap();
        let mut line = Vec::new();
        let _ = r.read_until(b'\n', &mut line).await;
        let _ = w.write_all(b"+OK message follows\r\n").await;
        let _ = w.write_all(&data).await;
    });
    addr
}

fn round_trip(body: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (addr, rx) = smtp_capture().await;
        let mut config = SmtpConfig::new("127.0.0.1", addr.port(), TlsMode::None);
        config.timeout = Duration::from_secs(5);
        let mut smtp = SmtpClient::connect(&config).await.unwrap();
        smtp.send("a@example.org", &["b@example.org".to_owned()], body)
            .await
            .unwrap();
        let data = rx.await.unwrap();

        let addr = pop3_serving(data).await;
        let mut config = Pop3Config::new("127.0.0.1", addr.port(), TlsMode::None);
        config.timeout = Duration::from_secs(5);
        let mut pop = Pop3Client::connect(&config).await.unwrap();
        let mut out = Vec::new();
        let n = pop.retr(1, &mut out).await.unwrap();
        assert_eq!(n, out.len() as u64);
        out
    })
}

/// Every line end CR LF (a lone CR or LF is a line end), ending with one.
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'\r' if tail.first() == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                rest = tail.get(1..).unwrap_or_default();
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
        rest = tail;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn known_answers() {
    for (sent, got) in [
        (&b".\r\n"[..], &b".\r\n"[..]),
        (b"..\r\n.x", b"..\r\n.x\r\n"),
        (b"a\nb", b"a\r\nb\r\n"),
        (b"a\r\r\nb\r\n", b"a\r\n\r\nb\r\n"),
        (b"", b"\r\n"),
    ] {
        assert_eq!(round_trip(sent), got, "{:?}", String::from_utf8_lossy(sent));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn smtp_stuffing_then_pop3_unstuffing_is_the_identity(body in proptest::collection::vec(
        prop_oneof![4 => any::<u8>(), 2 => Just(b'.'), 1 => Just(b'\r'), 2 => Just(b'\n')],
        0..2000,
    )) {
        prop_assert_eq!(round_trip(&body), normalise(&body));
    }
}
