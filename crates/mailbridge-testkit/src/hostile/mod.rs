//! Scripted hostile servers: a TCP server on `127.0.0.1:0` that plays a script to
//! each connection, for tests that hold a client to its bounds against a server that
//! lies, stalls or never stops talking (issue 9's hostile-server tests). The script
//! speaks bytes, so one server serves IMAP, POP3, SMTP or HTTP/1.1.
//!
//! ```no_run
//! # async fn demo() {
//! use mailbridge_testkit::hostile::{HostileServer, Step};
//! // An IMAP server that greets, accepts any LOGIN, then answers SELECT with
//! // untagged lines forever.
//! let server = HostileServer::start(vec![
//!     Step::Send(b"* OK ready\r\n".to_vec()),
//!     Step::ReplyTagged("OK LOGIN done".into()),
//!     Step::Endless(b"* 1 EXISTS\r\n".to_vec()),
//! ])
//! .await;
//! # let _ = server.addr();
//! # }
//! ```
//!
//! Everything a client sends is recorded ([`HostileServer::received`]) so a test can
//! check what reached the server (for example that no token did).
//!
//! [`http`] is the HTTP/1.1 counterpart for Graph and EWS: each request is recorded and
//! answered by a function of its number and head, with a fixed body or a body generated
//! piece by piece until the generator stops (a `$value` that never ends). [`imap`]
//! answers each tagged IMAP command by a function of its tag and text.

pub mod http;
pub mod imap;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One step of a script, played in order to each connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one line from the client (recorded); the script ends if the client closes.
    ReadLine,
    /// Read one line and answer it with its own IMAP tag: `<tag> <text>\r\n`.
    ReplyTagged(String),
    /// Read lines (recorded) until one is exactly these bytes (SMTP's `.\r\n` after
    /// `DATA`); the script ends if the client closes first.
    ReadUntil(Vec<u8>),
    /// Write these bytes again and again until the client goes away or `limit` bytes
    /// were written (`Endless` stops at 8 GiB).
    Endless(Vec<u8>),
    /// Write these bytes again and again with this pause between, until the client
    /// goes away (a reply or listing that trickles forever).
    Trickle(Vec<u8>, Duration),
    /// Write this many bytes of filler (`x`, with CRLF every 76 bytes).
    Filler(u64),
    /// Say nothing for this long (reading and recording what arrives meanwhile).
    Stall(Duration),
    /// Neither read nor write for this long: the client's writes fill the socket
    /// buffers and then wait (a server that stopped reading).
    Deaf(Duration),
    /// Close the connection.
    Close,
}

/// A running scripted server; stops when dropped.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<u32>>,
    ended: Arc<tokio::sync::watch::Sender<u32>>,
    task: tokio::task::JoinHandle<()>,
}

/// The bytes `Endless` writes at most.
const ENDLESS_LIMIT: u64 = 8 << 30;

impl HostileServer {
    /// Starts the server; every connection plays `script` from the start.
    pub async fn start(script: Vec<Step>) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let script = Arc::new(script);
        let ended = Arc::new(tokio::sync::watch::Sender::new(0u32));
        let (rec, conns, done) = (received.clone(), connections.clone(), ended.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *conns.lock().expect("lock") += 1;
                let (script, rec, done) = (script.clone(), rec.clone(), done.clone());
                tokio::spawn(async move {
                    let _ = play(stream, &script, &rec).await;
                    done.send_modify(|n| *n += 1);
                });
            }
        });
        HostileServer {
            addr,
            received,
            connections,
            ended,
            task,
        }
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything clients sent so far, all connections together.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().expect("lock").clone()
    }

    /// Everything clients sent so far, as text (lossy).
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> u32 {
        *self.connections.lock().expect("lock")
    }

    /// Waits until `n` connections have ended (the client closed, or the script
    /// closed or failed), so that everything they sent is in [`Self::received`].
    /// False when `within` ran out first.
    pub async fn wait_ended(&self, n: u32, within: Duration) -> bool {
        let mut ended = self.ended.subscribe();
        tokio::time::timeout(within, ended.wait_for(|e| *e >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;

/// One line (up to 64 KiB, so a client that never sends a line end is bounded too).
async fn read_line(read: &mut Reader) -> std::io::Result<(usize, Vec<u8>)> {
    use tokio::io::AsyncReadExt as _;
    let mut line = Vec::new();
    let n = (&mut *read)
        .take(65_536)
        .read_until(b'\n', &mut line)
        .await?;
    Ok((n, line))
}

async fn play(stream: TcpStream, script: &[Step], rec: &Mutex<Vec<u8>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    for step in script {
        match step {
            Step::Send(bytes) => write.write_all(bytes).await?,
            Step::ReadLine => {
                let (n, line) = read_line(&mut read).await?;
                rec.lock().expect("lock").extend_from_slice(&line);
                if n == 0 {
                    return Ok(());
                }
            }
            Step::ReplyTagged(text) => {
                let (n, line) = read_line(&mut read).await?;
                rec.lock().expect("lock").extend_from_slice(&line);
                if n == 0 {
                    return Ok(());
                }
                let tag = line
                    .split(|b| *b == b' ')
                    .next()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                let mut answer = tag;
                answer.push(b' ');
                answer.extend_from_slice(text.as_bytes());
                answer.extend_from_slice(b"\r\n");
                write.write_all(&answer).await?;
            }
            Step::ReadUntil(end) => loop {
                let (n, line) = read_line(&mut read).await?;
                rec.lock().expect("lock").extend_from_slice(&line);
                if n == 0 {
                    return Ok(());
                }
                if line == *end {
                    break;
                }
            },
            Step::Trickle(bytes, pause) => loop {
                write.write_all(bytes).await?;
                tokio::time::sleep(*pause).await;
            },
            Step::Deaf(d) => tokio::time::sleep(*d).await,
            Step::Endless(bytes) => {
                let chunk = bytes.repeat((65_536 / bytes.len().max(1)).max(1));
                let mut written = 0u64;
                while written < ENDLESS_LIMIT {
                    write.write_all(&chunk).await?;
                    written += chunk.len() as u64;
                }
            }
            Step::Filler(total) => {
                let line = [b"x".repeat(74), b"\r\n".to_vec()].concat();
                let mut left = *total;
                while left > 0 {
                    let n = usize::try_from(left.min(line.len() as u64)).unwrap_or(line.len());
                    write.write_all(&line[..n]).await?;
                    left -= n as u64;
                }
            }
            Step::Stall(d) => {
                let deadline = tokio::time::Instant::now() + *d;
                loop {
                    match tokio::time::timeout_at(deadline, read_line(&mut read)).await {
                        Ok(Ok((0, _))) | Err(_) => break,
                        Ok(Ok((_, line))) => rec.lock().expect("lock").extend_from_slice(&line),
                        Ok(Err(e)) => return Err(e),
                    }
                }
            }
            Step::Close => return write.shutdown().await,
        }
    }
    // The script is over: keep the connection open and record what arrives.
    loop {
        let (n, line) = read_line(&mut read).await?;
        if n == 0 {
            return Ok(());
        }
        rec.lock().expect("lock").extend_from_slice(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_script_is_played_and_what_the_client_sent_is_recorded() {
        let server = HostileServer::start(vec![
            Step::Send(b"* OK hi\r\n".to_vec()),
            Step::ReplyTagged("OK done".into()),
            Step::Filler(200),
            Step::Close,
        ])
        .await;
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        c.write_all(b"a1 LOGIN x y\r\n").await.unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(text.starts_with("* OK hi\r\na1 OK done\r\n"), "{text}");
        assert_eq!(text.len(), "* OK hi\r\na1 OK done\r\n".len() + 200);
        assert_eq!(server.received_text(), "a1 LOGIN x y\r\n");
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn read_until_waits_for_its_line_and_wait_ended_sees_the_client_leave() {
        let server = HostileServer::start(vec![
            Step::Send(b"354 go\r\n".to_vec()),
            Step::ReadUntil(b".\r\n".to_vec()),
            Step::Send(b"250 ok\r\n".to_vec()),
        ])
        .await;
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"354 go\r\n");
        c.write_all(b"a\r\n..b\r\n").await.unwrap();
        c.write_all(b".\r\n").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"250 ok\r\n");
        assert!(!server.wait_ended(1, Duration::from_millis(50)).await);
        c.write_all(b"QUIT\r\n").await.unwrap();
        drop(c);
        assert!(server.wait_ended(1, Duration::from_secs(10)).await);
        assert_eq!(server.received_text(), "a\r\n..b\r\n.\r\nQUIT\r\n");
    }

    #[tokio::test]
    async fn endless_keeps_talking_until_the_client_leaves() {
        let server = HostileServer::start(vec![Step::Endless(b"* 1 EXISTS\r\n".to_vec())]).await;
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        while total < 4 << 20 {
            total += c.read(&mut buf).await.unwrap();
        }
        assert!(total >= 4 << 20);
    }
}
