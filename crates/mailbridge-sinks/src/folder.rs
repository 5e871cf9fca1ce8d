//! The folder sink: each message one `.eml` file named by its idempotency key.
//!
//! A message is copied from its spool into `<dir>/.mailbridge-tmp/<key>.<unique>`,
//! fsynced, then hard-linked as `<dir>/<key>.eml` and the directory fsynced. `link`
//! never replaces a file, so a second delivery of the same message (after a crash
//! between the link and the checkpoint, or a resync) finds the first one there and
//! adds nothing, and no reader ever sees a partial `.eml`: exactly once per key.
//! Temporary files of a run that died are removed when the sink is opened.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{Accepted, Delivery, SinkError, ensure_dir, random_suffix};

/// Where the temporary files live, inside the target directory (same file system, so
/// the link is atomic); readers skip names starting with a dot.
pub const TMP_DIR: &str = ".mailbridge-tmp";

/// A folder of `.eml` files.
#[derive(Debug, Clone)]
pub struct FolderSink {
    dir: PathBuf,
}

impl FolderSink {
    /// Opens (creating it if needed) the folder `dir`, and removes the temporary files
    /// a killed run left behind.
    pub async fn open(dir: &Path) -> Result<Self, SinkError> {
        ensure_dir(&dir.join(TMP_DIR)).await?;
        let sink = Self {
            dir: dir.to_owned(),
        };
        sink.remove_leftovers().await?;
        Ok(sink)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a message with this key is (or will be) in.
    pub fn path_of(&self, key: &crate::IdempotencyKey) -> PathBuf {
        self.dir.join(format!("{key}.eml"))
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
        let tmp = self
            .dir
            .join(TMP_DIR)
            .join(format!("{}.{}", delivery.key, random_suffix()));
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
        sync_dir(&self.dir)
            .await
            .map_err(io("making the folder durable", &self.dir))?;
        Ok(Accepted {
            location: target.display().to_string(),
            already_there,
        })
    }

    async fn remove_leftovers(&self) -> Result<(), SinkError> {
        remove_tmp_entries(&self.dir.join(TMP_DIR)).await
    }
}

/// Removes every entry of a sink's temporary directory (files and directories): what a
/// killed run left there was never linked into place.
pub(crate) async fn remove_tmp_entries(tmp: &Path) -> Result<(), SinkError> {
    let err = |source| SinkError::Io {
        what: "cleaning the sink's temporary directory",
        path: tmp.to_owned(),
        source,
    };
    let mut entries = tokio::fs::read_dir(tmp).await.map_err(err)?;
    while let Some(entry) = entries.next_entry().await.map_err(err)? {
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
