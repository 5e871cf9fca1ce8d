//! A Postfix policy service (`check_policy_service inet:127.0.0.1:PORT`) that applies
//! Exchange's SendAs rule at the end of `DATA`: the envelope sender must be the
//! authenticated mailbox, or a mailbox the authenticated principal has SendAs on.
//!
//! Protocol: Postfix sends `name=value` lines ending with an empty line; the service
//! answers `action=...` and an empty line, and the connection is reused.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::emulator::Emulator;

/// Longest policy request accepted.
const MAX_REQUEST: u64 = 64 * 1024;

/// Serves policy requests until `stop` is cancelled.
pub async fn serve(listener: TcpListener, emulator: Emulator, stop: CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let emulator = emulator.clone();
                let stop = stop.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        r = connection(stream, &emulator) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "policy connection ended");
                            }
                        }
                    }
                });
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

async fn connection(stream: TcpStream, emulator: &Emulator) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut read).take(MAX_REQUEST).read_line(&mut line).await?;
            if n == 0 {
                return Ok(());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once('=') {
                attrs.push((k.to_owned(), v.to_owned()));
            }
        }
        let action = decide(emulator, &attrs);
        write
            .write_all(format!("action={action}\n\n").as_bytes())
            .await?;
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> &'a str {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The action for one policy request.
pub fn decide(emulator: &Emulator, attrs: &[(String, String)]) -> String {
    let user = attr(attrs, "sasl_username");
    if user.is_empty() {
        return "DUNNO".to_owned();
    }
    let sender = attr(attrs, "sender");
    match crate::exchange::check_send_as(emulator, user, sender) {
        Ok(()) => "DUNNO".to_owned(),
        Err(reply) => reply,
    }
}
