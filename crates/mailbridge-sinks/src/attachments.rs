//! The attachments folder: each attachment of a message saved under a safe, unique
//! name, for systems that turn mail into documents.
//!
//! Layout: `<dir>/<key>/` holds the message's attachments (names from
//! [`crate::filename`]: no path separators, no `..`, no control characters, bounded,
//! collisions numbered) and `message.json`, the sidecar naming the message they came
//! from (account, folder, source id, `Message-ID`, from, subject, date) and, per file,
//! the sender's original name, type and size. The directory is built under
//! `<dir>/.mailbridge-tmp/`, every file fsynced, then renamed into place in one step:
//! a reader never sees half a message's attachments, and a second delivery of the
//! same message finds the directory there and adds nothing. A message without
//! attachments is accepted with nothing written.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use mail_parser::{MessageParser, MimeHeaders as _};
use serde::Serialize;

use crate::filename::UniqueNames;
use crate::folder::{TMP_DIR, remove_tmp_entries, sync_dir};
use crate::summary::{Mailbox, content_type_of, origin};
use crate::{Accepted, Delivery, SinkError, ensure_dir, random_suffix};

/// The sidecar's name in each message's directory.
pub const SIDECAR: &str = "message.json";
/// The most attachments saved from one message unless the sink says otherwise.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 1000;

/// Settings of an attachments folder.
#[derive(Debug, Clone)]
pub struct AttachmentsOptions {
    /// A message with more attachments is refused (LimitExceeded), not cut short.
    pub max_attachments: usize,
    /// The largest message read (the account's maximum message size).
    pub max_message_size: u64,
}

impl Default for AttachmentsOptions {
    fn default() -> Self {
        Self {
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            max_message_size: 150 * 1024 * 1024,
        }
    }
}

/// A folder of attachments.
#[derive(Debug, Clone)]
pub struct AttachmentsSink {
    dir: PathBuf,
    options: AttachmentsOptions,
}

/// The sidecar.
#[derive(Debug, Serialize)]
struct Sidecar<'a> {
    key: &'a str,
    account: &'a str,
    folder: &'a str,
    source_id: &'a str,
    message_id: Option<&'a str>,
    from: &'a [Mailbox],
    subject: Option<&'a str>,
    date: Option<&'a str>,
    files: Vec<SavedFile>,
}

/// One saved attachment, as the sidecar lists it.
#[derive(Debug, Serialize)]
struct SavedFile {
    file: String,
    original_name: Option<String>,
    content_type: String,
    size: u64,
}

impl AttachmentsSink {
    /// Opens (creating it if needed) the folder `dir`, removing what a killed run left
    /// half-built.
    pub async fn open(dir: &Path, options: AttachmentsOptions) -> Result<Self, SinkError> {
        ensure_dir(&dir.join(TMP_DIR)).await?;
        remove_tmp_entries(&dir.join(TMP_DIR), |_| true).await?;
        Ok(Self {
            dir: dir.to_owned(),
            options,
        })
    }

    /// The directory a message's attachments are (or will be) in.
    pub fn path_of(&self, key: &crate::IdempotencyKey) -> PathBuf {
        self.dir.join(key.as_str())
    }

    /// Saves the message's attachments, once.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Accepted, SinkError> {
        let target = self.path_of(&delivery.key);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(Accepted {
                location: target.display().to_string(),
                already_there: true,
            });
        }
        let mime = delivery.read(self.options.max_message_size).await?;
        let staging = self
            .dir
            .join(TMP_DIR)
            .join(format!("{}.{}", delivery.key, random_suffix()));
        let written = {
            let staging = staging.clone();
            let delivery = delivery.clone();
            let max = self.options.max_attachments;
            tokio::task::spawn_blocking(move || build(&staging, &delivery, &mime, max))
                .await
                .map_err(|e| SinkError::Io {
                    what: "saving the attachments",
                    path: self.dir.clone(),
                    source: std::io::Error::other(e),
                })?
        };
        let count = match written {
            Ok(count) => count,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(e);
            }
        };
        if count == 0 {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Ok(Accepted {
                location: "no attachments".to_owned(),
                already_there: false,
            });
        }
        let placed = tokio::fs::rename(&staging, &target).await;
        let already_there = match placed {
            Ok(()) => false,
            // Another delivery of this message got there first (rename onto a
            // non-empty directory fails).
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty
                ) =>
            {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                true
            }
            Err(source) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(SinkError::Io {
                    what: "placing the attachments",
                    path: target,
                    source,
                });
            }
        };
        sync_dir(&self.dir).await.map_err(|source| SinkError::Io {
            what: "making the attachments folder durable",
            path: self.dir.clone(),
            source,
        })?;
        Ok(Accepted {
            location: target.display().to_string(),
            already_there,
        })
    }
}

/// Writes the attachments and the sidecar into `staging`; the number of attachments.
fn build(
    staging: &Path,
    delivery: &Delivery,
    mime: &[u8],
    max_attachments: usize,
) -> Result<usize, SinkError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| SinkError::Io { what, path, source }
    };
    let Some(message) = MessageParser::default().parse(mime) else {
        return Ok(0);
    };
    let parts: Vec<_> = message.attachments().take(max_attachments + 1).collect();
    if parts.len() > max_attachments {
        return Err(SinkError::TooManyAttachments {
            limit: max_attachments,
        });
    }
    if parts.is_empty() {
        return Ok(0);
    }
    std::fs::create_dir(staging).map_err(io("saving the attachments", staging))?;
    let mut names = UniqueNames::with_reserved(&[SIDECAR]);
    let mut files = Vec::with_capacity(parts.len());
    for part in &parts {
        let original = part.attachment_name();
        let name = names.next(original);
        let path = staging.join(&name);
        write_synced(&path, part.contents()).map_err(io("saving an attachment", &path))?;
        files.push(SavedFile {
            file: name,
            original_name: original.map(|n| mailbridge_types::text::without_controls(n, 998)),
            content_type: content_type_of(part),
            size: part.len() as u64,
        });
    }
    // The sidecar's fields come from the same parse as the files.
    let origin = origin(&message);
    let sidecar = Sidecar {
        key: delivery.key.as_str(),
        account: &delivery.account,
        folder: &delivery.folder,
        source_id: &delivery.source_id,
        message_id: origin.message_id.as_deref(),
        from: &origin.from,
        subject: origin.subject.as_deref(),
        date: origin.date.as_deref(),
        files,
    };
    let count = sidecar.files.len();
    let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| SinkError::Io {
        what: "writing the sidecar",
        path: staging.join(SIDECAR),
        source: std::io::Error::other(e),
    })?;
    let sidecar_path = staging.join(SIDECAR);
    write_synced(&sidecar_path, &json).map_err(io("writing the sidecar", &sidecar_path))?;
    std::fs::File::open(staging)
        .and_then(|d| d.sync_all())
        .map_err(io("saving the attachments", staging))?;
    Ok(count)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
