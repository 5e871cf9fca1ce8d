//! mailbridge-sinks: where a received message goes.
//!
//! A sink takes one received message (a [`Delivery`]: its bytes spooled in a file,
//! where it came from, and its [`IdempotencyKey`]) and either accepts it or says why
//! not with an [`ErrorClass`] the connector's retry logic reads. A sink never decides
//! about retries, parking or checkpoints: the connector does, and moves a source's
//! checkpoint only after every sink of a message accepted it.
//!
//! Parts:
//! - [`key`]: the idempotency key (account + folder + source id + Message-ID hash), the
//!   same for every redelivery of a message, used as the folder sinks' file name and
//!   sent to a webhook as `Idempotency-Key`.
//! - [`folder`]: each message one `.eml` file named by its key, written in a private
//!   temporary directory, fsynced and linked into place (never overwritten: a
//!   redelivery finds it there and adds nothing), the directory fsynced; or, for a
//!   watcher's batch, staged without an fsync each and committed together
//!   ([`folder::Batch`]: the files fsynced on several threads, linked, each folder
//!   fsynced once).
//! - [`attachments`]: each attachment of a message saved under a safe, unique name
//!   ([`filename`]) in a directory named by the message's key, with a `message.json`
//!   sidecar naming the message; the directory appears whole (built aside, renamed).
//! - [`webhook`]: a JSON summary of the message ([`summary`]), optionally the raw MIME
//!   inline or a link, POSTed with an `X-Mailbridge-Signature` (HMAC-SHA256 over the
//!   timestamp and the body) and `Idempotency-Key`; loopback, private, link-local and
//!   other non-public addresses refused unless the webhook allows them
//!   ([`address`]), checked on the addresses actually connected to; no redirects
//!   followed; a timeout; 429/5xx answers transient with their `Retry-After`.
//! - [`relay`]: the message's bytes unchanged (plus an optional `Received:` trace
//!   header) into an SMTP relay, envelope from the message or set by the route; one
//!   connection kept open between deliveries (replaced when the relay closed it,
//!   closed after an idle time), never a message sent twice by that reuse.
//!
//! - [`route`]: ordered rules (from, to, subject, has attachments, size, folder; wildcard
//!   patterns without case) choosing a message's sinks, and the source action (keep,
//!   mark read, move, delete) done once every sink accepted it.
//!
//! The exact delivery guarantee of each sink is written in `docs/delivery.md`.

pub mod address;
pub mod attachments;
pub mod filename;
pub mod folder;
pub mod key;
pub mod relay;
pub mod route;
pub mod summary;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailbridge_types::ErrorClass;

pub use key::IdempotencyKey;

/// One received message handed to a sink.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The same for every delivery of this message.
    pub key: IdempotencyKey,
    /// The account's name (shown to receivers).
    pub account: String,
    /// The folder it was read from.
    pub folder: String,
    /// The transport's id of the message (IMAP UID, Graph or EWS id, POP3 UIDL).
    pub source_id: String,
    /// The message's bytes, spooled in a file.
    pub spool: PathBuf,
    /// Where a receiver can fetch the raw MIME from mailbridge's API, if it can.
    pub mime_link: Option<String>,
}

impl Delivery {
    /// The spooled file.
    pub fn spool(&self) -> &Path {
        &self.spool
    }

    /// The whole message, read into memory; at most `limit` bytes (the account's
    /// maximum message size bounded it when it was fetched; this bounds it again).
    pub async fn read(&self, limit: u64) -> Result<Vec<u8>, SinkError> {
        let len = tokio::fs::metadata(&self.spool)
            .await
            .map_err(|source| SinkError::Io {
                what: "reading the spooled message",
                path: self.spool.clone(),
                source,
            })?
            .len();
        if len > limit {
            return Err(SinkError::TooLarge { size: len, limit });
        }
        tokio::fs::read(&self.spool)
            .await
            .map_err(|source| SinkError::Io {
                what: "reading the spooled message",
                path: self.spool.clone(),
                source,
            })
    }
}

/// What a sink did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Where it went (a file, a directory, the webhook's URL without its query, the
    /// relay's reply).
    pub location: String,
    /// It was already there from an earlier delivery: nothing was added.
    pub already_there: bool,
}

/// Why a sink did not accept a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The local file system refused (full disk, permissions, missing directory).
    #[error("{what} failed at {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The message is larger than the bound that applies here.
    #[error("the message has {size} bytes, more than the {limit} this sink accepts")]
    TooLarge { size: u64, limit: u64 },
    /// The message has more attachments than the attachments folder takes.
    #[error(
        "the message has more than {limit} attachments, which the attachments folder does not save (raise max_attachments on the sink if they are wanted)"
    )]
    TooManyAttachments { limit: usize },
    /// The webhook's address is not one mailbridge sends to without permission.
    #[error(
        "the webhook {url} resolves to {address}, a {kind} address; mailbridge does not send messages there unless the webhook allows it (set allow_private_addresses = true on the webhook if that receiver is yours)"
    )]
    AddressRefused {
        url: String,
        address: std::net::IpAddr,
        kind: &'static str,
    },
    /// The webhook's host name did not resolve.
    #[error("the webhook's host {host} could not be resolved")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The webhook could not be reached or did not answer in time.
    #[error("the webhook {url} could not be reached")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The webhook answered with a status other than 2xx.
    #[error("the webhook {url} answered {status}{}", describe_answer(.body))]
    Refused {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
        /// The start of its answer, printable.
        body: String,
    },
    /// The webhook's configuration cannot work (a URL that is not http(s), ...).
    #[error("the webhook is misconfigured: {0}")]
    WebhookConfig(String),
    /// The relay's configuration or the message's envelope cannot work.
    #[error("the SMTP relay sink is misconfigured: {0}")]
    RelayConfig(String),
    /// The SMTP relay refused or failed.
    #[error("the SMTP relay {relay} did not take the message")]
    Relay {
        relay: String,
        #[source]
        source: mailbridge_smtp::SmtpError,
    },
}

fn describe_answer(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl SinkError {
    /// What to do about it (the connector's retry logic reads only this).
    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::ReadOnlyFilesystem
                | std::io::ErrorKind::NotADirectory => ErrorClass::Misconfigured,
                _ => ErrorClass::Transient,
            },
            SinkError::TooLarge { .. } | SinkError::TooManyAttachments { .. } => {
                ErrorClass::LimitExceeded
            }
            SinkError::AddressRefused { .. }
            | SinkError::WebhookConfig(_)
            | SinkError::RelayConfig(_) => ErrorClass::Misconfigured,
            SinkError::Resolve { .. } | SinkError::Unreachable { .. } => ErrorClass::Transient,
            SinkError::Refused {
                status,
                retry_after,
                ..
            } => match status {
                429 => ErrorClass::Throttled {
                    retry_after: *retry_after,
                },
                503 if retry_after.is_some() => ErrorClass::Throttled {
                    retry_after: *retry_after,
                },
                408 | 500..=599 => ErrorClass::Transient,
                401 | 403 => ErrorClass::Misconfigured,
                _ => ErrorClass::Permanent,
            },
            SinkError::Relay { source, .. } => source.class(),
        }
    }

    /// How long the receiver asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.class() {
            ErrorClass::Throttled { retry_after } => retry_after,
            _ => None,
        }
    }
}

/// Creates `dir` and its parents (a sink's target directory).
pub(crate) async fn ensure_dir(dir: &Path) -> Result<(), SinkError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| SinkError::Io {
            what: "creating the sink's directory",
            path: dir.to_owned(),
            source,
        })
}

/// A random suffix for temporary names.
pub(crate) fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    // getrandom fails only where the OS has no randomness at all; the process id and
    // time still keep names apart in one directory then.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = u64::try_from(t % u128::from(u64::MAX))
            .unwrap_or_default()
            .to_le_bytes();
    }
    format!("{}.{}", std::process::id(), hex(&bytes))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
