//! A scripted HTTP/1.1 server for hostile answers: each request (head and body read
//! whole) is recorded and answered by a function of its number and head, with a fixed
//! body or a body that is generated piece by piece (chunked) until the generator stops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A body generator: the next piece, or `None` at the end.
pub type Pieces = Box<dyn FnMut() -> Option<Vec<u8>> + Send>;

/// What to answer.
pub enum Answer {
    /// Status line and header lines (each ending in `\r\n`), and the body with its
    /// `content-length`.
    Full {
        status: u16,
        headers: String,
        body: Vec<u8>,
    },
    /// Status 200 with `headers` and a chunked body from the generator.
    Chunked { headers: String, pieces: Pieces },
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Full { status, body, .. } => f
                .debug_struct("Full")
                .field("status", status)
                .field("body_len", &body.len())
                .finish_non_exhaustive(),
            Answer::Chunked { .. } => f.debug_struct("Chunked").finish_non_exhaustive(),
        }
    }
}

/// A request as received: its head (request line and headers) and body.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The request target (path and query).
    pub fn target(&self) -> String {
        self.head.split(' ').nth(1).unwrap_or_default().to_owned()
    }
}

/// The server: its address and the requests it got.
#[derive(Debug)]
pub struct Scripted {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Scripted {
    /// `http://{addr}`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("test server").clone()
    }
}

/// Starts a server answering request number `n` (from 0) with `answer(n, &request)`.
pub async fn serve(answer: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test server");
    let addr = listener.local_addr().expect("test server");
    let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
    let answer = Arc::new(answer);
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let mut request = Request {
                        head,
                        body: buf[end + 4..].to_vec(),
                    };
                    let length: usize = request
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while request.body.len() < length {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let n = {
                        let mut seen = seen.lock().expect("test server");
                        seen.push(request.clone());
                        seen.len() - 1
                    };
                    match answer(n, &request) {
                        Answer::Full {
                            status,
                            headers,
                            body,
                        } => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\n{headers}content-length: {}\r\n\r\n",
                                body.len()
                            );
                            if s.write_all(head.as_bytes()).await.is_err()
                                || s.write_all(&body).await.is_err()
                            {
                                return;
                            }
                        }
                        Answer::Chunked {
                            headers,
                            mut pieces,
                        } => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\n{headers}transfer-encoding: chunked\r\n\r\n"
                            );
                            if s.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            while let Some(piece) = pieces() {
                                let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                                framed.extend_from_slice(&piece);
                                framed.extend_from_slice(b"\r\n");
                                if s.write_all(&framed).await.is_err() {
                                    return;
                                }
                            }
                            if s.write_all(b"0\r\n\r\n").await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Scripted { addr, requests }
}

/// A JSON answer.
pub fn json(status: u16, body: &serde_json::Value) -> Answer {
    Answer::Full {
        status,
        headers: "content-type: application/json\r\n".into(),
        body: body.to_string().into_bytes(),
    }
}
