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
//!
//! A listed message is a [`MessageRef`] holding its transport's own id, typed (an IMAP
//! UID with its folder's UIDVALIDITY, a Graph or EWS id, a POP3 UIDL); a mailbox
//! refuses another transport's reference, and IMAP one listed under another
//! UIDVALIDITY. Errors are [`MailboxError`]s: a class (what to do), an [`ErrorKind`]
//! (what happened, for retry logic to match) and the transport's error as source.

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

/// A message as the Mailbox API names it: its transport's own id, typed, from the
/// listing to the fetch and the Maildir file name (never parsed back from text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageRef {
    /// IMAP: a UID, valid within its folder's UIDVALIDITY.
    Imap { uid_validity: u32, uid: u32 },
    /// Graph: the message id.
    Graph { id: String },
    /// EWS: the item id.
    Ews { id: String },
    /// POP3: the UIDL (made distinct where the server repeats one: ` 2`, ` 3`, ...).
    Pop3 { uidl: String },
}

impl MessageRef {
    /// The id as its transport writes it (a UID in decimal, a Graph or EWS id, a UIDL).
    pub fn transport_id(&self) -> std::borrow::Cow<'_, str> {
        match self {
            MessageRef::Imap { uid, .. } => uid.to_string().into(),
            MessageRef::Graph { id } | MessageRef::Ews { id } => id.as_str().into(),
            MessageRef::Pop3 { uidl } => uidl.as_str().into(),
        }
    }
}

impl std::fmt::Display for MessageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageRef::Imap { uid_validity, uid } => {
                write!(f, "IMAP UID {uid} (UIDVALIDITY {uid_validity})")
            }
            MessageRef::Graph { id } => write!(f, "Graph message {id:?}"),
            MessageRef::Ews { id } => write!(f, "EWS item {id:?}"),
            MessageRef::Pop3 { uidl } => write!(f, "POP3 message {uidl:?}"),
        }
    }
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

/// What happened, for code that reacts to it (the connector's retry logic); the class
/// ([`MailboxError::class`]) says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached or the connection broke (network, TLS,
    /// timeout, the server closed the session).
    Connection,
    /// The server refused the sign-in (password, token, permission, consent).
    SignInRefused,
    /// The message or folder is not there (any more).
    NotFound,
    /// A bound of the account's limits was exceeded.
    LimitExceeded,
    /// The service asked to slow down.
    Throttled,
    /// A request may or may not have taken effect.
    OutcomeUnknown,
    /// The server refused the request (its words are in the source).
    ServerRefused,
    /// The server answered outside its protocol.
    Protocol,
    /// The account's configuration does not allow it (endpoint, certificate, a
    /// transport that cannot do what was asked).
    Configuration,
    /// The message to send is not acceptable as it is.
    Message,
    /// Where the message was being written (a caller's writer, a Maildir) failed.
    Sink,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Connection => "the connection to the server failed",
            ErrorKind::SignInRefused => "the server refused the sign-in",
            ErrorKind::NotFound => "the message or folder is not there",
            ErrorKind::LimitExceeded => "a limit of the account was exceeded",
            ErrorKind::Throttled => "the service is throttling",
            ErrorKind::OutcomeUnknown => "the request may or may not have taken effect",
            ErrorKind::ServerRefused => "the server refused the request",
            ErrorKind::Protocol => "the server's answer is not what its protocol allows",
            ErrorKind::Configuration => "the account's configuration does not allow it",
            ErrorKind::Message => "the message is not acceptable",
            ErrorKind::Sink => "writing the message failed",
        }
    }
}

/// An error of any transport: its class (what to do), its kind (what happened), one
/// line of its own and, when a transport failed, that transport's error as its
/// [`source`](std::error::Error::source) ([`mailbridge_types::error_chain`] prints
/// the whole story).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailboxError {
    pub class: ErrorClass,
    pub kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl MailboxError {
    /// An error without a source: `message` says what happened and what to do.
    pub fn new(class: ErrorClass, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            class,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Misconfigured: the configuration does not allow it (`message` names the fix).
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Misconfigured, ErrorKind::Configuration, message)
    }

    /// Permanent: the message is not acceptable as it is.
    pub fn bad_message(class: ErrorClass, message: impl Into<String>) -> Self {
        Self::new(class, ErrorKind::Message, message)
    }

    /// `source`, with its class, under `message`.
    pub fn with_source(
        class: ErrorClass,
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            class,
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A transport's error: `transport` names it ("IMAP", "Microsoft Graph").
    fn transport(
        transport: &str,
        class: ErrorClass,
        kind: ErrorKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::with_source(
            class,
            kind,
            format!("{transport}: {}", kind.describe()),
            source,
        )
    }

    /// Its own line, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line and every cause (`error_chain`), one line.
    pub fn detail(&self) -> String {
        mailbridge_types::error_chain(self)
    }
}

impl ErrorKind {
    /// The kind that goes with `class` where nothing more is known.
    pub fn of_class(class: ErrorClass) -> ErrorKind {
        match class {
            ErrorClass::NeedsSignIn | ErrorClass::NeedsAdmin => ErrorKind::SignInRefused,
            ErrorClass::Throttled { .. } => ErrorKind::Throttled,
            ErrorClass::LimitExceeded => ErrorKind::LimitExceeded,
            ErrorClass::OutcomeUnknown => ErrorKind::OutcomeUnknown,
            ErrorClass::Misconfigured => ErrorKind::Configuration,
            _ => ErrorKind::ServerRefused,
        }
    }
}

impl From<mailbridge_imap::ImapError> for MailboxError {
    fn from(e: mailbridge_imap::ImapError) -> Self {
        use mailbridge_imap::ImapError as E;
        let class = e.class();
        let kind = match &e {
            E::Connect { .. } | E::Tls(_) | E::Io { .. } | E::Bye(_) => ErrorKind::Connection,
            E::Protocol { .. } => ErrorKind::Protocol,
            E::LimitExceeded { .. } | E::Flooded { .. } => ErrorKind::LimitExceeded,
            E::Refused { step, .. } if step.starts_with("AUTHENTICATE") || *step == "LOGIN" => {
                ErrorKind::SignInRefused
            }
            E::Refused { step, .. } if *step == "SELECT" => ErrorKind::NotFound,
            _ => ErrorKind::of_class(class),
        };
        Self::transport("IMAP", class, kind, e)
    }
}

impl From<mailbridge_ews::EwsError> for MailboxError {
    fn from(e: mailbridge_ews::EwsError) -> Self {
        use mailbridge_ews::EwsError as E;
        let class = e.class();
        let kind = match &e {
            E::Http { .. } => ErrorKind::Connection,
            E::Unauthorized { .. } => ErrorKind::SignInRefused,
            E::Response { code, .. }
                if code == "ErrorItemNotFound" || code == "ErrorFolderNotFound" =>
            {
                ErrorKind::NotFound
            }
            E::TooLarge { .. } | E::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            E::Sink(_) => ErrorKind::Sink,
            E::Protocol(_) => ErrorKind::Protocol,
            E::Redirected(_) | E::BadEndpoint(_) => ErrorKind::Configuration,
            _ => ErrorKind::of_class(class),
        };
        Self::transport("EWS", class, kind, e)
    }
}

impl From<mailbridge_pop3::Pop3Error> for MailboxError {
    fn from(e: mailbridge_pop3::Pop3Error) -> Self {
        use mailbridge_pop3::Pop3Error as E;
        let class = e.class();
        let kind = match &e {
            E::Connect { .. } | E::Tls(_) | E::Io { .. } => ErrorKind::Connection,
            E::Protocol { .. } => ErrorKind::Protocol,
            E::Refused {
                sign_in: Some(_), ..
            } => ErrorKind::SignInRefused,
            E::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            _ => ErrorKind::of_class(class),
        };
        Self::transport("POP3", class, kind, e)
    }
}

impl From<mailbridge_graph::ClientError> for MailboxError {
    fn from(e: mailbridge_graph::ClientError) -> Self {
        use mailbridge_graph::ClientError as E;
        let class = e.class();
        let kind = match &e {
            E::Http { .. } => ErrorKind::Connection,
            E::Graph(g) if g.status == 404 => ErrorKind::NotFound,
            E::Graph(g) if g.status == 401 => ErrorKind::SignInRefused,
            E::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            E::Protocol(_) => ErrorKind::Protocol,
            E::Sink(_) => ErrorKind::Sink,
            E::ForeignLink(_) | E::BadEndpoint(_) => ErrorKind::Configuration,
            _ => ErrorKind::of_class(class),
        };
        Self::transport("Microsoft Graph", class, kind, e)
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
    /// The folder selected last, and its UIDVALIDITY.
    selected: Option<(String, u32)>,
}

impl ImapMailbox {
    /// Wraps a signed-in session.
    pub fn new(client: ImapClient) -> Self {
        Self {
            client,
            selected: None,
        }
    }

    /// The session, for what the Mailbox API does not cover.
    pub fn client_mut(&mut self) -> &mut ImapClient {
        &mut self.client
    }

    async fn select(&mut self, folder: &str) -> Result<mailbridge_imap::Folder, MailboxError> {
        self.selected = None;
        let f = self.client.select(folder).await?;
        self.selected = Some((folder.to_owned(), f.uid_validity));
        Ok(f)
    }

    /// Selects `folder` unless it is selected already; its UIDVALIDITY.
    pub(crate) async fn ensure_selected(&mut self, folder: &str) -> Result<u32, MailboxError> {
        match &self.selected {
            Some((name, uid_validity)) if name == folder => Ok(*uid_validity),
            _ => Ok(self.select(folder).await?.uid_validity),
        }
    }

    /// The UID of `message` in the selected folder: refused for another transport's
    /// message, or for one listed under another UIDVALIDITY (the folder was recreated
    /// since, and the UID may name another message now).
    fn uid(&self, message: &MessageRef) -> Result<u32, MailboxError> {
        let MessageRef::Imap { uid_validity, uid } = message else {
            return Err(MailboxError::new(
                ErrorClass::Permanent,
                ErrorKind::Configuration,
                format!("{message} is not an IMAP message: the IMAP side cannot fetch it"),
            ));
        };
        match &self.selected {
            Some((folder, selected)) if selected != uid_validity => Err(MailboxError::new(
                ErrorClass::Transient,
                ErrorKind::NotFound,
                format!(
                    "{message} was listed under another UIDVALIDITY than {folder:?} has now ({selected}): the folder was recreated; list it again"
                ),
            )),
            Some(_) => Ok(*uid),
            None => Err(MailboxError::new(
                ErrorClass::Permanent,
                ErrorKind::Configuration,
                format!("{message}: no folder is selected; list a folder first"),
            )),
        }
    }
}

/// An IMAP listing: `uids` of the folder, and the checkpoint covering up to `last_uid`.
fn imap_listing(uids: &[u32], uid_validity: u32, last_uid: u32, resynced: bool) -> NewMessages {
    NewMessages {
        messages: uids
            .iter()
            .map(|&uid| MessageRef::Imap { uid_validity, uid })
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
        let f = self.select(folder).await?;
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
        let f = self.select(folder).await?;
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
        let uid = self.uid(message)?;
        self.client.fetch(uid, sink).await?.ok_or_else(|| {
            MailboxError::new(
                ErrorClass::Permanent,
                ErrorKind::NotFound,
                format!("{message} no longer exists"),
            )
        })
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        let uid = self.uid(message)?;
        Ok(self.client.set_seen(uid, true).await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        let uid = self.uid(message)?;
        Ok(self.client.move_to(uid, folder).await?)
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        let uid = self.uid(message)?;
        Ok(self.client.delete(uid).await?)
    }
}

/// The id of a Graph message: refused for another transport's message.
fn graph_id(message: &MessageRef) -> Result<&str, MailboxError> {
    match message {
        MessageRef::Graph { id } => Ok(id),
        _ => Err(MailboxError::new(
            ErrorClass::Permanent,
            ErrorKind::Configuration,
            format!("{message} is not a Graph message: the Graph side cannot reach it"),
        )),
    }
}

/// The id of an EWS item: refused for another transport's message.
fn ews_id(message: &MessageRef) -> Result<&str, MailboxError> {
    match message {
        MessageRef::Ews { id } => Ok(id),
        _ => Err(MailboxError::new(
            ErrorClass::Permanent,
            ErrorKind::Configuration,
            format!("{message} is not an EWS item: the EWS side cannot reach it"),
        )),
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
        .map_err(|e| {
            MailboxError::with_source(
                ErrorClass::Misconfigured,
                ErrorKind::Configuration,
                format!("{since} cannot be written as an RFC 3339 date-time"),
                e,
            )
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
                    .map(|i| MessageRef::Graph { id: i.id })
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
            .fetch_mime(&self.token, &self.mailbox, graph_id(message)?, sink)
            .await?)
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .set_read(&self.token, &self.mailbox, graph_id(message)?, true)
            .await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        self.client
            .move_to(&self.token, &self.mailbox, graph_id(message)?, folder)
            .await?;
        Ok(())
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .delete(&self.token, &self.mailbox, graph_id(message)?)
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
                .map(|c| MessageRef::Ews { id: c.id.clone() })
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
            .map(|id| MessageRef::Ews { id })
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
            .get_mime_into(&self.auth, ews_id(message)?, sink)
            .await?)
    }

    async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .set_read(&self.auth, ews_id(message)?, None, true)
            .await?)
    }

    async fn move_to(&mut self, message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        self.client
            .move_item(&self.auth, ews_id(message)?, folder)
            .await?;
        Ok(())
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        Ok(self
            .client
            .delete_item(&self.auth, ews_id(message)?, false)
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

/// How a POP3 mailbox signs in when it opens a new session.
#[derive(Clone)]
pub enum Pop3SignIn {
    /// `USER` / `PASS`.
    Password {
        user: String,
        password: secrecy::SecretString,
    },
    /// `AUTH XOAUTH2` with a token current when the session opens.
    Token {
        user: String,
        tokens: Arc<dyn TokenSource>,
    },
}

impl std::fmt::Debug for Pop3SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pop3SignIn::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .finish_non_exhaustive(),
            Pop3SignIn::Token { user, tokens } => f
                .debug_struct("Token")
                .field("user", user)
                .field("tokens", tokens)
                .finish(),
        }
    }
}

impl Pop3SignIn {
    /// The credentials for a session opened now.
    pub async fn credentials(&self) -> Result<mailbridge_pop3::Credentials, MailboxError> {
        Ok(match self {
            Pop3SignIn::Password { user, password } => mailbridge_pop3::Credentials::UserPass {
                user: user.clone(),
                password: password.clone(),
            },
            Pop3SignIn::Token { user, tokens } => mailbridge_pop3::Credentials::XOAuth2 {
                user: user.clone(),
                token: tokens
                    .token()
                    .await
                    .map_err(|e| crate::send::token_error(&e))?,
            },
        })
    }

    /// Connects to `config` and signs in.
    pub async fn open(
        &self,
        config: &mailbridge_pop3::Pop3Config,
    ) -> Result<mailbridge_pop3::Pop3Client, MailboxError> {
        let mut client = mailbridge_pop3::Pop3Client::connect(config).await?;
        client.authenticate(&self.credentials().await?).await?;
        Ok(client)
    }
}

/// POP3: a signed-in session. POP has no flags and no folders: `mark_read` does
/// nothing, `move_to` is refused, and deletions take effect when the session ends
/// ([`Pop3Mailbox::close`], or the next listing of a reopening mailbox). Message ids
/// are the UIDLs, made distinct where the server repeats one.
///
/// A POP3 session sees the maildrop as it was when it opened (RFC 1939 §8: the
/// server locks it and numbers its messages once), so mail that arrives later is in
/// no listing of that session. A mailbox made with [`Pop3Mailbox::reopening`] ends
/// its session (`QUIT`, committing deletions) and opens a new one before each listing
/// after the first, so that every [`Mailbox::new_since`] lists what is there now; one
/// made with [`Pop3Mailbox::new`] lists the session's maildrop each time.
#[derive(Debug)]
pub struct Pop3Mailbox {
    /// `None` after a failed reopening: the next listing tries again.
    client: Option<mailbridge_pop3::Pop3Client>,
    /// UIDL -> message number, from the last listing.
    numbers: std::collections::BTreeMap<String, u32>,
    /// Where and how to open a new session, for a reopening mailbox.
    reopen: Option<(mailbridge_pop3::Pop3Config, Pop3SignIn)>,
    /// Whether the current session was listed already.
    listed: bool,
}

impl Pop3Mailbox {
    /// Wraps a signed-in session, for as long as it lasts.
    pub fn new(client: mailbridge_pop3::Pop3Client) -> Self {
        Self {
            client: Some(client),
            numbers: std::collections::BTreeMap::new(),
            reopen: None,
            listed: false,
        }
    }

    /// Wraps a signed-in session opened with `config` and `sign_in`; each listing
    /// after the first is taken in a new session signed in the same way.
    pub fn reopening(
        client: mailbridge_pop3::Pop3Client,
        config: mailbridge_pop3::Pop3Config,
        sign_in: Pop3SignIn,
    ) -> Self {
        Self {
            reopen: Some((config, sign_in)),
            ..Self::new(client)
        }
    }

    /// A reopening mailbox between listings: ends the session now (`QUIT`, which
    /// commits deletions and releases the maildrop's lock, so that other clients and
    /// the server's idle timeout are not held up while a watcher waits); the next
    /// listing opens a new one. Does nothing for a mailbox that does not reopen.
    pub async fn release(&mut self) -> Result<(), MailboxError> {
        if self.reopen.is_none() {
            return Ok(());
        }
        self.numbers.clear();
        if let Some(client) = self.client.take() {
            client.quit().await?;
        }
        Ok(())
    }

    /// Ends the session (`QUIT`), which commits deletions.
    pub async fn close(self) -> Result<(), MailboxError> {
        match self.client {
            Some(client) => Ok(client.quit().await?),
            None => Ok(()),
        }
    }

    fn client(&mut self) -> Result<&mut mailbridge_pop3::Pop3Client, MailboxError> {
        self.client.as_mut().ok_or_else(|| {
            MailboxError::new(
                ErrorClass::Transient,
                ErrorKind::Connection,
                "the POP3 session ended and a new one could not be opened; the next listing tries again".to_owned(),
            )
        })
    }

    /// Before a listing: a new session when this one was listed already (and the
    /// mailbox reopens).
    async fn fresh_session(&mut self) -> Result<(), MailboxError> {
        let Some((config, sign_in)) = &self.reopen else {
            return Ok(());
        };
        if !self.listed && self.client.is_some() {
            return Ok(());
        }
        // RFC 1939 §6: QUIT commits this session's deletions and releases the lock
        // on the maildrop, which the new session takes.
        self.numbers.clear();
        if let Some(old) = self.client.take() {
            old.quit().await?;
        }
        self.client = Some(sign_in.open(config).await?);
        self.listed = false;
        Ok(())
    }

    fn number(&self, message: &MessageRef) -> Result<u32, MailboxError> {
        let MessageRef::Pop3 { uidl } = message else {
            return Err(MailboxError::new(
                ErrorClass::Permanent,
                ErrorKind::Configuration,
                format!("{message} is not a POP3 message: the POP3 side cannot reach it"),
            ));
        };
        self.numbers.get(uidl).copied().ok_or_else(|| {
            MailboxError::new(
                ErrorClass::Permanent,
                ErrorKind::NotFound,
                format!("{message} is not in this POP3 session's listing"),
            )
        })
    }
}

impl Mailbox for Pop3Mailbox {
    async fn new_since(
        &mut self,
        _folder: &str,
        checkpoint: &Checkpoint,
    ) -> Result<NewMessages, MailboxError> {
        self.fresh_session().await?;
        let client = self.client()?;
        let listing = distinct_ids(client.uidl().await?);
        // The sizes, so that a message announced over the size bound is refused
        // without being downloaded (while the bytes are still counted as they come).
        client.list().await?;
        self.listed = true;
        let seen: std::collections::BTreeSet<&str> = match checkpoint {
            Checkpoint::Pop { uidls } => uidls.iter().map(String::as_str).collect(),
            _ => std::collections::BTreeSet::new(),
        };
        self.numbers = listing.iter().map(|(n, u)| (u.clone(), *n)).collect();
        let messages = listing
            .iter()
            .filter(|(_, u)| !seen.contains(u.as_str()))
            .map(|(_, u)| MessageRef::Pop3 { uidl: u.clone() })
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
        Err(MailboxError::misconfigured(format!(
            "POP3 cannot list messages received since {}: the protocol keeps no received date (only the sender's Date: header, which is not when a message arrived); fetch everything (--since all) or use the account's IMAP, Graph or EWS side",
            since.format(&Rfc3339).unwrap_or_else(|_| since.to_string())
        )))
    }

    async fn fetch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        message: &MessageRef,
        sink: &mut W,
    ) -> Result<u64, MailboxError> {
        let n = self.number(message)?;
        Ok(self.client()?.retr(n, sink).await?)
    }

    async fn mark_read(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
        Ok(())
    }

    async fn move_to(&mut self, _message: &MessageRef, folder: &str) -> Result<(), MailboxError> {
        Err(MailboxError::misconfigured(format!(
            "POP3 has no folders: a message cannot be moved to {folder:?}; use delete, or IMAP"
        )))
    }

    async fn delete(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
        let n = self.number(message)?;
        Ok(self.client()?.dele(n).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_keeps_its_class_a_kind_and_itself_as_the_source() {
        use mailbridge_imap::ImapError;
        let cut = MailboxError::from(ImapError::Io {
            step: "UID FETCH",
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
        });
        assert_eq!(cut.class, ErrorClass::Transient);
        assert_eq!(cut.kind, ErrorKind::Connection);
        assert_eq!(cut.to_string(), "IMAP: the connection to the server failed");
        let source = std::error::Error::source(&cut).expect("the transport's error");
        assert!(source.downcast_ref::<ImapError>().is_some(), "{source}");
        assert_eq!(
            cut.detail(),
            "IMAP: the connection to the server failed: connection to the IMAP server failed during UID FETCH: timed out"
        );

        let refused = MailboxError::from(ImapError::Refused {
            step: "AUTHENTICATE XOAUTH2",
            text: "[AUTHENTICATIONFAILED] no".into(),
        });
        assert_eq!(refused.kind, ErrorKind::SignInRefused);
        assert_eq!(refused.class, refused_class());
        assert!(
            refused.detail().contains("[AUTHENTICATIONFAILED] no"),
            "{}",
            refused.detail()
        );
        assert!(
            !refused.to_string().contains("AUTHENTICATIONFAILED"),
            "one line of its own"
        );

        let big = MailboxError::from(mailbridge_graph::ClientError::LimitExceeded {
            what: "a message of 9 bytes".into(),
            limit: 1,
            unit: "bytes",
            setting: "limits.max_message_size",
        });
        assert_eq!(
            (big.class, big.kind),
            (ErrorClass::LimitExceeded, ErrorKind::LimitExceeded)
        );
        let local = MailboxError::from(mailbridge_graph::ClientError::Sink(
            std::io::ErrorKind::StorageFull.into(),
        ));
        assert_eq!(local.kind, ErrorKind::Sink);

        let own = MailboxError::misconfigured("set the pin");
        assert_eq!(
            (own.class, own.kind),
            (ErrorClass::Misconfigured, ErrorKind::Configuration)
        );
        assert!(std::error::Error::source(&own).is_none());
        assert_eq!(own.detail(), "set the pin");
    }

    fn refused_class() -> ErrorClass {
        mailbridge_imap::ImapError::Refused {
            step: "AUTHENTICATE XOAUTH2",
            text: "[AUTHENTICATIONFAILED] no".into(),
        }
        .class()
    }

    #[test]
    fn references_are_refused_by_the_wrong_transport() {
        let graph = MessageRef::Graph { id: "AAMk".into() };
        let e = graph_id(&MessageRef::Ews { id: "AAMk".into() }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration);
        assert_eq!(graph_id(&graph).unwrap(), "AAMk");
        assert!(ews_id(&graph).is_err());
        assert_eq!(
            MessageRef::Imap {
                uid_validity: 7,
                uid: 42
            }
            .transport_id(),
            "42"
        );
    }

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
