//! A minimal milter (Sendmail milter protocol version 6) that applies Exchange's
//! SendAs rule at the end of `DATA` (the envelope sender must be the authenticated
//! mailbox, or a mailbox the authenticated principal has SendAs on) and its limit on
//! concurrent SMTP sessions per mailbox (`knobs.smtp_concurrency_per_mailbox`,
//! `432 4.3.2` at the end of `DATA`).
//!
//! A milter, unlike a Postfix policy service, can set the whole SMTP reply
//! (`SMFIR_REPLYCODE`), so the client sees Exchange's `554 5.2.252 SendAsDenied; ...`
//! byte for byte. The milter asks only for `MAIL FROM` (with the `{auth_authen}` macro)
//! and the end of the message; Postfix skips every other step.
//!
//! Packets: a 4-byte big-endian length, a command byte, the data.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::emulator::Emulator;

/// Largest packet accepted from Postfix.
const MAX_PACKET: usize = 1024 * 1024;
/// Milter protocol version spoken.
const VERSION: u32 = 6;
/// Steps Postfix need not send: connect, HELO, RCPT, body, headers, end of headers,
/// unknown commands, DATA.
const SKIP_STEPS: u32 = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200;

/// The last session id handed out, and the open sessions' ids per mailbox.
#[derive(Debug, Default)]
struct SessionTable {
    last_id: u64,
    open: HashMap<String, BTreeSet<u64>>,
}

/// Open submission sessions per authenticated mailbox (lower-case), by arrival.
#[derive(Debug, Default, Clone)]
struct Sessions(Arc<Mutex<SessionTable>>);

/// One session's place in [`Sessions`]; released when the connection ends.
struct SessionSlot {
    sessions: Sessions,
    mailbox: String,
    id: u64,
}

impl Sessions {
    fn enter(&self, mailbox: &str) -> SessionSlot {
        let mailbox = mailbox.to_ascii_lowercase();
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        guard.last_id += 1;
        let id = guard.last_id;
        guard.open.entry(mailbox.clone()).or_default().insert(id);
        SessionSlot {
            sessions: self.clone(),
            mailbox,
            id,
        }
    }

    /// How many sessions of the slot's mailbox are open, and how many opened before it.
    fn position(&self, slot: &SessionSlot) -> (usize, usize) {
        let guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .open
            .get(&slot.mailbox)
            .map_or((0, 0), |ids| (ids.len(), ids.range(..slot.id).count()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut guard = self
            .sessions
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ids) = guard.open.get_mut(&self.mailbox) {
            ids.remove(&self.id);
            if ids.is_empty() {
                guard.open.remove(&self.mailbox);
            }
        }
    }
}

/// Serves milter connections until `stop` is cancelled.
pub async fn serve(listener: TcpListener, emulator: Emulator, stop: CancellationToken) {
    let tasks = tokio_util::task::TaskTracker::new();
    let sessions = Sessions::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let emulator = emulator.clone();
                let stop = stop.clone();
                let sessions = sessions.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        r = connection(stream, &emulator, &sessions) => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "milter connection ended");
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

async fn read_packet(stream: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("milter packet of {len} bytes"),
        ));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    let Some((&cmd, data)) = buf.split_first() else {
        return Ok(None);
    };
    Ok(Some((cmd, data.to_vec())))
}

async fn write_packet(stream: &mut TcpStream, cmd: u8, data: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(data.len() + 1)
        .map_err(|_| std::io::Error::other("milter reply too long"))?;
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(data);
    stream.write_all(&out).await
}

/// NUL-terminated strings of a packet.
fn strings(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[derive(Default)]
struct Message {
    macros: HashMap<String, String>,
    sender: Option<String>,
}

async fn connection(
    mut stream: TcpStream,
    emulator: &Emulator,
    sessions: &Sessions,
) -> std::io::Result<()> {
    let mut message = Message::default();
    // This SMTP session's slot, taken at its first MAIL FROM after AUTH.
    let mut slot: Option<SessionSlot> = None;
    while let Some((cmd, data)) = read_packet(&mut stream).await? {
        match cmd {
            b'O' => {
                let mut reply = Vec::with_capacity(12);
                reply.extend_from_slice(&VERSION.to_be_bytes());
                reply.extend_from_slice(&0u32.to_be_bytes());
                reply.extend_from_slice(&SKIP_STEPS.to_be_bytes());
                write_packet(&mut stream, b'O', &reply).await?;
            }
            b'D' => {
                let pairs = strings(data.get(1..).unwrap_or_default());
                for pair in pairs.chunks(2) {
                    if let [name, value] = pair {
                        message.macros.insert(name.clone(), value.clone());
                    }
                }
            }
            b'M' => {
                if slot.is_none()
                    && let Some(user) = message
                        .macros
                        .get("{auth_authen}")
                        .filter(|u| !u.is_empty())
                {
                    slot = Some(sessions.enter(user));
                }
                let sender = strings(&data).into_iter().next().unwrap_or_default();
                message.sender = Some(
                    sender
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned(),
                );
                write_packet(&mut stream, b'c', &[]).await?;
            }
            b'E' => {
                let verdict = decide(
                    emulator,
                    slot.as_ref().map(|s| sessions.position(s)),
                    &message,
                );
                message = Message::default();
                match verdict {
                    None => write_packet(&mut stream, b'c', &[]).await?,
                    Some(reply) => {
                        let mut text = reply.into_bytes();
                        text.push(0);
                        write_packet(&mut stream, b'y', &text).await?;
                    }
                }
            }
            b'A' | b'K' => message = Message::default(),
            b'Q' => return Ok(()),
            _ => write_packet(&mut stream, b'c', &[]).await?,
        }
    }
    Ok(())
}

/// `None` to let the message through, or the SMTP reply that refuses it.
///
/// `position` is (open sessions of the mailbox, sessions opened before this one): the
/// earliest `knobs.smtp_concurrency_per_mailbox` sessions proceed, later ones are deferred.
fn decide(
    emulator: &Emulator,
    position: Option<(usize, usize)>,
    message: &Message,
) -> Option<String> {
    let user = message
        .macros
        .get("{auth_authen}")
        .filter(|u| !u.is_empty())?;
    let limit = emulator.knobs().smtp_concurrency_per_mailbox as usize;
    let (open, before) = position.unwrap_or_default();
    if limit > 0 && before >= limit {
        emulator.record(crate::emulator::RecordedRequest {
            surface: "smtp-throttle".to_owned(),
            method: "DATA".to_owned(),
            uri: format!("smtp://{}", user.to_ascii_lowercase()),
            headers: vec![("x-open-sessions".to_owned(), open.to_string())],
            body: format!("{open} concurrent sessions, limit {limit}"),
            status: 432,
            at: emulator.now(),
        });
        return Some(format!(
            "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname={}]",
            crate::exchange::rules::FRONTEND_HOST
        ));
    }
    let sender = message.sender.as_deref().unwrap_or_default();
    crate::exchange::check_send_as(emulator, user, sender).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_split_on_nul() {
        assert_eq!(
            strings(b"{auth_authen}\0alice@x\0i\0ABC\0"),
            vec!["{auth_authen}", "alice@x", "i", "ABC"]
        );
        assert!(strings(b"").is_empty());
    }
}
