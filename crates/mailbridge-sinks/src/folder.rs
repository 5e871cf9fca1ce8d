//! The folder sink: each message one `.eml` file named by its idempotency key.
//!
//! A message is copied from its spool into `<dir>/.mailbridge-tmp/<key>.<unique>`,
//! fsynced, then hard-linked as `<dir>/<key>.eml` and the directory fsynced. `link`
//! never replaces a file, so a second delivery of the same message (after a crash
//! between the link and the checkpoint, or a resync) finds the first one there and
//! adds nothing, and no reader ever sees a partial `.eml`: exactly once per key.
//! Temporary files of a run that died are removed when the sink is opened.
//!
//! The same sink writes a **Maildir** ([`FolderSink::open_maildir`]): the message is
//! written into `<dir>/tmp/.mailbridge-<key>.<unique>` and linked as `<dir>/new/<key>`
//! (32 hex digits: a valid Maildir name), so mail programs and IMAP servers (Dovecot)
//! read the folder as it fills. A second delivery of a key finds `new/<key>` and adds
//! nothing; once a reader has moved the message to `cur/` that check no longer sees
//! it, so a redelivery after a crash (at most the batch that was in flight) could add
//! it again if a reader took it in that window. Only this sink's own temporary files
//! (`tmp/.mailbridge-*`) are removed on opening: other programs deliver there too.
//!
//! A watcher delivering many messages at once uses [`FolderSink::stage`] and a
//! [`Batch`] instead: nothing is written when a message is staged, and
//! [`Batch::commit`] then fsyncs the watcher's spool files of the batch at once (on
//! several threads, so the file system commits them together), hard-links each into
//! place as it is (no copy, when the spool is on the folder's file system; else a copy
//! through the temporary directory) and fsyncs each folder once. The guarantees are
//! the same (a linked `.eml` is always complete and durable, never replaced); what
//! changes is that a message is placed, and counts as accepted, only when its batch is
//! committed, which the watcher does before it stores a checkpoint covering it.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{Accepted, Delivery, SinkError, ensure_dir, random_suffix};

/// Where the temporary files live, inside the target directory (same file system, so
/// the link is atomic); readers skip names starting with a dot.
pub const TMP_DIR: &str = ".mailbridge-tmp";

/// Threads fsyncing a batch's files at once (a journaling file system commits
/// concurrent fsyncs together).
pub const PARALLEL_SYNCS: usize = 16;

/// A folder of `.eml` files, or a Maildir.
#[derive(Debug, Clone)]
pub struct FolderSink {
    dir: PathBuf,
    maildir: bool,
}

/// The prefix of this sink's temporary files in a Maildir's shared `tmp/`.
const MAILDIR_TMP_PREFIX: &str = ".mailbridge-";

impl FolderSink {
    /// Opens (creating it if needed) the folder `dir`, and removes the temporary files
    /// a killed run left behind.
    pub async fn open(dir: &Path) -> Result<Self, SinkError> {
        ensure_dir(&dir.join(TMP_DIR)).await?;
        let sink = Self {
            dir: dir.to_owned(),
            maildir: false,
        };
        sink.remove_leftovers().await?;
        Ok(sink)
    }

    /// Opens (creating `tmp`, `new` and `cur` if needed) the Maildir `dir`, and
    /// removes the temporary files a killed run of this sink left in its `tmp`.
    pub async fn open_maildir(dir: &Path) -> Result<Self, SinkError> {
        for sub in ["tmp", "new", "cur"] {
            ensure_dir(&dir.join(sub)).await?;
        }
        let sink = Self {
            dir: dir.to_owned(),
            maildir: true,
        };
        sink.remove_leftovers().await?;
        Ok(sink)
    }

    /// Where temporary files are written (same file system as the target).
    fn tmp_dir(&self) -> PathBuf {
        if self.maildir {
            self.dir.join("tmp")
        } else {
            self.dir.join(TMP_DIR)
        }
    }

    /// A new temporary file's path for `key`.
    fn tmp_path(&self, key: &crate::IdempotencyKey) -> PathBuf {
        let name = if self.maildir {
            format!("{MAILDIR_TMP_PREFIX}{key}.{}", random_suffix())
        } else {
            format!("{key}.{}", random_suffix())
        };
        self.tmp_dir().join(name)
    }

    /// The directory a placed message is in (fsynced after the link).
    fn target_dir(&self) -> PathBuf {
        if self.maildir {
            self.dir.join("new")
        } else {
            self.dir.clone()
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a message with this key is (or will be) in.
    pub fn path_of(&self, key: &crate::IdempotencyKey) -> PathBuf {
        if self.maildir {
            self.dir.join("new").join(key.to_string())
        } else {
            self.dir.join(format!("{key}.eml"))
        }
    }

    /// Writes the message, once.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Accepted, SinkError> {
        let target = self.path_of(&delivery.key);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(Accepted {
                location: target.display().to_string(),
                already_there: true,
            });
        }
        let tmp = self.tmp_path(&delivery.key);
        let io = |what: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| SinkError::Io { what, path, source }
        };
        let spool = delivery.spool.clone();
        let tmp_for_copy = tmp.clone();
        // Copy and fsync on a blocking thread: std's copy uses copy_file_range.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::copy(&spool, &tmp_for_copy)?;
            std::fs::File::open(&tmp_for_copy)?.sync_all()
        })
        .await
        .map_err(|e| SinkError::Io {
            what: "writing the message",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(io("writing the message", &tmp))?;
        let linked = tokio::fs::hard_link(&tmp, &target).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        let already_there = match linked {
            Ok(()) => false,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => true,
            Err(e) => return Err(io("placing the message", &target)(e)),
        };
        let target_dir = self.target_dir();
        sync_dir(&target_dir)
            .await
            .map_err(io("making the folder durable", &target_dir))?;
        Ok(Accepted {
            location: target.display().to_string(),
            already_there,
        })
    }

    /// Adds the message to `batch` without writing anything yet: [`Batch::commit`]
    /// makes it durable and places it, taking the spool file itself (a hard link, no
    /// copy) when the spool is on the folder's file system, else copying it. The
    /// spool file must stay as it is until the batch is committed or dropped (the
    /// watcher removes its spool files only after the commit). A message whose file is
    /// there already is not staged (`already_there`). Until the batch is committed
    /// nothing is visible in the folder.
    pub async fn stage(
        &self,
        delivery: &Delivery,
        batch: &mut Batch,
    ) -> Result<Accepted, SinkError> {
        let target = self.path_of(&delivery.key);
        if batch.targets.contains(&target) || tokio::fs::try_exists(&target).await.unwrap_or(false)
        {
            return Ok(Accepted {
                location: target.display().to_string(),
                already_there: true,
            });
        }
        batch.targets.insert(target.clone());
        batch.staged.push(Staged {
            spool: delivery.spool.clone(),
            tmp: self.tmp_path(&delivery.key),
            target: target.clone(),
            dir: self.target_dir(),
        });
        Ok(Accepted {
            location: target.display().to_string(),
            already_there: false,
        })
    }

    async fn remove_leftovers(&self) -> Result<(), SinkError> {
        if self.maildir {
            // Other programs deliver through a Maildir's `tmp` too: only ours go.
            remove_tmp_entries(&self.tmp_dir(), |name| name.starts_with(MAILDIR_TMP_PREFIX)).await
        } else {
            remove_tmp_entries(&self.dir.join(TMP_DIR), |_| true).await
        }
    }
}

/// One message staged by [`FolderSink::stage`], not yet placed.
#[derive(Debug)]
struct Staged {
    /// The watcher's spool file of the message (read only, never changed here).
    spool: PathBuf,
    /// Where a copy goes when the spool cannot be linked (another file system, or
    /// linked into another folder of the batch already).
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
}

/// Messages staged into folder sinks, made durable and placed together by
/// [`Batch::commit`] (one batch may span several folder sinks).
#[derive(Debug, Default)]
pub struct Batch {
    staged: Vec<Staged>,
    /// The targets staged, so a key staged twice is written once.
    targets: BTreeSet<PathBuf>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing waits to be committed.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// How many messages wait to be committed.
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Makes every staged message durable and visible: each spool file is fsynced
    /// and hard-linked into place (one spool is linked into one folder only; into
    /// any other, or across file systems, it is copied into the folder's temporary
    /// directory first, fsynced and linked from there), on up to [`PARALLEL_SYNCS`]
    /// threads; a link never replaces a file (one there already is kept); then each
    /// folder is fsynced once. On success the batch is empty again. On failure the
    /// messages not linked yet are not in their folder: the caller delivers them
    /// again (a message linked before the failure is found there then).
    pub async fn commit(&mut self) -> Result<(), SinkError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        self.targets.clear();
        tokio::task::spawn_blocking(move || place_all(&staged))
            .await
            .map_err(|e| SinkError::Io {
                what: "making the folder's messages durable",
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })?
    }
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SinkError {
    let path = path.to_owned();
    move |source| SinkError::Io { what, path, source }
}

/// Makes one staged message durable and links it into place (never replacing a
/// file). `link_spool`: whether the spool file itself may become the placed file.
fn place(s: &Staged, link_spool: bool) -> Result<(), SinkError> {
    let link = |from: &Path| match std::fs::hard_link(from, &s.target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    };
    if link_spool {
        std::fs::File::open(&s.spool)
            .and_then(|f| f.sync_all())
            .map_err(io_error("reading the spooled message", &s.spool))?;
        match link(&s.spool) {
            Ok(()) => return Ok(()),
            // Another file system (or one without hard links between these
            // directories): copied below.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::CrossesDevices | ErrorKind::PermissionDenied
                ) => {}
            Err(e) => return Err(io_error("placing the message", &s.target)(e)),
        }
    }
    // std's copy uses copy_file_range: no bytes pass through user space.
    let copied = std::fs::copy(&s.spool, &s.tmp)
        .and_then(|_| std::fs::File::open(&s.tmp)?.sync_all())
        .map_err(io_error("writing the message", &s.tmp))
        .and_then(|()| link(&s.tmp).map_err(io_error("placing the message", &s.target)));
    // Linked or not, the temporary name goes (a linked file keeps its other name).
    let _ = std::fs::remove_file(&s.tmp);
    copied
}

fn place_all(staged: &[Staged]) -> Result<(), SinkError> {
    // A spool linked into a folder is that folder's file: any other folder of the
    // batch gets a copy of it.
    let mut spools = std::collections::HashSet::new();
    let jobs: Vec<(&Staged, bool)> = staged
        .iter()
        .map(|s| (s, spools.insert(&s.spool)))
        .collect();
    // The files on several threads, each thread a share of them: a journaling file
    // system commits concurrent fsyncs together.
    let threads = PARALLEL_SYNCS.min(jobs.len()).max(1);
    let share = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(share)
            .map(|chunk| {
                scope.spawn(move || -> Result<(), SinkError> {
                    chunk
                        .iter()
                        .try_for_each(|(s, link_spool)| place(s, *link_spool))
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| {
                Err(SinkError::Io {
                    what: "making the folder's messages durable",
                    path: PathBuf::new(),
                    source: std::io::Error::other("an fsync thread panicked"),
                })
            })
        })
    })?;
    let dirs: BTreeSet<&PathBuf> = staged.iter().map(|s| &s.dir).collect();
    for dir in dirs {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io_error("making the folder durable", dir))?;
    }
    Ok(())
}

/// Removes the entries of a sink's temporary directory (files and directories) whose
/// name `ours` accepts: what a killed run left there was never linked into place.
pub(crate) async fn remove_tmp_entries(
    tmp: &Path,
    ours: impl Fn(&str) -> bool,
) -> Result<(), SinkError> {
    let err = |source| SinkError::Io {
        what: "cleaning the sink's temporary directory",
        path: tmp.to_owned(),
        source,
    };
    let mut entries = tokio::fs::read_dir(tmp).await.map_err(err)?;
    while let Some(entry) = entries.next_entry().await.map_err(err)? {
        if !ours(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().await.map_err(err)?.is_dir() {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

/// fsync of a directory, so a link or rename in it survives a power cut.
pub(crate) async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}
