//! The one mail store behind every surface: the Dovecot mailboxes.
//!
//! Graph and EWS read and change mail through an IMAP connection to the harness's
//! Dovecot (logging in as the mailbox owner with the per-run store credential that only
//! the emulator knows); new mail is delivered through Postfix, which hands it to
//! Dovecot over LMTP. So a message sent through Graph, EWS or SMTP lands in the same
//! place and is visible through Graph, EWS, IMAP and POP alike.
//!
//! Ids are stable: a message is (mailbox, folder, UIDVALIDITY, UID), which the Graph
//! and EWS layers encode into their own id formats.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Outcome, Response, ResponseCode, Status};
use async_imap::types::{Fetch, Flag, NameAttribute};
use futures::TryStreamExt as _;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::mailservers::wire::{self, LineClient};

/// The Exchange folder names the harness creates in every mailbox, by Graph well-known name.
pub const WELL_KNOWN_FOLDERS: [(&str, &str); 6] = [
    ("inbox", "INBOX"),
    ("sentitems", "Sent Items"),
    ("deleteditems", "Deleted Items"),
    ("drafts", "Drafts"),
    ("junkemail", "Junk Email"),
    ("archive", "Archive"),
];

/// The IMAP folder for a Graph well-known folder name (case-insensitive), if it is one.
pub fn folder_for_well_known(name: &str) -> Option<&'static str> {
    WELL_KNOWN_FOLDERS
        .iter()
        .find(|(wk, _)| wk.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
}

/// Where a message lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredMessageId {
    /// The mailbox owner's address (UPN).
    pub mailbox: String,
    /// IMAP folder name (`INBOX`, `Sent Items`, ...).
    pub folder: String,
    pub uid_validity: u32,
    pub uid: u32,
}

/// A folder of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub total: u32,
    pub unread: u32,
}

/// What listing a folder returns for each message.
#[derive(Debug, Clone)]
pub struct MessageSummary {
    pub id: StoredMessageId,
    /// `\Seen` is set.
    pub seen: bool,
    /// Every flag as IMAP writes it (`\Seen`, `\Flagged`, `\Draft`, `$Forwarded`, ...).
    pub flags: Vec<String>,
    /// The IMAP INTERNALDATE (Graph `receivedDateTime`).
    pub received: OffsetDateTime,
    /// RFC822.SIZE.
    pub size: u64,
    /// The raw header block (`BODY.PEEK[HEADER]`).
    pub header: Vec<u8>,
}

/// Error from the mail store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailStoreError {
    #[error("mail store connection failed")]
    Io(#[from] std::io::Error),
    #[error("mail store answered: {0}")]
    Server(String),
    #[error("mail store is not available: {0}")]
    Unavailable(String),
    /// The folder does not exist in the mailbox.
    #[error("no folder {0}")]
    NoSuchFolder(String),
    /// A folder of that name already exists.
    #[error("folder {0} already exists")]
    FolderExists(String),
}

impl From<async_imap::error::Error> for MailStoreError {
    fn from(e: async_imap::error::Error) -> Self {
        match e {
            async_imap::error::Error::Io(io) => Self::Io(io),
            other => Self::Server(other.to_string()),
        }
    }
}

/// Where the store's servers listen and how the emulator logs in to them.
#[derive(Clone)]
pub struct MailStoreConfig {
    /// Dovecot IMAP (plain, loopback).
    pub imap: std::net::SocketAddr,
    /// Postfix port that accepts mail from loopback without authentication, for delivery.
    pub smtp_delivery: std::net::SocketAddr,
    /// The per-run credential the judge accepts from the emulator for any mailbox.
    pub store_secret: String,
    /// Postfix's log: when set, [`MailStore::deliver`] waits until Postfix has handed
    /// the message on (`<queue id>: removed`), so delivered mail is visible on return.
    pub delivery_log: Option<PathBuf>,
}

impl std::fmt::Debug for MailStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStoreConfig")
            .field("imap", &self.imap)
            .field("smtp_delivery", &self.smtp_delivery)
            .field("delivery_log", &self.delivery_log)
            .finish_non_exhaustive()
    }
}

type Session = async_imap::Session<TcpStream>;

/// Idle IMAP sessions kept per mailbox.
const IDLE_PER_MAILBOX: usize = 4;
/// How long [`MailStore::deliver`] waits for Postfix to hand a message on.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Vec<Session>>>,
}

impl Pool {
    fn take(&self, mailbox: &str) -> Option<Session> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(mailbox)
            .and_then(Vec::pop)
    }

    fn put(&self, mailbox: &str, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(mailbox.to_owned()).or_default();
        if list.len() < IDLE_PER_MAILBOX {
            list.push(session);
        }
    }

    fn drain(&self) -> Vec<Session> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .flat_map(|(_, v)| v)
            .collect()
    }
}

/// Access to the Dovecot mailboxes. Cheap to clone.
#[derive(Clone)]
pub struct MailStore {
    config: MailStoreConfig,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for MailStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The IMAP form of a flag.
fn flag_name(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".to_owned(),
        Flag::Answered => "\\Answered".to_owned(),
        Flag::Flagged => "\\Flagged".to_owned(),
        Flag::Deleted => "\\Deleted".to_owned(),
        Flag::Draft => "\\Draft".to_owned(),
        Flag::Recent => "\\Recent".to_owned(),
        Flag::MayCreate => "\\*".to_owned(),
        Flag::Custom(c) => c.to_string(),
    }
}

/// Modified UTF-7 (RFC 3501 §5.1.3), the IMAP form of folder names.
pub mod mutf7 {
    use base64::Engine as _;

    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::general_purpose::NO_PAD,
    );

    /// Encodes a folder name for the wire.
    pub fn encode(name: &str) -> String {
        let mut out = String::with_capacity(name.len());
        let mut pending: Vec<u16> = Vec::new();
        let flush = |pending: &mut Vec<u16>, out: &mut String| {
            if pending.is_empty() {
                return;
            }
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&ENGINE.encode(bytes));
            out.push('-');
            pending.clear();
        };
        for c in name.chars() {
            if (' '..='~').contains(&c) {
                flush(&mut pending, &mut out);
                if c == '&' {
                    out.push_str("&-");
                } else {
                    out.push(c);
                }
            } else {
                let mut buf = [0u16; 2];
                pending.extend_from_slice(c.encode_utf16(&mut buf));
            }
        }
        flush(&mut pending, &mut out);
        out
    }

    /// Decodes a folder name from the wire; `None` when it is not valid modified UTF-7.
    pub fn decode(wire: &str) -> Option<String> {
        let mut out = String::with_capacity(wire.len());
        let mut rest = wire;
        while let Some(start) = rest.find('&') {
            out.push_str(rest.get(..start)?);
            let after = rest.get(start + 1..)?;
            let end = after.find('-')?;
            let chunk = after.get(..end)?;
            if chunk.is_empty() {
                out.push('&');
            } else {
                let bytes = ENGINE.decode(chunk).ok()?;
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|p| {
                        Some(u16::from_be_bytes([
                            p.first().copied()?,
                            p.get(1).copied()?,
                        ]))
                    })
                    .collect::<Option<Vec<u16>>>()?;
                out.push_str(&String::from_utf16(&units).ok()?);
            }
            rest = after.get(end + 1..)?;
        }
        out.push_str(rest);
        Some(out)
    }
}

/// Quotes a folder name for IMAP (after modified UTF-7 encoding).
fn quote(name: &str) -> Result<String, MailStoreError> {
    let name = mutf7::encode(name);
    if name.is_empty() || !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(MailStoreError::Server(format!(
            "folder name {name:?} is not supported by the mail store"
        )));
    }
    Ok(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn first_uid(set: &[UidSetMember]) -> Option<u32> {
    set.first().map(|m| match m {
        UidSetMember::Uid(u) => *u,
        UidSetMember::UidRange(r) => *r.start(),
    })
}

fn check_address(address: &str) -> Result<(), MailStoreError> {
    if address
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>' || b == b' ')
    {
        return Err(MailStoreError::Server(format!(
            "address {address:?} cannot be used in an SMTP envelope"
        )));
    }
    Ok(())
}

fn summary(mailbox: &str, folder: &str, uid_validity: u32, f: &Fetch) -> Option<MessageSummary> {
    let uid = f.uid?;
    let received = f
        .internal_date()
        .and_then(|d| OffsetDateTime::from_unix_timestamp(d.timestamp()).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Some(MessageSummary {
        id: StoredMessageId {
            mailbox: mailbox.to_owned(),
            folder: folder.to_owned(),
            uid_validity,
            uid,
        },
        seen: f.flags().any(|fl| fl == Flag::Seen),
        flags: f.flags().map(|fl| flag_name(&fl)).collect(),
        received,
        size: u64::from(f.size.unwrap_or_default()),
        header: f.header().map(<[u8]>::to_vec).unwrap_or_default(),
    })
}

impl MailStore {
    /// A store over the harness's servers.
    pub fn new(config: MailStoreConfig) -> Self {
        Self {
            config,
            pool: Arc::new(Pool::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MailStoreConfig {
        &self.config
    }

    fn key(mailbox: &str) -> String {
        mailbox.to_ascii_lowercase()
    }

    async fn connect_once(&self, mailbox: &str) -> Result<Session, MailStoreError> {
        let stream = TcpStream::connect(self.config.imap).await?;
        let mut client = async_imap::Client::new(stream);
        // The greeting.
        client
            .read_response()
            .await?
            .ok_or_else(|| MailStoreError::Unavailable("Dovecot closed the connection".into()))?;
        client
            .login(mailbox, &self.config.store_secret)
            .await
            .map_err(|(e, _)| match e {
                async_imap::error::Error::No(text) if text.contains("UNAVAILABLE") => {
                    MailStoreError::Unavailable(format!("login to {mailbox}: {text}"))
                }
                async_imap::error::Error::No(text) => {
                    MailStoreError::Server(format!("login to {mailbox} refused: {text}"))
                }
                other => other.into(),
            })
    }

    /// Logs in to `mailbox`, retrying transient failures (a busy auth worker or judge
    /// under load answers `[UNAVAILABLE]`).
    async fn connect(&self, mailbox: &str) -> Result<Session, MailStoreError> {
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            match self.connect_once(mailbox).await {
                Err(MailStoreError::Io(_) | MailStoreError::Unavailable(_)) if attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// A session for `mailbox`: a pooled one that still answers, or a new one.
    async fn checkout(&self, mailbox: &str) -> Result<Session, MailStoreError> {
        let key = Self::key(mailbox);
        while let Some(mut session) = self.pool.take(&key) {
            if session.noop().await.is_ok() {
                return Ok(session);
            }
        }
        self.connect(mailbox).await
    }

    /// Runs `op` on a session for `mailbox`, returning the session to the pool when it
    /// succeeded (or failed with a server answer, which leaves the session usable).
    async fn with_session<R>(
        &self,
        mailbox: &str,
        op: impl AsyncFnOnce(&mut Session) -> Result<R, MailStoreError>,
    ) -> Result<R, MailStoreError> {
        let mut session = self.checkout(mailbox).await?;
        let result = op(&mut session).await;
        if !matches!(result, Err(MailStoreError::Io(_))) {
            self.pool.put(&Self::key(mailbox), session);
        }
        result
    }

    /// Whether a read-only operation that failed with `result` is run once more (on
    /// another session): its connection failed, maybe because the server ended a
    /// pooled session (a fault a test injected for its clients, see
    /// [`crate::mailservers::MailServers::drop_sessions`]) while Graph or EWS was using
    /// it, and Exchange's own store does not fail a request for that.
    fn read_again<R>(result: &Result<R, MailStoreError>, tried: &mut bool) -> bool {
        let again = !*tried && matches!(result, Err(MailStoreError::Io(_)));
        *tried = true;
        again
    }

    /// Forgets the pooled sessions of `mailbox` (every mailbox when `None`) without
    /// using them: the server has ended them (see
    /// [`crate::mailservers::MailServers::drop_sessions`]), maybe not yet visibly, so
    /// a `NOOP` on one could still pass and the next command find it gone.
    pub(crate) fn forget(&self, mailbox: Option<&str>) {
        match mailbox {
            Some(m) => while self.pool.take(&Self::key(m)).is_some() {},
            None => drop(self.pool.drain()),
        }
    }

    /// Logs out every pooled session.
    pub async fn close(&self) {
        for mut s in self.pool.drain() {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.logout()).await;
        }
    }

    /// The folders of `mailbox`: `INBOX` first, then the others by name.
    pub async fn folders(&self, mailbox: &str) -> Result<Vec<FolderInfo>, MailStoreError> {
        let mut tried = false;
        loop {
            let result = self
                .with_session(mailbox, async |s| {
                    let names: Vec<async_imap::types::Name> =
                        s.list(Some(""), Some("*")).await?.try_collect().await?;
                    let mut names: Vec<String> = names
                        .iter()
                        .filter(|n| {
                            !n.attributes()
                                .iter()
                                .any(|a| matches!(a, NameAttribute::NoSelect))
                        })
                        .map(|n| mutf7::decode(n.name()).unwrap_or_else(|| n.name().to_owned()))
                        .collect();
                    names.sort_by_key(|n| (n != "INBOX", n.clone()));
                    let mut out = Vec::with_capacity(names.len());
                    for name in names {
                        out.push(Self::folder_info(s, name).await?);
                    }
                    Ok(out)
                })
                .await;
            if !Self::read_again(&result, &mut tried) {
                return result;
            }
        }
    }

    async fn folder_info(s: &mut Session, name: String) -> Result<FolderInfo, MailStoreError> {
        let st = s
            .status(
                mutf7::encode(&name),
                "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)",
            )
            .await?;
        Ok(FolderInfo {
            name,
            uid_validity: st.uid_validity.unwrap_or_default(),
            uid_next: st.uid_next.unwrap_or_default(),
            total: st.exists,
            unread: st.unseen.unwrap_or_default(),
        })
    }

    /// Creates (and subscribes) a folder; `/` separates levels (`Inbox/Projects`).
    pub async fn create_folder(
        &self,
        mailbox: &str,
        name: &str,
    ) -> Result<FolderInfo, MailStoreError> {
        quote(name)?;
        self.with_session(mailbox, async |s| {
            match s.create(mutf7::encode(name)).await {
                Ok(()) => {}
                Err(async_imap::error::Error::No(text)) => {
                    return Err(
                        if text.contains("ALREADYEXISTS") || text.contains("already exists") {
                            MailStoreError::FolderExists(name.to_owned())
                        } else {
                            MailStoreError::Server(text)
                        },
                    );
                }
                Err(e) => return Err(e.into()),
            }
            s.subscribe(mutf7::encode(name)).await?;
            Self::folder_info(s, name.to_owned()).await
        })
        .await
    }

    /// Renames a folder (also moves it under another parent). False when it does not exist.
    pub async fn rename_folder(
        &self,
        mailbox: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, MailStoreError> {
        quote(from)?;
        quote(to)?;
        self.with_session(mailbox, async |s| {
            match s.rename(mutf7::encode(from), mutf7::encode(to)).await {
                Ok(()) => {
                    let _ = s.unsubscribe(mutf7::encode(from)).await;
                    s.subscribe(mutf7::encode(to)).await?;
                    Ok(true)
                }
                Err(async_imap::error::Error::No(text)) => {
                    if text.contains("NONEXISTENT") || text.contains("doesn't exist") {
                        Ok(false)
                    } else if text.contains("ALREADYEXISTS") || text.contains("already exists") {
                        Err(MailStoreError::FolderExists(to.to_owned()))
                    } else {
                        Err(MailStoreError::Server(text))
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Deletes a folder and its messages. False when it does not exist.
    pub async fn delete_folder(&self, mailbox: &str, name: &str) -> Result<bool, MailStoreError> {
        quote(name)?;
        self.with_session(mailbox, async |s| {
            // A selected folder cannot be deleted cleanly; select INBOX first.
            let _ = s.select("INBOX").await;
            match s.delete(mutf7::encode(name)).await {
                Ok(()) => {
                    let _ = s.unsubscribe(mutf7::encode(name)).await;
                    Ok(true)
                }
                Err(async_imap::error::Error::No(text)) => {
                    if text.contains("NONEXISTENT") || text.contains("doesn't exist") {
                        Ok(false)
                    } else {
                        Err(MailStoreError::Server(text))
                    }
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Selects `folder`; its UIDVALIDITY and message count.
    async fn select(s: &mut Session, folder: &str) -> Result<(u32, u32), MailStoreError> {
        match s.select(mutf7::encode(folder)).await {
            Ok(mb) => Ok((mb.uid_validity.unwrap_or_default(), mb.exists)),
            Err(async_imap::error::Error::No(text)) => {
                if text.contains("NONEXISTENT") || text.contains("doesn't exist") {
                    Err(MailStoreError::NoSuchFolder(folder.to_owned()))
                } else {
                    Err(MailStoreError::Server(text))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Selects the message's folder; false when the folder is gone or was recreated.
    async fn select_for(s: &mut Session, id: &StoredMessageId) -> Result<bool, MailStoreError> {
        match Self::select(s, &id.folder).await {
            Ok((validity, _)) => Ok(validity == id.uid_validity),
            Err(MailStoreError::NoSuchFolder(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every message of `folder`, oldest first.
    pub async fn list(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Vec<MessageSummary>, MailStoreError> {
        let mut tried = false;
        loop {
            let result = self
                .with_session(mailbox, async |s| {
                    let (validity, exists) = Self::select(s, folder).await?;
                    if exists == 0 {
                        return Ok(Vec::new());
                    }
                    let fetches: Vec<Fetch> = s
                        .uid_fetch(
                            "1:*",
                            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])",
                        )
                        .await?
                        .try_collect()
                        .await?;
                    let mut out: Vec<MessageSummary> = fetches
                        .iter()
                        .filter_map(|f| summary(mailbox, folder, validity, f))
                        .collect();
                    out.sort_by_key(|m| m.id.uid);
                    Ok(out)
                })
                .await;
            if !Self::read_again(&result, &mut tried) {
                return result;
            }
        }
    }

    /// The summary of one message, `None` when it no longer exists.
    pub async fn summary(
        &self,
        id: &StoredMessageId,
    ) -> Result<Option<MessageSummary>, MailStoreError> {
        let mut tried = false;
        loop {
            let result = self
                .with_session(&id.mailbox, async |s| {
                    if !Self::select_for(s, id).await? {
                        return Ok(None);
                    }
                    let fetches: Vec<Fetch> = s
                        .uid_fetch(
                            id.uid.to_string(),
                            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])",
                        )
                        .await?
                        .try_collect()
                        .await?;
                    Ok(fetches
                        .iter()
                        .filter(|f| f.uid == Some(id.uid))
                        .find_map(|f| summary(&id.mailbox, &id.folder, id.uid_validity, f)))
                })
                .await;
            if !Self::read_again(&result, &mut tried) {
                return result;
            }
        }
    }

    /// The raw MIME of a message, `None` when it no longer exists.
    pub async fn fetch(&self, id: &StoredMessageId) -> Result<Option<Vec<u8>>, MailStoreError> {
        let mut tried = false;
        loop {
            let result = self
                .with_session(&id.mailbox, async |s| {
                    if !Self::select_for(s, id).await? {
                        return Ok(None);
                    }
                    let fetches: Vec<Fetch> = s
                        .uid_fetch(id.uid.to_string(), "(UID BODY.PEEK[])")
                        .await?
                        .try_collect()
                        .await?;
                    Ok(fetches
                        .iter()
                        .find(|f| f.uid == Some(id.uid))
                        .and_then(|f| f.body().map(<[u8]>::to_vec)))
                })
                .await;
            if !Self::read_again(&result, &mut tried) {
                return result;
            }
        }
    }

    /// Sets or clears `\Seen`. False when the message no longer exists.
    pub async fn set_seen(&self, id: &StoredMessageId, seen: bool) -> Result<bool, MailStoreError> {
        self.set_flag(id, "\\Seen", seen).await
    }

    /// Sets or clears any flag (`\Flagged`, `\Answered`, `\Draft`, `$Forwarded`, ...).
    /// False when the message no longer exists.
    pub async fn set_flag(
        &self,
        id: &StoredMessageId,
        flag: &str,
        on: bool,
    ) -> Result<bool, MailStoreError> {
        let valid = flag.strip_prefix('\\').unwrap_or(flag);
        if valid.is_empty()
            || !valid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'$' || b == b'_' || b == b'-')
        {
            return Err(MailStoreError::Server(format!(
                "flag {flag:?} is not valid"
            )));
        }
        self.with_session(&id.mailbox, async |s| {
            if !Self::select_for(s, id).await? {
                return Ok(false);
            }
            let op = format!("{}FLAGS ({flag})", if on { '+' } else { '-' });
            let fetches: Vec<Fetch> = s
                .uid_store(id.uid.to_string(), op)
                .await?
                .try_collect()
                .await?;
            Ok(fetches.iter().any(|f| f.uid == Some(id.uid)))
        })
        .await
    }

    async fn exists(s: &mut Session, uid: u32) -> Result<bool, MailStoreError> {
        let fetches: Vec<Fetch> = s
            .uid_fetch(uid.to_string(), "(UID)")
            .await?
            .try_collect()
            .await?;
        Ok(fetches.iter().any(|f| f.uid == Some(uid)))
    }

    /// Moves a message to another folder of the same mailbox; its new id (`None` when
    /// the message no longer exists).
    pub async fn move_to(
        &self,
        id: &StoredMessageId,
        folder: &str,
    ) -> Result<Option<StoredMessageId>, MailStoreError> {
        let target = quote(folder)?;
        self.with_session(&id.mailbox, async |s| {
            if !Self::select_for(s, id).await? || !Self::exists(s, id.uid).await? {
                return Ok(None);
            }
            let tag = s
                .run_command(format!("UID MOVE {} {target}", id.uid))
                .await?;
            let mut moved: Option<(u32, u32)> = None;
            loop {
                let Some(resp) = s.read_response().await? else {
                    return Err(MailStoreError::Unavailable(
                        "Dovecot closed the connection".into(),
                    ));
                };
                match resp.parsed() {
                    Response::Data {
                        outcome:
                            Outcome {
                                code: Some(ResponseCode::CopyUid(validity, _, dst)),
                                ..
                            },
                        ..
                    } => {
                        moved = first_uid(dst).map(|u| (*validity, u));
                    }
                    Response::Done {
                        tag: t,
                        status,
                        outcome: Outcome { code, information },
                    } if *t == tag => {
                        if let Some(ResponseCode::CopyUid(validity, _, dst)) = code {
                            moved = first_uid(dst).map(|u| (*validity, u));
                        }
                        if *status != Status::Ok {
                            let text = information.as_deref().unwrap_or_default();
                            return if text.contains("NONEXISTENT") || text.contains("doesn't exist")
                            {
                                Err(MailStoreError::NoSuchFolder(folder.to_owned()))
                            } else {
                                Err(MailStoreError::Server(format!("UID MOVE failed: {text}")))
                            };
                        }
                        break;
                    }
                    _ => {}
                }
            }
            let (uid_validity, uid) = moved.ok_or_else(|| {
                MailStoreError::Server("UID MOVE did not report COPYUID".to_owned())
            })?;
            Ok(Some(StoredMessageId {
                mailbox: id.mailbox.clone(),
                folder: folder.to_owned(),
                uid_validity,
                uid,
            }))
        })
        .await
    }

    /// Deletes a message (expunged). False when it no longer exists.
    pub async fn delete(&self, id: &StoredMessageId) -> Result<bool, MailStoreError> {
        self.with_session(&id.mailbox, async |s| {
            if !Self::select_for(s, id).await? {
                return Ok(false);
            }
            let flagged: Vec<Fetch> = s
                .uid_store(id.uid.to_string(), "+FLAGS (\\Deleted)")
                .await?
                .try_collect()
                .await?;
            if !flagged.iter().any(|f| f.uid == Some(id.uid)) {
                return Ok(false);
            }
            let _: Vec<_> = s
                .uid_expunge(id.uid.to_string())
                .await?
                .try_collect()
                .await?;
            Ok(true)
        })
        .await
    }

    /// Appends a message to a folder (Sent Items copies, drafts); its id.
    pub async fn append(
        &self,
        mailbox: &str,
        folder: &str,
        raw: &[u8],
        seen: bool,
    ) -> Result<StoredMessageId, MailStoreError> {
        self.append_received(mailbox, folder, raw, seen, None).await
    }

    /// [`Self::append`] with the message's internal date (Graph `receivedDateTime`,
    /// EWS `DateTimeReceived`) set to `received` (now when `None`).
    pub async fn append_received(
        &self,
        mailbox: &str,
        folder: &str,
        raw: &[u8],
        seen: bool,
        received: Option<OffsetDateTime>,
    ) -> Result<StoredMessageId, MailStoreError> {
        let target = quote(folder)?;
        let date = match received {
            Some(t) => {
                let fmt = time::macros::format_description!(
                    "\"[day]-[month repr:short]-[year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]\" "
                );
                t.format(&fmt)
                    .map_err(|e| MailStoreError::Server(format!("APPEND date: {e}")))?
            }
            None => String::new(),
        };
        self.with_session(mailbox, async |s| {
            let flags = if seen { "(\\Seen) " } else { "" };
            // LITERAL+ so the message goes out without waiting for a continuation.
            let tag = s
                .run_command(format!("APPEND {target} {flags}{date}{{{}+}}", raw.len()))
                .await?;
            let stream = s.get_mut();
            stream.write_all(raw).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await?;
            loop {
                let Some(resp) = s.read_response().await? else {
                    return Err(MailStoreError::Unavailable(
                        "Dovecot closed the connection".into(),
                    ));
                };
                if let Response::Done {
                    tag: t,
                    status,
                    outcome: Outcome { code, information },
                } = resp.parsed()
                    && *t == tag
                {
                    if *status != Status::Ok {
                        let text = information.as_deref().unwrap_or_default();
                        return if text.contains("NONEXISTENT") || text.contains("doesn't exist") {
                            Err(MailStoreError::NoSuchFolder(folder.to_owned()))
                        } else {
                            Err(MailStoreError::Server(format!("APPEND failed: {text}")))
                        };
                    }
                    let Some(ResponseCode::AppendUid(uid_validity, uids)) = code else {
                        return Err(MailStoreError::Server(
                            "APPEND did not report APPENDUID".to_owned(),
                        ));
                    };
                    let uid = first_uid(uids).ok_or_else(|| {
                        MailStoreError::Server("APPENDUID without a UID".to_owned())
                    })?;
                    return Ok(StoredMessageId {
                        mailbox: mailbox.to_owned(),
                        folder: folder.to_owned(),
                        uid_validity: *uid_validity,
                        uid,
                    });
                }
            }
        })
        .await
    }

    /// Delivers a message to the recipients through Postfix (and so over LMTP into
    /// Dovecot), as Exchange's transport would. With a delivery log configured it
    /// returns once Postfix has handed the message on.
    pub async fn deliver(
        &self,
        from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<(), MailStoreError> {
        check_address(from)?;
        for r in recipients {
            check_address(r)?;
        }
        if recipients.is_empty() {
            return Err(MailStoreError::Server("no recipients".to_owned()));
        }
        let mut c = LineClient::connect(self.config.smtp_delivery).await?;
        let expect = |reply: wire::SmtpReply, code: u16| {
            if reply.code == code {
                Ok(reply)
            } else {
                Err(MailStoreError::Server(reply.to_string()))
            }
        };
        expect(c.read_smtp_reply().await?, 220)?;
        expect(c.smtp_command("EHLO mailbridge-testkit").await?, 250)?;
        expect(c.smtp_command(&format!("MAIL FROM:<{from}>")).await?, 250)?;
        for r in recipients {
            expect(c.smtp_command(&format!("RCPT TO:<{r}>")).await?, 250)?;
        }
        expect(c.smtp_command("DATA").await?, 354)?;
        c.send_raw(&wire::dot_stuff(raw)).await?;
        let done = expect(c.read_smtp_reply().await?, 250)?;
        let _ = c.smtp_command("QUIT").await;
        let queue_id = done
            .last()
            .split("queued as ")
            .nth(1)
            .map(|s| s.trim().to_owned());
        if let (Some(log), Some(queue_id)) = (&self.config.delivery_log, queue_id) {
            wait_for_removal(log, &queue_id).await?;
        }
        Ok(())
    }
}

/// Waits until Postfix logs `<queue id>: removed` (delivered, bounced or expired).
async fn wait_for_removal(log: &std::path::Path, queue_id: &str) -> Result<(), MailStoreError> {
    let needle = format!("{queue_id}: removed");
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let text = tokio::fs::read(log).await.unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(&needle) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MailStoreError::Unavailable(format!(
                "Postfix did not deliver {queue_id} within {DELIVERY_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::mutf7;

    #[test]
    fn modified_utf7_known_answers() {
        for (name, wire) in [
            ("INBOX", "INBOX"),
            ("Sent Items", "Sent Items"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ] {
            assert_eq!(mutf7::encode(name), wire, "{name}");
            assert_eq!(mutf7::decode(wire).as_deref(), Some(name), "{wire}");
        }
    }

    #[test]
    fn malformed_modified_utf7_is_refused_without_panicking() {
        for wire in ["&", "&ZeVn", "&Z-", "&AAA-", "a&--"] {
            let _ = mutf7::decode(wire);
        }
        assert_eq!(mutf7::decode("&ZeVn"), None);
    }
}
