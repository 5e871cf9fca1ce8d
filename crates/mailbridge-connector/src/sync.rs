//! The one sync loop: list what is new in a folder, hand it to a sink, and store each
//! checkpoint only after the sink made the messages it covers durable.
//!
//! The sink today is the Maildir download ([`MaildirSink`]): it writes each message
//! into its own fsynced file and reports a checkpoint once a batch and `new/` are
//! fsynced; the loop stores it then, before the download goes on (awaited, in order,
//! no channel and no background task). A failure of the mailbox, of the sink or of
//! the store ends the run with what was stored still true: the next run lists again
//! from there, and the messages already in the Maildir are recognised by name and not
//! delivered twice.

use std::ops::ControlFlow;
use std::path::PathBuf;

use mailbridge_mailbox::download::{
    DownloadError, DownloadOptions, Durable, FetchMany, Progress, Summary, download_listed,
};
use mailbridge_mailbox::mailbox::{Checkpoint, MailboxError};
use mailbridge_types::ErrorClass;
use time::OffsetDateTime;

use crate::checkpoint::{CheckpointStore, checkpoint_key};

/// Where a sync starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Where the last sync into this sink stopped (its stored checkpoint), or the
    /// whole folder the first time.
    Last,
    /// The whole folder (messages already in the sink are not delivered again).
    All,
    /// Messages received at or after this instant ([`Mailbox::received_since`]).
    ///
    /// [`Mailbox::received_since`]: mailbridge_mailbox::mailbox::Mailbox::received_since
    Since(OffsetDateTime),
}

/// A Maildir as the sink: the durable download into `dir`.
#[derive(Debug, Clone)]
pub struct MaildirSink {
    /// The Maildir (created when missing).
    pub dir: PathBuf,
    /// Batches, fsyncs, file placement.
    pub options: DownloadOptions,
}

/// Why a sync stopped. What was stored before it stays true.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("failed to read where the last sync of {folder} stopped")]
    LoadCheckpoint {
        folder: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("failed to list the new messages of {folder}")]
    List {
        folder: String,
        #[source]
        source: MailboxError,
    },
    #[error("failed to deliver the new messages of {folder}")]
    Deliver {
        folder: String,
        #[source]
        source: DownloadError,
    },
    #[error("failed to store where the sync of {folder} stopped")]
    SaveCheckpoint {
        folder: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl SyncError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            SyncError::LoadCheckpoint { .. } | SyncError::SaveCheckpoint { .. } => {
                ErrorClass::Transient
            }
            SyncError::List { source, .. } => source.class,
            SyncError::Deliver { source, .. } => source.class(),
        }
    }
}

/// Stores each durable checkpoint as the sink reports it.
struct Storing<'a, S> {
    store: &'a S,
    account: &'a str,
    key: &'a str,
}

impl<S: CheckpointStore> Durable for Storing<'_, S> {
    type Error = S::Error;

    async fn durable(&mut self, checkpoint: &Checkpoint) -> Result<(), S::Error> {
        self.store.save(self.account, self.key, checkpoint).await
    }
}

/// Syncs `folder` of `account` into `sink`: lists what is new since `start` (for
/// [`Start::Last`], the checkpoint stored for the folder and the sink's directory,
/// [`checkpoint_key`]), delivers it, and stores each checkpoint the sink made
/// durable, then the listing's own. `progress` is
/// called after each message and each durable batch; `ControlFlow::Break` stops the
/// run as a crash would (nothing more fetched or stored).
pub async fn sync<M, S, F>(
    mailbox: &mut M,
    account: &str,
    folder: &str,
    start: Start,
    sink: &MaildirSink,
    store: &S,
    progress: F,
) -> Result<Summary, SyncError>
where
    M: FetchMany + Send,
    S: CheckpointStore,
    F: FnMut(&Progress) -> ControlFlow<()> + Send,
{
    let key = &checkpoint_key(folder, &sink.dir);
    let listed = match start {
        Start::Since(since) => mailbox.received_since(folder, since).await,
        Start::All => mailbox.new_since(folder, &Checkpoint::Start).await,
        Start::Last => {
            let checkpoint = store
                .load(account, key)
                .await
                .map_err(|e| SyncError::LoadCheckpoint {
                    folder: folder.to_owned(),
                    source: Box::new(e),
                })?
                .unwrap_or(Checkpoint::Start);
            mailbox.new_since(folder, &checkpoint).await
        }
    }
    .map_err(|source| SyncError::List {
        folder: folder.to_owned(),
        source,
    })?;
    let mut storing = Storing {
        store,
        account,
        key,
    };
    let summary = download_listed(
        mailbox,
        folder,
        listed,
        &sink.dir,
        &sink.options,
        &mut storing,
        progress,
    )
    .await
    .map_err(|source| SyncError::Deliver {
        folder: folder.to_owned(),
        source,
    })?;
    // The listing's checkpoint (a round without messages, or one whose last batch
    // was already stored, stores the same again: harmless).
    store
        .save(account, key, &summary.checkpoint)
        .await
        .map_err(|e| SyncError::SaveCheckpoint {
            folder: folder.to_owned(),
            source: Box::new(e),
        })?;
    Ok(summary)
}
