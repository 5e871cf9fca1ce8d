//! A scripted IMAP server: it greets, then answers each tagged command line with what
//! a function of `(tag, command)` says: bytes, a stream that never ends, or a hang-up.
//! For the IMAP client's bounds tests (a server that keeps talking, answers about
//! messages not asked for, listings of any shape).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// What the server does for one command.
pub enum ImapAnswer {
    /// Write these bytes (the tagged completion included, or not).
    Bytes(Vec<u8>),
    /// Write what the generator makes for 1, 2, 3, ... with `pause` between, until
    /// the client goes away.
    Forever {
        make: Box<dyn FnMut(u64) -> Vec<u8> + Send>,
        pause: Option<Duration>,
    },
    /// Close the connection.
    Close,
}

impl std::fmt::Debug for ImapAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapAnswer::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            ImapAnswer::Forever { pause, .. } => f
                .debug_struct("Forever")
                .field("pause", pause)
                .finish_non_exhaustive(),
            ImapAnswer::Close => f.write_str("Close"),
        }
    }
}

impl ImapAnswer {
    /// `text` as bytes.
    pub fn text(text: impl Into<String>) -> ImapAnswer {
        ImapAnswer::Bytes(text.into().into_bytes())
    }

    /// The same line again and again, with `pause` between.
    pub fn repeat(line: impl Into<Vec<u8>>, pause: Option<Duration>) -> ImapAnswer {
        let line = line.into();
        ImapAnswer::Forever {
            make: Box::new(move |_| line.clone()),
            pause,
        }
    }
}

/// The commands a server heard, `tag command` per line, all connections together.
pub type Heard = Arc<Mutex<Vec<String>>>;

/// Starts the server on `127.0.0.1:0`, greeting with `* OK ready`; returns its port
/// and what it hears. `answer` gets each command's tag and the rest of its line.
pub async fn serve<F>(answer: F) -> (u16, Heard)
where
    F: FnMut(&str, &str) -> ImapAnswer + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let heard: Heard = Arc::default();
    let answer = Arc::new(Mutex::new(answer));
    let log = heard.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move {
                let (reader, mut w) = socket.into_split();
                let mut r = BufReader::new(reader);
                if w.write_all(b"* OK ready\r\n").await.is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_owned();
                    log.lock().expect("lock").push(line.clone());
                    let (tag, command) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                    let reply = (answer.lock().expect("lock"))(tag, command);
                    match reply {
                        ImapAnswer::Bytes(b) => {
                            if w.write_all(&b).await.is_err() {
                                return;
                            }
                        }
                        ImapAnswer::Forever { mut make, pause } => {
                            for n in 1.. {
                                if w.write_all(&make(n)).await.is_err() {
                                    return;
                                }
                                if let Some(p) = pause {
                                    tokio::time::sleep(p).await;
                                }
                            }
                        }
                        ImapAnswer::Close => return,
                    }
                }
            });
        }
    });
    (port, heard)
}
