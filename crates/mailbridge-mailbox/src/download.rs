//! Downloading what is new in a mailbox folder into a local Maildir, durably.
//!
//! Each message is streamed into its own file (never held in memory), fsynced, and
//! only then given its name in `new/`; after every batch the `new/` directory is
//! fsynced and only then is the checkpoint covering the batch handed to the caller's
//! [`Durable`] hook (awaited: the connector's sync loop stores it there) and to
//! [`Progress::durable`], or returned ([`Summary::checkpoint`]). So a stored
//! checkpoint never covers a message that a crash could lose.
//!
//! The Maildir's failures are its own ([`DownloadError::Maildir`], naming the fix for
//! a full disk or a directory it may not write): the sinks' error type travels
//! through [`FetchMany`] and the IMAP client as [`FetchError::Sink`], and a write that
//! fails inside a transport's fetch is recognised as the sink's, never reported as a
//! connection failure.
//!
//! On Linux the files are made without a name (`O_TMPFILE` in `new/`) and linked
//! under the message's name once complete, so a crash leaves nothing half-written
//! behind; elsewhere (or on a file system without `O_TMPFILE`) they are made in `tmp/`
//! and renamed into `new/`, the Maildir rule. Files are made ahead of need by two
//! background threads and fsynced in the background, because making a named file is
//! slow on some file systems (about 0.8 ms on the project machine's ext4, one at a
//! time per directory) and was what bounded a download; a batch's directory fsync
//! runs while the next batch arrives.
//!
//! A message's file name ([`message_key`]) is derived from its typed transport id (for
//! IMAP: UIDVALIDITY and UID), the same as every earlier version wrote, so a run after a crash, which lists again what the last stored checkpoint
//! did not cover, skips what is already in `new/` or `cur/` instead of duplicating it.
//! One Maildir per source folder: ids are unique only within a folder.
//!
//! Over IMAP the messages of a batch come in one pipelined `UID FETCH`
//! ([`FetchMany`] for [`ImapMailbox`]); over Graph four `$value` requests are in flight
//! at once (Outlook's limit per mailbox), handed over in order; EWS and POP3 fetch one
//! by one (an EWS message arrives whole in memory, POP3 has one command in flight).

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use mailbridge_imap::client::FetchSinks;
use tokio::io::{AsyncWrite, AsyncWriteExt as _, BufWriter};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::mailbox::{
    Checkpoint, ErrorKind, EwsMailbox, GraphMailboxAccess, ImapMailbox, Mailbox, MailboxError,
    MessageRef, NewMessages, Pop3Mailbox,
};

/// Messages per batch: one `UID FETCH` over IMAP, one directory fsync, one checkpoint.
pub const DEFAULT_BATCH: usize = 500;
/// File fsyncs running at once (a journaling file system commits them together).
pub const DEFAULT_PARALLEL_SYNCS: usize = 32;
/// Buffer in front of each message file: most messages reach the disk in one write.
const WRITE_BUFFER: usize = 256 * 1024;
/// Files in `tmp/` older than this are leftovers of a crash (the Maildir rule).
const STALE_TMP: Duration = Duration::from_hours(36);
/// Longest file name built from a transport id before it is hashed instead.
const MAX_KEY: usize = 180;
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Where each fetched message goes: a writer per message, handed back when complete.
/// Its failures come back from [`FetchMany::fetch_many`] as [`FetchError::Sink`], in
/// its own error type.
pub trait MessageSinks {
    /// Where one message's bytes go.
    type Writer: AsyncWrite + Unpin + Send;
    /// Why the sinks failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// A writer for the next message; `size` when the transport announced it before
    /// the bytes (IMAP does), so a caller bounding a batch can decide before writing.
    fn open(
        &mut self,
        size: Option<u64>,
    ) -> impl Future<Output = Result<Self::Writer, Self::Error>> + Send;
    /// `message` (`size` bytes) was written completely into `writer`.
    fn done(
        &mut self,
        message: &MessageRef,
        size: u64,
        writer: Self::Writer,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Writing into one of the writers failed with `error`: the sinks' error for it.
    fn write_failed(&mut self, error: std::io::Error) -> Self::Error;
    /// Whether to go on: a transport that fetches message by message stops asking
    /// when this says no (the sinks are full for this call); one that asked for all
    /// of them at once (IMAP) hands over the rest all the same.
    fn wants_more(&self) -> bool {
        true
    }
}

/// Why [`FetchMany::fetch_many`] failed: the mailbox, or the sinks (a full disk is
/// not a mailbox failure, and is never retried as one).
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E> {
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error(transparent)]
    Sink(E),
}

/// A writer that keeps the first error written into it, so that a transport's error
/// caused by the sink ("connection failed while storing") is told apart from one of
/// the transport.
struct Watched<W> {
    writer: W,
    failed: Option<std::io::Error>,
}

impl<W: AsyncWrite + Unpin> Watched<W> {
    fn keep<T>(&mut self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(Err(e)) => {
                let again = std::io::Error::new(e.kind(), "the message could not be stored");
                self.failed.get_or_insert(e);
                Poll::Ready(Err(again))
            }
            other => other,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Watched<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.writer).poll_write(cx, buf);
        self.keep(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.writer).poll_flush(cx);
        self.keep(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.writer).poll_shutdown(cx);
        self.keep(r)
    }
}

/// Fetching many messages of a folder at once. The default fetches them one by one;
/// IMAP pipelines them in one `UID FETCH`.
pub trait FetchMany: Mailbox {
    /// Fetches `messages` of `folder` (as listed by `new_since` or `received_since`),
    /// each into a writer from `sinks`, in order. Messages gone from the server may be
    /// left out.
    fn fetch_many<S: MessageSinks + Send>(
        &mut self,
        folder: &str,
        messages: &[MessageRef],
        sinks: &mut S,
    ) -> impl Future<Output = Result<(), FetchError<S::Error>>> + Send
    where
        Self: Send,
    {
        // One by one, by id: the transports without pipelining need no folder.
        let _ = folder;
        async move {
            for message in messages {
                if !sinks.wants_more() {
                    break;
                }
                let mut writer = Watched {
                    writer: sinks.open(None).await.map_err(FetchError::Sink)?,
                    failed: None,
                };
                match self.fetch(message, &mut writer).await {
                    Ok(size) => sinks
                        .done(message, size, writer.writer)
                        .await
                        .map_err(FetchError::Sink)?,
                    Err(e) => {
                        return Err(match writer.failed.take() {
                            Some(local) => FetchError::Sink(sinks.write_failed(local)),
                            None => FetchError::Mailbox(e),
                        });
                    }
                }
            }
            Ok(())
        }
    }
}

/// Hands IMAP's per-UID writers to the download's per-message sinks.
struct ByUid<'a, S> {
    sinks: &'a mut S,
    uid_validity: u32,
}

impl<S: MessageSinks + Send> FetchSinks for ByUid<'_, S> {
    type Writer = S::Writer;
    type Error = S::Error;

    fn open(
        &mut self,
        _uid: Option<u32>,
        size: u64,
    ) -> impl Future<Output = Result<S::Writer, S::Error>> + Send {
        self.sinks.open(Some(size))
    }

    async fn done(&mut self, uid: u32, size: u64, writer: S::Writer) -> Result<(), S::Error> {
        let message = MessageRef::Imap {
            uid_validity: self.uid_validity,
            uid,
        };
        self.sinks.done(&message, size, writer).await
    }

    fn write_failed(&mut self, error: std::io::Error) -> S::Error {
        self.sinks.write_failed(error)
    }
}

impl FetchMany for ImapMailbox {
    async fn fetch_many<S: MessageSinks + Send>(
        &mut self,
        folder: &str,
        messages: &[MessageRef],
        sinks: &mut S,
    ) -> Result<(), FetchError<S::Error>> {
        let uid_validity = self.ensure_selected(folder).await?;
        let mut uids = Vec::with_capacity(messages.len());
        for m in messages {
            match m {
                MessageRef::Imap {
                    uid_validity: v,
                    uid,
                } if *v == uid_validity => uids.push(*uid),
                _ => {
                    return Err(FetchError::Mailbox(MailboxError::new(
                        mailbridge_types::ErrorClass::Transient,
                        ErrorKind::NotFound,
                        format!(
                            "{m} is not a message of {folder:?} as it is now (UIDVALIDITY {uid_validity}): list the folder again"
                        ),
                    )));
                }
            }
        }
        let mut by_uid = ByUid {
            sinks,
            uid_validity,
        };
        match self.client_mut().fetch_many(&uids, &mut by_uid).await {
            Ok(_) => Ok(()),
            Err(mailbridge_imap::FetchError::Imap(e)) => Err(FetchError::Mailbox(e.into())),
            Err(mailbridge_imap::FetchError::Sink(e)) => Err(FetchError::Sink(e)),
        }
    }
}

/// Messages fetched at once over Graph: Outlook's limit of requests in flight per app
/// and mailbox (the client holds to it too), so a folder takes a quarter of the round
/// trips one by one would.
pub const GRAPH_FETCHES_IN_FLIGHT: usize = 4;

impl FetchMany for GraphMailboxAccess {
    /// Graph ids name a message in any folder: `folder` is not needed.
    async fn fetch_many<S: MessageSinks + Send>(
        &mut self,
        _folder: &str,
        messages: &[MessageRef],
        sinks: &mut S,
    ) -> Result<(), FetchError<S::Error>> {
        use futures::StreamExt as _;
        let (client, mailbox, token) = (&self.client, &self.mailbox, &self.token);
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut waiting = messages.iter();
        loop {
            // Keep 4 requests going; completed messages are handed over in order.
            while in_flight.len() < GRAPH_FETCHES_IN_FLIGHT
                && sinks.wants_more()
                && let Some(message) = waiting.next()
            {
                let MessageRef::Graph { id } = message else {
                    return Err(FetchError::Mailbox(MailboxError::new(
                        mailbridge_types::ErrorClass::Permanent,
                        ErrorKind::Configuration,
                        format!("{message} is not a Graph message: the Graph side cannot fetch it"),
                    )));
                };
                let mut writer = sinks.open(None).await.map_err(FetchError::Sink)?;
                in_flight.push_back(async move {
                    let size = client.fetch_mime(token, mailbox, id, &mut writer).await;
                    (message, size, writer)
                });
            }
            let Some((message, size, writer)) = in_flight.next().await else {
                return Ok(());
            };
            let size = match size {
                Ok(size) => size,
                Err(mailbridge_graph::ClientError::Sink(local)) => {
                    return Err(FetchError::Sink(sinks.write_failed(local)));
                }
                Err(e) => return Err(FetchError::Mailbox(e.into())),
            };
            sinks
                .done(message, size, writer)
                .await
                .map_err(FetchError::Sink)?;
        }
    }
}
impl FetchMany for EwsMailbox {}
impl FetchMany for Pop3Mailbox {}

/// How to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Messages per batch (one directory fsync and one checkpoint each).
    pub batch: usize,
    /// File fsyncs running at once.
    pub parallel_syncs: usize,
    /// Always make message files in `tmp/` and rename them into `new/` (the classic
    /// Maildir way), even where files without a name (`O_TMPFILE`) work.
    pub named_files: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            parallel_syncs: DEFAULT_PARALLEL_SYNCS,
            named_files: false,
        }
    }
}

/// Where a download is, after each message.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Messages written in this run.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages this run downloads (the new ones not already in the Maildir).
    pub total: u64,
    /// Set when a batch became durable: the checkpoint to store now.
    pub durable: Option<Checkpoint>,
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages written.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// New messages that were already in the Maildir (from a run that crashed before
    /// its checkpoint was stored), not fetched again.
    pub already_present: u64,
    /// Store this: every message it covers is on disk.
    pub checkpoint: Checkpoint,
}

/// Told when a batch became durable, with the checkpoint that now covers it: the
/// place to store it. Awaited before the download goes on, so a checkpoint is stored
/// in order and never before the messages it covers are on disk.
pub trait Durable: Send {
    /// Why storing failed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Every message `checkpoint` covers is on disk.
    fn durable(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Nothing to store (the caller keeps [`Summary::checkpoint`] or watches
/// [`Progress::durable`]).
impl Durable for () {
    type Error = std::convert::Infallible;

    async fn durable(&mut self, _checkpoint: &Checkpoint) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why a download failed. Checkpoints handed out through [`Durable`] and
/// [`Progress::durable`] before the failure stay valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("failed to read new messages from the mailbox")]
    Mailbox(#[source] MailboxError),
    /// Writing the Maildir failed: a local fault (full disk, no permission, a
    /// directory gone), never the mailbox's.
    #[error("failed to write the maildir {path}{}", maildir_fix(source))]
    Maildir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to store the checkpoint of a durable batch")]
    Checkpoint(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("the download was stopped by its caller")]
    Stopped,
}

/// What to do about a Maildir write failure, by its kind.
fn maildir_fix(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            " (the disk is full: free space there, then fetch again; nothing written is lost)"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            " (mailbridge may not write there: give the user running it write access, or choose another --out)"
        }
        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::NotFound => {
            " (the directory changed under the download: it needs tmp/, new/ and cur/ directories)"
        }
        _ => "",
    }
}

impl DownloadError {
    /// What to do about it.
    pub fn class(&self) -> mailbridge_types::ErrorClass {
        match self {
            DownloadError::Mailbox(e) => e.class,
            DownloadError::Maildir { .. } => mailbridge_types::ErrorClass::Misconfigured,
            DownloadError::Checkpoint(_) => mailbridge_types::ErrorClass::Transient,
            DownloadError::Stopped => mailbridge_types::ErrorClass::Permanent,
        }
    }
}

fn maildir_err(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Maildir {
        path: path.to_owned(),
        source,
    }
}

/// The file name of a message in `new/` (and, before the `:2,` flags, in `cur/`):
/// the same on every run (and as every earlier version named it), so a message
/// already downloaded is recognised.
pub fn message_key(message: &MessageRef) -> String {
    let id = match message {
        MessageRef::Imap { uid_validity, uid } => return format!("imap-{uid_validity}-{uid}"),
        MessageRef::Graph { id } | MessageRef::Ews { id } => id.as_str(),
        MessageRef::Pop3 { uidl } => uidl.as_str(),
    };
    let mut key = String::from("id-");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            key.push(char::from(b));
        } else {
            key.push('=');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    if key.len() <= MAX_KEY {
        return key;
    }
    // Two independent 64-bit FNV-1a hashes of the id.
    let hash = |seed: u64| {
        id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "idh-{:016x}{:016x}-{}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x6c62_272e_07bb_0142),
        id.len()
    )
}

/// Creates `dir` and its missing parents with mode 0700 (mail is private, whatever the
/// umask).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates `tmp/`, `new/` and `cur/` (durably), drops stale `tmp/` files, and lists
/// the keys already in `new/` and `cur/`.
fn prepare(maildir: &Path) -> Result<HashSet<String>, DownloadError> {
    let mut created = false;
    for sub in ["tmp", "new", "cur"] {
        let dir = maildir.join(sub);
        if !dir.is_dir() {
            create_private_dir(&dir).map_err(maildir_err(&dir))?;
            created = true;
        }
    }
    if created {
        sync_dir(maildir)?;
        if let Some(parent) = maildir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    let tmp = maildir.join("tmp");
    let now = SystemTime::now();
    for entry in std::fs::read_dir(&tmp).map_err(maildir_err(&tmp))? {
        let entry = entry.map_err(maildir_err(&tmp))?;
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
        if stale || left_by_a_dead_run(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut present = HashSet::new();
    for sub in ["new", "cur"] {
        let dir = maildir.join(sub);
        let before = present.len();
        for entry in std::fs::read_dir(&dir).map_err(maildir_err(&dir))? {
            let entry = entry.map_err(maildir_err(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let key = name.split(':').next().unwrap_or_default();
            present.insert(key.to_owned());
        }
        // Messages found here are skipped and may be covered by this run's checkpoint:
        // make sure their names are on disk, not only in the cache (a run killed before
        // its directory fsync leaves them so).
        if present.len() > before {
            sync_dir(&dir)?;
        }
    }
    Ok(present)
}

/// True for a `tmp/` file of ours whose writer is gone: a placement probe (linked
/// and unlinked within microseconds, so one that is still there was left by a kill
/// between the two), or a message file named with the id of a process no longer
/// running. Other programs' files keep the 36-hour Maildir rule.
fn left_by_a_dead_run(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".mailbridge") else {
        return false;
    };
    if stem.ends_with(PROBE_SUFFIX) {
        return true;
    }
    // `<secs>.M<micros>P<pid>Q<seq>`
    let pid = stem
        .split_once('P')
        .and_then(|(_, rest)| rest.split_once('Q'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if pid == std::process::id() => false,
        Some(pid) => cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists(),
        None => false,
    }
}

/// Marks the `tmp/` name of a placement probe.
const PROBE_SUFFIX: &str = ".probe";

fn sync_dir(dir: &Path) -> Result<(), DownloadError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(maildir_err(dir))
}

/// Unique `tmp/` names within this process.
static TMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Threads making message files ahead of need.
const FILE_MAKERS: usize = 2;
/// Message files made ahead of need.
const FILES_AHEAD: usize = 32;

/// How a message file comes to be in `new/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Made without a name (`O_TMPFILE` in `new/`) and linked under its final name
    /// once complete and fsynced: a crash leaves nothing behind, and making one does
    /// not take the directory's lock (creating a named file costs about 0.8 ms on the
    /// project machine's ext4, one at a time per directory, which bounded the whole
    /// download).
    Anonymous,
    /// Made in `tmp/` and renamed into `new/` once complete and fsynced (the Maildir
    /// rule; for file systems and systems without `O_TMPFILE`).
    Named,
}

/// A `tmp/` file, removed when dropped unless it was renamed into `new/`.
struct TmpPath(Option<PathBuf>);

impl Drop for TmpPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A message file ready to be written.
struct Blank {
    file: std::fs::File,
    tmp: TmpPath,
}

fn tmp_name(maildir: &Path, kind: &str) -> PathBuf {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seq = TMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    maildir.join("tmp").join(format!(
        "{}.M{}P{}Q{seq}{kind}.mailbridge",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    ))
}

/// A file without a name in `dir`.
#[cfg(target_os = "linux")]
fn anonymous_file(dir: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(std::fs::File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn anonymous_file(_dir: &Path) -> std::io::Result<std::fs::File> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Gives the anonymous `file` the name `target`. A file already there is the same
/// message (same key) from an earlier run, and is kept.
#[cfg(target_os = "linux")]
fn link_anonymous(file: &std::fs::File, target: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(
        rustix::fs::CWD,
        fd.as_str(),
        rustix::fs::CWD,
        target,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn link_anonymous(_file: &std::fs::File, _target: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Anonymous files when this system and file system can make and link them (tried
/// once, in `tmp/`), named ones otherwise.
fn placement(maildir: &Path) -> Placement {
    let probe = || -> std::io::Result<()> {
        let file = anonymous_file(&maildir.join("new"))?;
        let target = tmp_name(maildir, PROBE_SUFFIX);
        link_anonymous(&file, &target)?;
        std::fs::remove_file(target)
    };
    if probe().is_ok() {
        Placement::Anonymous
    } else {
        Placement::Named
    }
}

fn make_blank(maildir: &Path, placement: Placement) -> std::io::Result<Blank> {
    if placement == Placement::Anonymous {
        return Ok(Blank {
            file: anonymous_file(&maildir.join("new"))?,
            tmp: TmpPath(None),
        });
    }
    let path = tmp_name(maildir, "");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path)?;
    Ok(Blank {
        file,
        tmp: TmpPath(Some(path)),
    })
}

/// Puts the complete, fsynced `file` into `new/` as `target`.
fn place(file: &std::fs::File, mut tmp: TmpPath, target: &Path) -> std::io::Result<()> {
    match &tmp.0 {
        Some(path) => {
            std::fs::rename(path, target)?;
            tmp.0 = None;
            Ok(())
        }
        None => link_anonymous(file, target),
    }
}

/// Message files made ahead of need by background threads, `budget` at most, so that
/// making one is off the path that reads from the server.
fn make_ahead(
    maildir: &Path,
    placement: Placement,
    budget: usize,
) -> mpsc::Receiver<std::io::Result<Blank>> {
    let (tx, rx) = mpsc::channel(FILES_AHEAD);
    let budget = Arc::new(AtomicUsize::new(budget));
    for _ in 0..FILE_MAKERS {
        let (tx, maildir, budget) = (tx.clone(), maildir.to_owned(), budget.clone());
        tokio::task::spawn_blocking(move || {
            while budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let made = make_blank(&maildir, placement);
                let failed = made.is_err();
                // A file the download no longer wants is dropped (and a named one
                // removed) here.
                if tx.blocking_send(made).is_err() || failed {
                    break;
                }
            }
        });
    }
    rx
}

/// The Maildir side of a download: one file per message (made ahead of need),
/// fsynced and placed into `new/` in the background, at most `parallel_syncs` at once.
struct MaildirSinks<'p, F, D> {
    maildir: PathBuf,
    placement: Placement,
    blanks: mpsc::Receiver<std::io::Result<Blank>>,
    syncs: Arc<Semaphore>,
    pending: Vec<JoinHandle<std::io::Result<()>>>,
    progress: &'p mut F,
    durable: &'p mut D,
    state: Progress,
    stopped: bool,
    /// The last batch becoming durable, and the checkpoint it makes durable.
    settling: Option<(Settling, Option<Checkpoint>)>,
    /// IMAP: the UIDs of the current batch handed over, to find the ones the server
    /// did not deliver.
    delivered: Vec<u32>,
}

/// The messages of one batch becoming durable: their fsyncs and placements, then the
/// fsync of `new/`.
type Settling = JoinHandle<Result<(), DownloadError>>;

impl<F: FnMut(&Progress) -> ControlFlow<()> + Send, D: Durable> MaildirSinks<'_, F, D> {
    /// Makes what was written so far durable, in the background: waits for every
    /// fsync and placement, then fsyncs `new/`.
    fn settle(&mut self) -> Settling {
        let jobs = std::mem::take(&mut self.pending);
        let new = self.maildir.join("new");
        tokio::spawn(async move {
            // Every job is awaited, even after one failed: none may place a file after
            // the download returned.
            let mut first_error = None;
            for job in jobs {
                if let Err(e) = job.await.map_err(std::io::Error::other).and_then(|r| r)
                    && first_error.is_none()
                {
                    first_error = Some(e);
                }
            }
            if let Some(e) = first_error {
                return Err(maildir_err(&new)(e));
            }
            let dir = new.clone();
            tokio::task::spawn_blocking(move || sync_dir(&dir))
                .await
                .map_err(|e| maildir_err(&new)(std::io::Error::other(e)))?
        })
    }

    /// Hands out the checkpoint of the batch becoming durable once it is (`wait`:
    /// waits for it; otherwise only if it already is).
    async fn hand_out(&mut self, wait: bool) -> Result<(), DownloadError> {
        if !self
            .settling
            .as_ref()
            .is_some_and(|(job, _)| wait || job.is_finished())
        {
            return Ok(());
        }
        let Some((job, durable)) = self.settling.take() else {
            return Ok(());
        };
        settled(job, &self.maildir).await?;
        if let Some(durable) = durable {
            self.durable
                .durable(&durable)
                .await
                .map_err(|e| DownloadError::Checkpoint(Box::new(e)))?;
            self.state.durable = Some(durable);
            let flow = (self.progress)(&self.state);
            self.state.durable = None;
            if flow.is_break() {
                self.stopped = true;
                return Err(DownloadError::Stopped);
            }
        }
        Ok(())
    }

    /// Before returning early (stopped, failed): lets every fsync and placement already
    /// started finish and fsyncs `new/`, so nothing changes in the Maildir after the
    /// download has returned. Failures here are the caller's error already.
    async fn wind_down(&mut self) {
        if let Some((job, _)) = self.settling.take() {
            let _ = job.await;
        }
        let _ = settled(self.settle(), &self.maildir).await;
    }
}

async fn settled(job: Settling, maildir: &Path) -> Result<(), DownloadError> {
    job.await
        .map_err(|e| maildir_err(maildir)(std::io::Error::other(e)))?
}

/// A message file being written: buffered, and its `tmp/` path when named (removed if
/// the message is not completed).
struct MessageFile {
    file: BufWriter<tokio::fs::File>,
    tmp: TmpPath,
}

impl AsyncWrite for MessageFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl<F: FnMut(&Progress) -> ControlFlow<()> + Send, D: Durable> MessageSinks
    for MaildirSinks<'_, F, D>
{
    type Writer = MessageFile;
    type Error = DownloadError;

    async fn open(&mut self, _size: Option<u64>) -> Result<Self::Writer, DownloadError> {
        let made = if let Some(made) = self.blanks.recv().await {
            made
        } else {
            // More messages than listed: make one here.
            let (dir, placement) = (self.maildir.clone(), self.placement);
            tokio::task::spawn_blocking(move || make_blank(&dir, placement))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
        };
        match made {
            Ok(blank) => Ok(MessageFile {
                file: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(blank.file)),
                tmp: blank.tmp,
            }),
            Err(e) => Err(maildir_err(&self.writing_dir())(e)),
        }
    }

    async fn done(
        &mut self,
        message: &MessageRef,
        size: u64,
        writer: Self::Writer,
    ) -> Result<(), DownloadError> {
        let MessageFile {
            file: mut writer,
            tmp,
        } = writer;
        let target = self.maildir.join("new").join(message_key(message));
        if let Err(e) = writer.flush().await {
            drop(tmp);
            return Err(maildir_err(&target)(e));
        }
        let file = writer.into_inner().into_std().await;
        let permit = self
            .syncs
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| maildir_err(&target)(std::io::Error::other(e)))?;
        self.pending.push(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            file.sync_all()?;
            place(&file, tmp, &target)
        }));
        if let MessageRef::Imap { uid, .. } = message {
            self.delivered.push(*uid);
        }
        self.state.messages += 1;
        self.state.bytes += size;
        if (self.progress)(&self.state).is_break() {
            self.stopped = true;
            return Err(DownloadError::Stopped);
        }
        self.hand_out(false).await
    }

    fn write_failed(&mut self, error: std::io::Error) -> DownloadError {
        maildir_err(&self.writing_dir())(error)
    }
}

impl<F, D> MaildirSinks<'_, F, D> {
    /// Where message files are being written.
    fn writing_dir(&self) -> PathBuf {
        self.maildir.join(match self.placement {
            Placement::Anonymous => "new",
            Placement::Named => "tmp",
        })
    }
}

/// Downloads the messages of `folder` new since `checkpoint` into the Maildir at
/// `maildir` (created if missing), durably: [`download_listed`] of
/// [`Mailbox::new_since`]'s listing.
pub async fn download<M, D, F>(
    mailbox: &mut M,
    folder: &str,
    checkpoint: &Checkpoint,
    maildir: &Path,
    options: &DownloadOptions,
    durable: &mut D,
    progress: F,
) -> Result<Summary, DownloadError>
where
    M: FetchMany + Send,
    D: Durable,
    F: FnMut(&Progress) -> ControlFlow<()> + Send,
{
    let listed = mailbox
        .new_since(folder, checkpoint)
        .await
        .map_err(DownloadError::Mailbox)?;
    download_listed(mailbox, folder, listed, maildir, options, durable, progress).await
}

/// Downloads `listed` (a listing of `folder`: [`Mailbox::new_since`] or
/// [`Mailbox::received_since`]) into the Maildir at `maildir` (created if missing),
/// durably, ending with the listing's checkpoint. Messages already in the Maildir
/// (a run that stopped before its checkpoint was stored) are not fetched again.
///
/// After each batch whose files and `new/` are fsynced, `durable` is given the
/// checkpoint covering it (and awaited) before the download goes on; `progress` is
/// called after each message and after each durable batch (with the checkpoint in
/// [`Progress::durable`]). Returning `ControlFlow::Break` stops the download at once,
/// as a crash would: nothing more is fetched and no further checkpoint handed out.
/// Whether stopped or failed, what was already written is finished and `new/`
/// fsynced before it returns, so the Maildir does not change after the call.
///
/// A batch becomes durable while the next one arrives: its checkpoint is handed out
/// as soon as its files and `new/` are fsynced (seen after each message, and waited
/// for at the end of the next batch).
pub async fn download_listed<M, D, F>(
    mailbox: &mut M,
    folder: &str,
    listed: NewMessages,
    maildir: &Path,
    options: &DownloadOptions,
    durable: &mut D,
    mut progress: F,
) -> Result<Summary, DownloadError>
where
    M: FetchMany + Send,
    D: Durable,
    F: FnMut(&Progress) -> ControlFlow<()> + Send,
{
    let dir = maildir.to_owned();
    let named = options.named_files;
    let (present, placement) = tokio::task::spawn_blocking(move || {
        prepare(&dir).map(|present| {
            let how = if named {
                Placement::Named
            } else {
                placement(&dir)
            };
            (present, how)
        })
    })
    .await
    .map_err(|e| maildir_err(maildir)(std::io::Error::other(e)))??;
    let (wanted, known): (Vec<MessageRef>, Vec<MessageRef>) = listed
        .messages
        .into_iter()
        .partition(|m| !present.contains(&message_key(m)));
    let mut sinks = MaildirSinks {
        maildir: maildir.to_owned(),
        placement,
        blanks: make_ahead(maildir, placement, wanted.len()),
        syncs: Arc::new(Semaphore::new(options.parallel_syncs.max(1))),
        pending: Vec::new(),
        progress: &mut progress,
        durable,
        state: Progress {
            messages: 0,
            bytes: 0,
            total: wanted.len() as u64,
            durable: None,
        },
        stopped: false,
        settling: None,
        delivered: Vec::new(),
    };
    // IMAP: the highest UID a checkpoint may cover, once a listed message was not
    // delivered (see [`first_undelivered`]).
    let mut ceiling: Option<u32> = None;
    let batches = wanted.chunks(options.batch.max(1));
    let count = batches.len();
    for (i, batch) in batches.enumerate() {
        let fetched = mailbox.fetch_many(folder, batch, &mut sinks).await;
        if sinks.stopped {
            sinks.wind_down().await;
            return Err(DownloadError::Stopped);
        }
        // The previous batch, if it was not handed out while this one arrived.
        if let Err(e) = sinks.hand_out(true).await {
            sinks.wind_down().await;
            return Err(e);
        }
        match fetched {
            Ok(()) => {}
            Err(FetchError::Sink(local)) => {
                // Keep what is complete; the sink's own failure is the answer.
                sinks.wind_down().await;
                return Err(local);
            }
            Err(FetchError::Mailbox(e)) => {
                // Keep what is complete, and drop what is not; a local failure
                // while finishing comes first.
                settled(sinks.settle(), maildir).await?;
                return Err(DownloadError::Mailbox(e));
            }
        }
        if let Some(missing) = first_undelivered(batch, &mut sinks.delivered) {
            tracing::warn!(
                uid = missing,
                "the IMAP server did not deliver a listed message: the checkpoint stays before it, so the next run asks again"
            );
            let below = missing.saturating_sub(1);
            ceiling = Some(ceiling.map_or(below, |c| c.min(below)));
        }
        // Over IMAP every batch has its own checkpoint (UIDs ascend); elsewhere only
        // the round's final one exists.
        let durable = match (&listed.checkpoint, batch.last()) {
            _ if i + 1 == count => Some(listed.checkpoint.clone()),
            (
                Checkpoint::Imap { uid_validity, .. },
                Some(MessageRef::Imap {
                    uid_validity: v,
                    uid,
                }),
            ) if v == uid_validity => Some(Checkpoint::Imap {
                uid_validity: *uid_validity,
                last_uid: *uid,
            }),
            _ => None,
        };
        sinks.settling = Some((sinks.settle(), durable.map(|d| below_ceiling(d, ceiling))));
    }
    sinks.hand_out(true).await?;
    Ok(Summary {
        messages: sinks.state.messages,
        bytes: sinks.state.bytes,
        already_present: known.len() as u64,
        checkpoint: below_ceiling(listed.checkpoint, ceiling),
    })
}

/// IMAP: the first UID of `batch` not among `delivered` (which is emptied for the
/// next batch). A server may leave out a message expunged since the listing, or (a
/// broken or hostile one) answer about others instead; either way no checkpoint may
/// pass a UID that was asked for and not delivered, or the message would be skipped
/// for ever. The next run lists from before it again: an expunged message is not
/// listed then, and the messages after it are recognised in the Maildir and not
/// fetched again.
fn first_undelivered(batch: &[MessageRef], delivered: &mut Vec<u32>) -> Option<u32> {
    delivered.sort_unstable();
    let missing = batch
        .iter()
        .filter_map(|m| match m {
            MessageRef::Imap { uid, .. } => Some(*uid),
            _ => None,
        })
        .find(|uid| delivered.binary_search(uid).is_err());
    delivered.clear();
    missing
}

/// `checkpoint`, covering no UID above `ceiling` (IMAP).
fn below_ceiling(checkpoint: Checkpoint, ceiling: Option<u32>) -> Checkpoint {
    match (checkpoint, ceiling) {
        (
            Checkpoint::Imap {
                uid_validity,
                last_uid,
            },
            Some(ceiling),
        ) => Checkpoint::Imap {
            uid_validity,
            last_uid: last_uid.min(ceiling),
        },
        (checkpoint, _) => checkpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn maildir_directories_are_created_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail/INBOX");
        prepare(&maildir).unwrap();
        for d in [
            "mail",
            "mail/INBOX",
            "mail/INBOX/tmp",
            "mail/INBOX/new",
            "mail/INBOX/cur",
        ] {
            let mode = std::fs::metadata(dir.path().join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}: {mode:o}");
        }
    }

    #[test]
    fn keys_are_stable_and_safe_file_names() {
        // The names earlier versions gave (from the id as text): a Maildir they
        // wrote is recognised, and nothing in it fetched again.
        let imap = MessageRef::Imap {
            uid_validity: 7,
            uid: 42,
        };
        assert_eq!(message_key(&imap), "imap-7-42");
        let m = |id: &str| MessageRef::Graph { id: id.into() };
        assert_eq!(message_key(&m("AAMk/a+b=")), "id-AAMk=2Fa=2Bb=3D");
        assert_eq!(
            message_key(&MessageRef::Ews {
                id: "AAMk/a+b=".into()
            }),
            "id-AAMk=2Fa=2Bb=3D"
        );
        assert_eq!(
            message_key(&MessageRef::Pop3 {
                uidl: "dup 2".into()
            }),
            "id-dup=202"
        );
        let long = "x/".repeat(200);
        let k = message_key(&m(&long));
        assert!(k.starts_with("idh-") && k.len() < MAX_KEY, "{k}");
        assert_eq!(k, message_key(&m(&long)));
        assert_ne!(k, message_key(&m(&"x/".repeat(201))));
        for id in ["a:b", "../x", "\u{e9}t\u{e9}", ""] {
            let k = message_key(&m(id));
            assert!(!k.contains(['/', ':', '.']), "{k}");
        }
    }

    /// A transport that writes each message and, like the real ones, reports a failed
    /// write as its own (connection) failure.
    struct OneByOne;

    impl Mailbox for OneByOne {
        async fn new_since(
            &mut self,
            _folder: &str,
            _checkpoint: &Checkpoint,
        ) -> Result<NewMessages, MailboxError> {
            unreachable!("not listed in this test")
        }
        async fn received_since(
            &mut self,
            _folder: &str,
            _since: time::OffsetDateTime,
        ) -> Result<NewMessages, MailboxError> {
            unreachable!("not listed in this test")
        }
        async fn fetch<W: AsyncWrite + Unpin + Send>(
            &mut self,
            _message: &MessageRef,
            sink: &mut W,
        ) -> Result<u64, MailboxError> {
            let write = async {
                sink.write_all(b"Subject: x\r\n\r\nbody").await?;
                sink.flush().await
            };
            write.await.map_err(|e| {
                MailboxError::with_source(
                    mailbridge_types::ErrorClass::Transient,
                    ErrorKind::Connection,
                    "POP3: the connection to the server failed",
                    e,
                )
            })?;
            Ok(16)
        }
        async fn mark_read(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
            Ok(())
        }
        async fn move_to(
            &mut self,
            _message: &MessageRef,
            _folder: &str,
        ) -> Result<(), MailboxError> {
            Ok(())
        }
        async fn delete(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
            Ok(())
        }
    }

    impl FetchMany for OneByOne {}

    /// Writers onto `/dev/full`: every write fails with "no space left on device".
    struct DiskFull {
        done: usize,
    }

    impl MessageSinks for DiskFull {
        type Writer = tokio::fs::File;
        type Error = DownloadError;

        async fn open(&mut self, _size: Option<u64>) -> Result<tokio::fs::File, DownloadError> {
            tokio::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .await
                .map_err(maildir_err(Path::new("/dev/full")))
        }

        async fn done(
            &mut self,
            _message: &MessageRef,
            _size: u64,
            _writer: tokio::fs::File,
        ) -> Result<(), DownloadError> {
            self.done += 1;
            Ok(())
        }

        fn write_failed(&mut self, error: std::io::Error) -> DownloadError {
            maildir_err(Path::new("/dev/full"))(error)
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_is_the_sinks_failure_not_the_transports() {
        let mut sinks = DiskFull { done: 0 };
        let messages = [MessageRef::Pop3 { uidl: "a".into() }];
        let err = OneByOne
            .fetch_many("INBOX", &messages, &mut sinks)
            .await
            .unwrap_err();
        let FetchError::Sink(err) = err else {
            panic!("taken for the transport's failure: {err:?}");
        };
        assert_eq!(sinks.done, 0);
        assert_eq!(err.class(), mailbridge_types::ErrorClass::Misconfigured);
        let text = err.to_string();
        assert!(
            text.contains("failed to write the maildir /dev/full")
                && text.contains("the disk is full"),
            "{text}"
        );
        let DownloadError::Maildir { source, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
    }

    #[test]
    fn both_placements_put_complete_files_into_new_and_leave_nothing_behind() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("m");
        prepare(&maildir).unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(placement(&maildir), Placement::Anonymous);
        for (n, how) in [Placement::Anonymous, Placement::Named]
            .into_iter()
            .enumerate()
        {
            if how == Placement::Anonymous && placement(&maildir) != how {
                continue;
            }
            // A file made and not used leaves nothing.
            drop(make_blank(&maildir, how).unwrap());
            let mut blank = make_blank(&maildir, how).unwrap();
            blank.file.write_all(b"Subject: x\r\n\r\nbody").unwrap();
            blank.file.sync_all().unwrap();
            let target = maildir.join("new").join(format!("key-{n}"));
            place(&blank.file, blank.tmp, &target).unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"Subject: x\r\n\r\nbody");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&target).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{how:?}: messages are private");
            }
            // Placing the same message again keeps the one there.
            let mut again = make_blank(&maildir, how).unwrap();
            again.file.write_all(b"Subject: x\r\n\r\nbody").unwrap();
            place(&again.file, again.tmp, &target).unwrap();
            assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);
        }
        assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 2);
    }

    #[test]
    fn a_start_removes_what_a_killed_run_left_in_tmp_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("m");
        prepare(&maildir).unwrap();
        let tmp = maildir.join("tmp");
        // A probe a kill left between its link and its unlink (0 bytes, fresh).
        let probe = tmp_name(&maildir, PROBE_SUFFIX);
        std::fs::write(&probe, b"").unwrap();
        // A message file of a process that is gone (pid far above pid_max).
        let dead = tmp.join("1765000000.M1P4194305Q0.mailbridge");
        std::fs::write(&dead, b"Subject: half").unwrap();
        // This process's own file, another program's file: kept.
        let own = tmp_name(&maildir, "");
        std::fs::write(&own, b"x").unwrap();
        let other = tmp.join("1765000000.M1P1Q1.otherhost");
        std::fs::write(&other, b"x").unwrap();
        prepare(&maildir).unwrap();
        assert!(!probe.exists(), "the probe left by a kill is removed");
        assert!(!dead.exists(), "a dead run's file is removed");
        assert!(own.exists() && other.exists());
    }
}
