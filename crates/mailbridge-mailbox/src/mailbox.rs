//! One Mailbox API over the transports: list what is new since a checkpoint, fetch a
//! message's MIME into a writer, mark it read, move it, delete it.
//!
//! Implemented for IMAP, Graph, EWS and POP3. The checkpoint is transport-specific
//! and opaque to callers: IMAP keeps
//! (UIDVALIDITY, last UID), POP the UIDL set, Graph the delta link, EWS the sync
//! state. Callers store it after each batch; a lost or invalid one means a resync.
//!
//! A folder can also be listed by date ([`Mailbox::received_since`]): IMAP `UID SEARCH
//! SINCE` (whole days), Graph delta with `$filter=receivedDateTime ge`, EWS FindItem
//! restricted on `item:DateTimeReceived`. POP3 keeps no received date and refuses it.
//! The listing's checkpoint covers the folder as it was listed, so a later
//! [`Mailbox::new_since`] from it goes on with what arrives next.

use std::future::Future;
use std::sync::Arc;

use mailbridge_auth::source::TokenSource;
use mailbridge_graph::{GraphClient, Mailbox as GraphMailbox};
use mailbridge_imap::ImapClient;
use mailbridge_types::ErrorClass;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWrite;

/// Where a sync stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Checkpoint {
    /// Nothing seen yet.
    Start,
    /// IMAP: the folder's UIDVALIDITY and the highest UID handed out.
    Imap { uid_validity: u32, last_uid: u32 },
    /// Graph: the `@odata.deltaLink` of the last round.
    Graph { delta_link: String },
    /// EWS: the SyncFolderItems state.
    Ews { sync_state: String },
    /// POP3: the UIDLs already handed out (POP has no other memory).
    Pop { uidls: Vec<String> },
}

/// A message as the Mailbox API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// Transport id (IMAP UID as text, Graph message id).
    pub id: String,
}

/// What a sync round returns.
#[derive(Debug, Clone)]
pub struct NewMessages {
    pub messages: Vec<MessageRef>,
    /// Store after the messages are handled.
    pub checkpoint: Checkpoint,
    /// The checkpoint was invalid (UIDVALIDITY changed, delta state lost): everything
    /// in the folder is listed again.
    pub resynced: bool,
}

/// An error of any transport, with its class.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailboxError {
    pub class: ErrorClass,
    pub message: String,
}

impl From<mailbridge_imap::ImapError> for MailboxError {
    fn from(e: mailbridge_imap::ImapError) -> Self {
        Self {
            class: e.class(),
            // The whole chain: "connection ... failed during FETCH: timed out".
            message: mailbridge_types::error_chain(&e),
        }
    }
}

impl From<mailbridge_ews::EwsError> for MailboxError {
    fn from(e: mailbridge_ews::EwsError) -> Self {
        Self {
            class: e.class(),
            // The whole chain: "connection ... failed during FETCH: timed out".
            message: mailbridge_types::error_chain(&e),
        }
    }
}

impl From<mailbridge_pop3::Pop3Error> for MailboxError {
    fn from(e: mailbridge_pop3::Pop3Error) -> Self {
        Self {
            class: e.class(),
            // The whole chain: "connection ... failed during FETCH: timed out".
            message: mailbridge_types::error_chain(&e),
        }
    }
}

impl From<mailbridge_graph::ClientError> for MailboxError {
    fn from(e: mailbridge_graph::ClientError) -> Self {
        Self {
            class: e.class(),
            // The whole chain: "connection ... failed during FETCH: timed out".
            message: mailbridge_types::error_chain(&e),
        }
    }
}

/// The operations every incoming transport offers.
pub trait Mailbox {
    /// Messages of `folder` new since `checkpoint`.
    fn new_since(
        &mut self,
        folder: &str,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<NewMessages, MailboxError>> + Send;
    /// Messages of `folder` received at or after `since`, with the checkpoint of the
    /// folder as listed now: a later [`Self::new_since`] from it lists only what
    /// arrives after this listing. IMAP compares whole days (`SINCE`, the date of
    /// `since` in its own offset against the server's internal date), so it may list
    /// more of that day; POP3 keeps no received date and refuses (misconfigured).
    fn received_since(
        &mut self,
        folder: &str,
        since: OffsetDateTime,
    ) -> impl Future<Output = Result<NewMessages, MailboxError>> + Send;
    /// The message's MIME, streamed into `sink`; its size.
    fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> impl Future<Output = Result<u64, MailboxError>> + Send;
    /// Marks it read.
    fn mark_read(
        &mut self,
        message: &MessageRef,
    ) -> impl Future<Output = Result<(), MailboxError>> + Send;
    /// Moves it to `folder` (IMAP folder name or Graph id / well-known name).
    fn move_to(
        &mut self,
        message: &MessageRef,
        folder: &str,
    ) -> impl Future<Output = Result<(), MailboxError>> + Send;
    /// Deletes it.
    fn delete(
        &mut self,
        message: &MessageRef,
    ) -> impl Future<Output = Result<(), MailboxError>> + Send;
}

/// IMAP: one signed-in session with a selected folder.
#[derive(Debug)]
pub struct ImapMailbox {
    client: ImapClient,
}

impl ImapMailbox {
    /// Wraps a signed-in session.
    pub fn new(client: ImapClient) -> Self {
        Self { client }
    }

    /// The session, for what the Mailbox API does not cover (batched fetches).
    pub fn client_mut(&mut self) -> &mut ImapClient {
        &mut self.client
    }
}

fn uid(message: &MessageRef) -> Result<u32, MailboxError> {
    message.id.parse().map_err(|_| MailboxError {
        class: ErrorClass::Permanent,
        message: format!("{:?} is not an IMAP UID", message.id),
    })
}

/// An IMAP listing: `uids` of the folder, and the checkpoint covering up to `last_uid`.
fn imap_listing(uids: &[u32], uid_validity: u32, last_uid: u32, resynced: bool) -> NewMessages {
    NewMessages {
        messages: uids
            .iter()
            .map(|u| MessageRef { id: u.to_string() })
            .collect(),
        checkpoint: Checkpoint::Imap {
            uid_validity,
            last_uid,
        },
        resynced,
    }
}

impl Mailbox for ImapMailbox {
    async fn new_since(
        &mut self,
        folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        let f = self.client.select(folder).await?;
        let (last, resynced) = match checkpoint {
            Checkpoint::Imap {
                uid_validity,
                last_uid,
            } if *uid_validity == f.uid_validity => (*last_uid, false),
            Checkpoint::Imap { .. } => (0, true),
            _ => (0, false),
        };
        let uids = self.client.uids_after(last).await?;
        let last_uid = uids.last().copied().unwrap_or(last);
        Ok(imap_listing(&uids, f.uid_validity, last_uid, resynced))
    }

    async fn received_since(
        &mut self,
        folder: &str,
        since: OffsetDateTime,
    ) -> Result<NewMessages, MailboxError> {
        let f = self.client.select(folder).await?;
        let uids = self.client.uids_received_since(since.date()).await?;
        // Everything in the folder now is accounted for: older messages by the date,
        // the rest listed. Without UIDNEXT (RFC 3501 requires it, but a server may
        // leave it out) the folder's highest UID is asked for.
        let highest = if f.uid_next > 0 {
            f.uid_next - 1
        } else {
            self.client
                .uids_after(0)
                .await?
                .last()
                .copied()
                .unwrap_or_default()
        };
        let last_uid = uids.last().copied().unwrap_or_default().max(highest);
        Ok(imap_listing(&uids, f.uid_validity, last_uid, false))
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        self.client
            .fetch(uid(message)?, sink)
            .await?
            .ok_or_else(|| MailboxError {
                class: ErrorClass::Permanent,
                message: format!("message {} no longer exists", message.id),
            })
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self.client.set_seen(uid(message)?, true).await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        Ok(self.client.move_to(uid(message)?, folder).await?)
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self.client.delete(uid(message)?).await?)
    }
}

/// Graph: a mailbox addressed by the client, with a token from its source per call.
#[derive(Debug)]
pub struct GraphMailboxAccess {
    pub(crate) client: GraphClient,
    pub(crate) mailbox: GraphMailbox,
    pub(crate) token: Arc<dyn TokenSource>,
}

impl GraphMailboxAccess {
    /// A mailbox over `client` with tokens from `token` (asked before each request,
    /// so the mailbox outlives any one token).
    pub fn new(client: GraphClient, mailbox: GraphMailbox, token: Arc<dyn TokenSource>) -> Self {
        Self {
            client,
            mailbox,
            token,
        }
    }
}

/// `since` as Graph and EWS write a date-time: RFC 3339 in UTC.
fn utc_rfc3339(since: OffsetDateTime) -> Result<String, MailboxError> {
    since
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| MailboxError {
            class: ErrorClass::Misconfigured,
            message: format!("{since} cannot be written as an RFC 3339 date-time: {e}"),
        })
}

impl GraphMailboxAccess {
    /// One delta round: from `from` (a stored link), else from the start, limited to
    /// messages received at or after `since` when given. The client bounds it (pages,
    /// entries, time) and follows only links on the Graph root's origin. A stored link
    /// on another origin (the account's Graph endpoint changed since) is not followed:
    /// the folder is listed again from the start.
    async fn delta_round(
        &mut self,
        folder: &str,
        mut from: Option<String>,
        since: Option<&str>,
    ) -> Result<NewMessages, MailboxError> {
        let mut resynced = false;
        if from.as_deref().is_some_and(|f| !self.client.is_own_link(f)) {
            from = None;
            resynced = true;
        }
        loop {
            let round = self
                .client
                .delta_round(
                    &self.token,
                    &self.mailbox,
                    folder,
                    from.as_deref(),
                    since,
                    100,
                )
                .await;
            let round = match round {
                Ok(r) => r,
                Err(mailbridge_graph::ClientError::Graph(g))
                    if g.meaning == mailbridge_graph::Meaning::ResyncRequired && from.is_some() =>
                {
                    resynced = true;
                    from = None;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            return Ok(NewMessages {
                messages: round
                    .items
                    .into_iter()
                    .filter(|i| !i.removed)
                    .map(|i| MessageRef { id: i.id })
                    .collect(),
                checkpoint: Checkpoint::Graph {
                    delta_link: round.delta_link,
                },
                resynced,
            });
        }
    }
}

impl Mailbox for GraphMailboxAccess {
    async fn new_since(
        &mut self,
        folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        let from = match checkpoint {
            Checkpoint::Graph { delta_link } => Some(delta_link.clone()),
            _ => None,
        };
        self.delta_round(folder, from, None).await
    }

    /// Graph's delta takes `receivedDateTime ge` as its one filter: the round's
    /// deltaLink keeps tracking the messages received since then.
    async fn received_since(
        &mut self,
        folder: &str,
        since: OffsetDateTime,
    ) -> Result<NewMessages, MailboxError> {
        let since = utc_rfc3339(since)?;
        self.delta_round(folder, None, Some(&since)).await
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        Ok(self
            .client
            .fetch_mime(&self.token, &self.mailbox, &message.id, sink)
            .await?)
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .set_read(&self.token, &self.mailbox, &message.id, true)
            .await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        self.client
            .move_to(&self.token, &self.mailbox, &message.id, folder)
            .await?;
        Ok(())
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .delete(&self.token, &self.mailbox, &message.id)
            .await?)
    }
}

/// EWS: a mailbox reached with one authorisation (app-only impersonation, delegated or
/// Basic).
#[derive(Debug)]
pub struct EwsMailbox {
    client: mailbridge_ews::EwsClient,
    auth: mailbridge_ews::EwsAuth,
}

impl EwsMailbox {
    /// A mailbox over `client` with `auth`.
    pub fn new(client: mailbridge_ews::EwsClient, auth: mailbridge_ews::EwsAuth) -> Self {
        Self { client, auth }
    }
}

impl Mailbox for EwsMailbox {
    async fn new_since(
        &mut self,
        folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        let mut state = match checkpoint {
            Checkpoint::Ews { sync_state } => Some(sync_state.clone()),
            _ => None,
        };
        let mut resynced = false;
        // The client bounds the round (pages, changes, time).
        let round = loop {
            match self
                .client
                .sync_round(&self.auth, folder, state.as_deref(), 512)
                .await
            {
                Ok(r) => break r,
                Err(mailbridge_ews::EwsError::Response { ref code, .. })
                    if code == "ErrorInvalidSyncStateData" && state.is_some() =>
                {
                    resynced = true;
                    state = None;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(NewMessages {
            messages: round
                .changes
                .iter()
                .filter(|c| c.kind == mailbridge_ews::ChangeKind::Create)
                .map(|c| MessageRef { id: c.id.clone() })
                .collect(),
            checkpoint: Checkpoint::Ews {
                sync_state: round.sync_state,
            },
            resynced,
        })
    }

    /// SyncFolderItems first (its state is the checkpoint), then FindItem restricted
    /// on `item:DateTimeReceived`: a message arriving between the two is listed here
    /// and again by the next sync, and the download's file names keep it single.
    async fn received_since(
        &mut self,
        folder: &str,
        since: OffsetDateTime,
    ) -> Result<NewMessages, MailboxError> {
        let since = utc_rfc3339(since)?;
        // EWS cannot start a sync state at "now": the state comes from paging through
        // the whole folder (512 ids per request), the ids themselves dropped.
        let now = self.new_since(folder, &Checkpoint::Start).await?;
        let messages = self
            .client
            .find_all_received_since(&self.auth, folder, &since, 1000)
            .await?
            .into_iter()
            .map(|id| MessageRef { id })
            .collect();
        Ok(NewMessages {
            messages,
            checkpoint: now.checkpoint,
            resynced: false,
        })
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        // Decoded as it arrives: the message is never held whole.
        Ok(self
            .client
            .get_mime_into(&self.auth, &message.id, sink)
            .await?)
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .set_read(&self.auth, &message.id, None, true)
            .await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        self.client
            .move_item(&self.auth, &message.id, folder)
            .await?;
        Ok(())
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .delete_item(&self.auth, &message.id, false)
            .await?)
    }
}

/// Message ids of a POP3 listing, each one distinct: a UIDL the server gives to
/// several messages (a broken server, or one that derives it from the content) keeps
/// its text for the first and gets ` 2`, ` 3`, ... for the later ones (a UIDL has no
/// spaces, so these never meet a real one). So every message is listed, fetched and
/// stored once, and none replaces another in the Maildir.
fn distinct_ids(listing: Vec<(u32, String)>) -> Vec<(u32, String)> {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    listing
        .into_iter()
        .map(|(n, uid)| {
            let count = seen.entry(uid.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                (n, uid)
            } else {
                (n, format!("{uid} {count}"))
            }
        })
        .collect()
}

/// POP3: one signed-in session. POP has no flags and no folders: `mark_read` does
/// nothing, `move_to` is refused, and deletions take effect at [`Pop3Mailbox::close`].
/// Message ids are the UIDLs, made distinct where the server repeats one.
#[derive(Debug)]
pub struct Pop3Mailbox {
    client: mailbridge_pop3::Pop3Client,
    /// UIDL -> message number, from the last listing.
    numbers: std::collections::BTreeMap<String, u32>,
}

impl Pop3Mailbox {
    /// Wraps a signed-in session.
    pub fn new(client: mailbridge_pop3::Pop3Client) -> Self {
        Self {
            client,
            numbers: std::collections::BTreeMap::new(),
        }
    }

    /// Ends the session (`QUIT`), which commits deletions.
    pub async fn close(self) -> Result<(), MailboxError> {
        Ok(self.client.quit().await?)
    }

    fn number(&self, message: &MessageRef) -> Result<u32, MailboxError> {
        self.numbers
            .get(&message.id)
            .copied()
            .ok_or_else(|| MailboxError {
                class: ErrorClass::Permanent,
                message: format!(
                    "message {} is not in this POP3 session's listing",
                    message.id
                ),
            })
    }
}

impl Mailbox for Pop3Mailbox {
    async fn new_since(
        &mut self,
        _folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        let listing = distinct_ids(self.client.uidl().await?);
        // The sizes, so that a message announced over the size bound is refused
        // without being downloaded (while the bytes are still counted as they come).
        self.client.list().await?;
        let seen: std::collections::BTreeSet<&str> = match checkpoint {
            Checkpoint::Pop { uidls } => uidls.iter().map(String::as_str).collect(),
            _ => std::collections::BTreeSet::new(),
        };
        self.numbers = listing.iter().map(|(n, u)| (u.clone(), *n)).collect();
        let messages = listing
            .iter()
            .filter(|(_, u)| !seen.contains(u.as_str()))
            .map(|(_, u)| MessageRef { id: u.clone() })
            .collect();
        Ok(NewMessages {
            messages,
            // Only what is still on the server needs remembering.
            checkpoint: Checkpoint::Pop {
                uidls: listing.into_iter().map(|(_, u)| u).collect(),
            },
            resynced: false,
        })
    }

    /// Refused: POP3 keeps no received date (RFC 1939 has no INTERNALDATE), and a
    /// message's own `Date:` header is the sender's clock, not when it arrived.
    async fn received_since(
        &mut self,
        _folder: &str,
        since: OffsetDateTime,
    ) -> Result<NewMessages, MailboxError> {
        Err(MailboxError {
            class: ErrorClass::Misconfigured,
            message: format!(
                "POP3 cannot list messages received since {}: the protocol keeps no received date (only the sender's Date: header, which is not when a message arrived); fetch everything (--since all) or use the account's IMAP, Graph or EWS side",
                since.format(&Rfc3339).unwrap_or_else(|_| since.to_string())
            ),
        })
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        let n = self.number(message)?;
        Ok(self.client.retr(n, sink).await?)
    }

    async fn mark_read(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
        Ok(())
    }

    async fn move_to(&mut self, _message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        Err(MailboxError {
            class: ErrorClass::Misconfigured,
            message: format!(
                "POP3 has no folders: a message cannot be moved to {folder:?}; use delete, or IMAP"
            ),
        })
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        let n = self.number(message)?;
        Ok(self.client.dele(n).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::distinct_ids;

    #[test]
    fn repeated_uidls_become_distinct_ids() {
        let listing = vec![
            (1, "dup".to_owned()),
            (2, "x".to_owned()),
            (3, "dup".to_owned()),
            (4, "dup".to_owned()),
        ];
        let ids: Vec<String> = distinct_ids(listing).into_iter().map(|(_, u)| u).collect();
        assert_eq!(ids, ["dup", "x", "dup 2", "dup 3"]);
    }
}
