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

use time::OffsetDateTime;

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
}

impl std::fmt::Debug for MailStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStoreConfig")
            .field("imap", &self.imap)
            .field("smtp_delivery", &self.smtp_delivery)
            .finish_non_exhaustive()
    }
}

/// Access to the Dovecot mailboxes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MailStore {
    config: MailStoreConfig,
}

#[expect(
    clippy::unused_async,
    reason = "bodies arrive with the Dovecot harness"
)]
impl MailStore {
    /// A store over the harness's servers.
    pub fn new(config: MailStoreConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &MailStoreConfig {
        &self.config
    }

    /// The folders of `mailbox`.
    pub async fn folders(&self, mailbox: &str) -> Result<Vec<FolderInfo>, MailStoreError> {
        let _ = mailbox;
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Every message of `folder`, oldest first.
    pub async fn list(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Vec<MessageSummary>, MailStoreError> {
        let _ = (mailbox, folder);
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// The raw MIME of a message, `None` when it no longer exists.
    pub async fn fetch(&self, id: &StoredMessageId) -> Result<Option<Vec<u8>>, MailStoreError> {
        let _ = id;
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Sets or clears `\Seen`. False when the message no longer exists.
    pub async fn set_seen(&self, id: &StoredMessageId, seen: bool) -> Result<bool, MailStoreError> {
        let _ = (id, seen);
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Moves a message to another folder of the same mailbox; its new id.
    pub async fn move_to(
        &self,
        id: &StoredMessageId,
        folder: &str,
    ) -> Result<Option<StoredMessageId>, MailStoreError> {
        let _ = (id, folder);
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Deletes a message (expunged). False when it no longer exists.
    pub async fn delete(&self, id: &StoredMessageId) -> Result<bool, MailStoreError> {
        let _ = id;
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Appends a message to a folder (Sent Items copies, drafts); its id.
    pub async fn append(
        &self,
        mailbox: &str,
        folder: &str,
        raw: &[u8],
        seen: bool,
    ) -> Result<StoredMessageId, MailStoreError> {
        let _ = (mailbox, folder, raw, seen);
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }

    /// Delivers a message to the recipients through Postfix (and so over LMTP into
    /// Dovecot), as Exchange's transport would.
    pub async fn deliver(
        &self,
        from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Result<(), MailStoreError> {
        let _ = (from, recipients, raw);
        Err(MailStoreError::Unavailable("not implemented yet".into()))
    }
}
