//! A scripted HTTP/1.1 server for the token endpoint: it answers each request with the
//! next answer of its script (the last one repeats) and records when each came.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// The identity platform's "try again" body (AADSTS90033).
pub const UNAVAILABLE: &str = r#"{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred. Please try again.\r\nTrace ID: 0\r\nCorrelation ID: 0\r\nTimestamp: 2026-01-01 00:00:00Z","error_codes":[90033]}"#;

/// A token answer.
pub const TOKENS: &str = r#"{"token_type":"Bearer","scope":"https://outlook.office365.com/.default","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJodHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSJ9.c2ln"}"#;

/// A running scripted server.
pub struct Scripted {
    pub base_url: String,
    /// (request path, when it came).
    pub hits: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
}

impl Scripted {
    /// Requests whose path ends with `suffix`, with their times.
    pub fn hits_to(&self, suffix: &str) -> Vec<tokio::time::Instant> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, t)| *t)
            .collect()
    }
}

/// Serves `token` answers on `…/token` and `devicecode` answers on `…/devicecode`.
pub async fn serve(token: Vec<Answer>, devicecode: Vec<Answer>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new((token, devicecode, 0usize, 0usize)));
    let seen = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Some(path) = read_request(&mut stream).await else {
                        return;
                    };
                    seen.lock()
                        .unwrap()
                        .push((path.clone(), tokio::time::Instant::now()));
                    let answer = {
                        let mut s = script.lock().unwrap();
                        let (token, device, ti, di) = &mut *s;
                        let (list, i) = if path.ends_with("/devicecode") {
                            (device, di)
                        } else {
                            (token, ti)
                        };
                        let a = list[(*i).min(list.len() - 1)].clone();
                        *i += 1;
                        a
                    };
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for (k, v) in &answer.headers {
                        let _ = write!(head, "{k}: {v}\r\n");
                    }
                    head.push_str("\r\n");
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(answer.body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Scripted { base_url, hits }
}

/// Reads one request (head and `content-length` body); its path.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    head.split(' ').nth(1).map(str::to_owned)
}
