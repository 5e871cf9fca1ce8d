//! The EWS client.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_auth::source::TokenSource;
use mailbridge_auth::token::AuthError;
use mailbridge_http::{ForeignUrl, check_origin, redact};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::mime_stream::{MimeScanner, ScanError};
use crate::xml::{Element, escape, parse};

/// Largest answer read for an operation other than GetItem with MimeContent (a page
/// of 1,000 ids or 512 changes is far smaller).
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Largest GetItem answer with MimeContent at the default
/// [`Limits::max_message_size`]: a 150 MiB message (Exchange Online's largest) in
/// base64 (4/3), and 1 MiB for the envelope around it. The message itself is
/// bounded by the account's limit ([`EwsConfig::limits`]), decoded as it arrives.
pub const MAX_MIME_ANSWER: usize = 150 * 1024 * 1024 / 3 * 4 + 1024 * 1024;
/// Redirects followed on the EWS URL's own scheme, host and port.
const MAX_REDIRECTS: usize = 5;

mod find_item;
pub use find_item::{FolderPeek, FoundPage, ItemSummary};

/// When EWS in Exchange Online is blocked by default, and when it is switched off.
pub const EXCHANGE_ONLINE_EWS_BLOCKED: &str = "2026-10-01";
pub const EXCHANGE_ONLINE_EWS_OFF: &str = "2027-04-01";

/// A warning for accounts that use EWS against Exchange Online.
pub fn exchange_online_notice(ews_url: &str) -> Option<String> {
    let host = ews_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_ascii_lowercase();
    (host.ends_with("outlook.office365.com") || host.ends_with("outlook.office.com")).then(|| {
        format!(
            "EWS in Exchange Online is blocked by default from {EXCHANGE_ONLINE_EWS_BLOCKED} and switched off on {EXCHANGE_ONLINE_EWS_OFF}: move this account to Microsoft Graph (add Microsoft Graph Mail.ReadWrite and Mail.Send application permissions to the same app, grant admin consent, and change the account's transport to graph)"
        )
    })
}

/// Where EWS lives.
#[derive(Debug, Clone)]
pub struct EwsConfig {
    /// `https://mail.contoso.com/EWS/Exchange.asmx`.
    pub url: String,
    pub extra_ca_pem: Option<String>,
    /// The server's own certificate, pinned (see [`mailbridge_tls::Pin`]); other
    /// certificates are verified as usual.
    pub tls_pin: Option<mailbridge_tls::Pin>,
    pub server_version: String,
    pub timeout: Duration,
    /// Attempts for `ErrorServerBusy`.
    pub attempts: u32,
    /// Bounds on a message's size, a sync round's pages and items, and time.
    pub limits: Limits,
}

impl EwsConfig {
    /// Defaults for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            extra_ca_pem: None,
            tls_pin: None,
            server_version: "Exchange2013_SP1".to_owned(),
            timeout: Duration::from_secs(100),
            attempts: 3,
            limits: Limits::default(),
        }
    }
}

/// How requests are authorised. A token comes from its source before each request
/// (so a long-lived mailbox outlives its first token); a 401 gets one retry with the
/// token the source replaces it with.
pub enum EwsAuth {
    /// Delegated tokens: the user's own mailbox (or one it has FullAccess on).
    Bearer { token: Arc<dyn TokenSource> },
    /// App-only tokens (`full_access_as_app`) acting on `mailbox` through
    /// `ExchangeImpersonation` and `X-AnchorMailbox`.
    AppOnly {
        token: Arc<dyn TokenSource>,
        mailbox: String,
    },
    /// Basic, for on-premises Exchange.
    Basic {
        user: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for EwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EwsAuth::Bearer { .. } => f.write_str("Bearer"),
            EwsAuth::AppOnly { mailbox, .. } => f
                .debug_struct("AppOnly")
                .field("mailbox", mailbox)
                .finish_non_exhaustive(),
            EwsAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

/// What failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EwsError {
    /// `url` is redacted.
    #[error("could not reach EWS at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No access token could be had for the request (the class is the sign-in's).
    #[error("no access token for EWS")]
    Token(#[source] AuthError),
    #[error("EWS refused the credentials (HTTP 401{}). {}", diagnostics.as_deref().map(|d| format!(", {d}")).unwrap_or_default(), unauthorized_fix(diagnostics.as_deref()))]
    Unauthorized { diagnostics: Option<String> },
    #[error("EWS answered {code}: {message}. {}", response_fix(code))]
    Response {
        code: String,
        message: String,
        back_off: Option<Duration>,
    },
    #[error(
        "EWS at {url} sent a {operation} answer larger than {limit} bytes: check that the EWS URL is the server's /EWS/Exchange.asmx (not a proxy or a web page); a single message over 150 MB cannot be read through EWS"
    )]
    TooLarge {
        url: String,
        operation: String,
        limit: usize,
    },
    /// EWS (or something in its place) redirected to another scheme, host or port:
    /// not followed, so the credentials go nowhere else. Misconfigured: the same
    /// request is redirected again; the EWS URL is likely not the server's own.
    #[error(
        "EWS redirected to another server, which mailbridge does not follow with the credentials: {0}; if that server is the right one, set the account's EWS URL to its /EWS/Exchange.asmx"
    )]
    Redirected(#[from] ForeignUrl),
    /// A bound of [`Limits`] was reached.
    #[error(
        "{what} exceeds {limit} {unit} ({setting}): if that is genuine, raise {setting} in the account's [account.limits]; otherwise the server is misbehaving"
    )]
    LimitExceeded {
        what: String,
        limit: u64,
        unit: &'static str,
        setting: &'static str,
    },
    #[error("writing the message failed")]
    Sink(#[source] std::io::Error),
    #[error("EWS answered HTTP {status} without a SOAP answer")]
    Status { status: u16 },
    #[error("EWS sent an answer mailbridge does not understand: {0}")]
    Protocol(String),
    /// The configured EWS URL is not a URL.
    #[error("{0}")]
    BadEndpoint(String),
}

fn unauthorized_fix(diagnostics: Option<&str>) -> &'static str {
    match diagnostics.and_then(|d| d.split(';').next()).map(str::trim) {
        Some("2000008") => {
            "the token carries no EWS permission: add Office 365 Exchange Online full_access_as_app (application) or EWS.AccessAsUser.All (delegated) in App registrations -> API permissions and grant admin consent"
        }
        Some("2000003") => {
            "the token is for another audience: request https://outlook.office365.com/.default (app-only) or https://outlook.office365.com/EWS.AccessAsUser.All (delegated)"
        }
        Some("2000005") => "the token has expired: get a new one",
        _ => "check the credentials; Exchange Online accepts only OAuth tokens",
    }
}

fn response_fix(code: &str) -> &'static str {
    match code {
        "ErrorNonExistentMailbox" => {
            "no Exchange mailbox for this address (unlicensed, or on another server): check the address and the licence"
        }
        "ErrorAccessDenied" | "ErrorImpersonateUserDenied" => {
            "the app may not open this mailbox: an application access policy or RBAC scope excludes it, or impersonation is not allowed (`Test-ApplicationAccessPolicy`, `New-ManagementRoleAssignment -Role ApplicationImpersonation`)"
        }
        "ErrorServerBusy" => "the server is throttling: wait the BackOffMilliseconds it gave",
        "ErrorInvalidSyncStateData" => "the sync state is no longer valid: start the sync over",
        "ErrorItemNotFound" => "the item no longer exists",
        "ErrorSendAsDenied" => {
            "the mailbox may not send as this address: grant SendAs (`Add-RecipientPermission … -AccessRights SendAs`)"
        }
        _ => "see the server's message",
    }
}

impl EwsError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            EwsError::Http { .. } | EwsError::Protocol(_) | EwsError::Sink(_) => {
                ErrorClass::Transient
            }
            EwsError::Redirected(_) | EwsError::BadEndpoint(_) => ErrorClass::Misconfigured,
            EwsError::LimitExceeded { .. } => ErrorClass::LimitExceeded,
            EwsError::Token(e) => e.class(),
            EwsError::Unauthorized { diagnostics } => {
                match diagnostics.as_deref().and_then(|d| d.split(';').next()) {
                    Some("2000008") => ErrorClass::NeedsAdmin,
                    Some("2000005") => ErrorClass::Transient,
                    _ => ErrorClass::Misconfigured,
                }
            }
            EwsError::Response { code, back_off, .. } => match code.as_str() {
                "ErrorServerBusy" => ErrorClass::Throttled {
                    retry_after: *back_off,
                },
                "ErrorAccessDenied"
                | "ErrorImpersonateUserDenied"
                | "ErrorNonExistentMailbox"
                | "ErrorSendAsDenied" => ErrorClass::NeedsAdmin,
                _ => ErrorClass::Permanent,
            },
            EwsError::Status { status } if *status >= 500 => ErrorClass::Transient,
            EwsError::Status { .. } | EwsError::TooLarge { .. } => ErrorClass::Permanent,
        }
    }
}

/// A change reported by SyncFolderItems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    ReadFlagChange,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub id: String,
    pub change_key: Option<String>,
    pub is_read: Option<bool>,
}

/// One SyncFolderItems answer.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub changes: Vec<Change>,
    /// Store this as the checkpoint.
    pub sync_state: String,
    /// False: call again with `sync_state` for more.
    pub includes_last: bool,
}

/// The client.
#[derive(Debug, Clone)]
pub struct EwsClient {
    http: reqwest::Client,
    config: EwsConfig,
    /// The EWS URL: redirects are followed only on its origin.
    origin: url::Url,
}

/// A transport error for `url`, shown redacted and without the URL reqwest keeps.
fn http_error(url: &str, source: reqwest::Error) -> EwsError {
    EwsError::Http {
        url: redact(url),
        source: source.without_url(),
    }
}

impl EwsClient {
    /// A client.
    pub fn new(config: EwsConfig) -> Result<Self, EwsError> {
        let origin = url::Url::parse(&config.url).map_err(|e| {
            EwsError::BadEndpoint(format!(
                "the EWS URL {} is not a URL ({e}): set it to e.g. https://mail.contoso.com/EWS/Exchange.asmx",
                redact(&config.url)
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
        if let Some(pin) = config.tls_pin {
            let trust = mailbridge_tls::TlsSettings {
                extra_ca_pem: config.extra_ca_pem.clone(),
                server_name: None,
                pin: Some(pin),
            };
            let tls = trust
                .client_config()
                .map_err(|e| EwsError::Protocol(format!("HTTP client: {e}")))?;
            builder = builder.tls_backend_preconfigured(tls);
        } else if let Some(pem) = &config.extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| EwsError::Protocol(format!("extra CA is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            http: builder
                .build()
                .map_err(|e| EwsError::Protocol(e.to_string()))?,
            config,
            origin,
        })
    }

    fn envelope(&self, auth: &EwsAuth, body: &str) -> String {
        let impersonation = match auth {
            EwsAuth::AppOnly { mailbox, .. } => format!(
                "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>",
                escape(mailbox)
            ),
            _ => String::new(),
        };
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
<soap:Header><t:RequestServerVersion Version="{}" />{impersonation}</soap:Header>
<soap:Body>{body}</soap:Body>
</soap:Envelope>"#,
            escape(&self.config.server_version)
        )
    }

    /// Posts an operation and returns its response message element (after checking
    /// `ResponseClass`), retrying `ErrorServerBusy` after its back-off.
    async fn call(&self, auth: &EwsAuth, body: &str, message: &str) -> Result<Element, EwsError> {
        self.call_bounded(auth, body, message, MAX_ANSWER).await
    }

    /// [`Self::call`] reading at most `limit` bytes of the answer.
    async fn call_bounded(
        &self,
        auth: &EwsAuth,
        body: &str,
        message: &str,
        limit: usize,
    ) -> Result<Element, EwsError> {
        let envelope = self.envelope(auth, body);
        let mut attempt = 1;
        loop {
            let response = self.post(auth, &envelope).await?;
            let status = response.status().as_u16();
            let bytes = mailbridge_http::bounded_body(response, limit)
                .await
                .map_err(|e| match e {
                    mailbridge_http::BodyError::Http(source) => {
                        http_error(&self.config.url, source)
                    }
                    _ => EwsError::TooLarge {
                        url: redact(&self.config.url),
                        operation: message
                            .strip_suffix("ResponseMessage")
                            .unwrap_or(message)
                            .to_owned(),
                        limit,
                    },
                })?;
            let text = String::from_utf8_lossy(&bytes);
            let Ok(root) = parse(&text) else {
                return Err(EwsError::Status { status });
            };
            let result = read_response(&root, message);
            match result {
                Err(EwsError::Response {
                    ref code,
                    back_off: Some(wait),
                    ..
                }) if code == "ErrorServerBusy" && attempt < self.config.attempts => {
                    tokio::time::sleep(wait.min(Duration::from_mins(1))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Posts `envelope` with the credentials, following redirects only on the EWS
    /// URL's own scheme, host and port (a redirect elsewhere is an error naming both);
    /// a 401 to a token is retried once with the token its source replaces it with,
    /// and a 401 that stays is read from `x-ms-diagnostics`.
    async fn post(&self, auth: &EwsAuth, envelope: &str) -> Result<reqwest::Response, EwsError> {
        let source = match auth {
            EwsAuth::Bearer { token } | EwsAuth::AppOnly { token, .. } => Some(token),
            EwsAuth::Basic { .. } => None,
        };
        let mut bearer = match source {
            Some(source) => Some(source.token().await.map_err(EwsError::Token)?),
            None => None,
        };
        let mut replaced = false;
        let mut url = self.origin.clone();
        let mut redirects = 0;
        while redirects <= MAX_REDIRECTS {
            let mut request = self
                .http
                .post(url.clone())
                .header("content-type", "text/xml; charset=utf-8")
                .body(envelope.to_owned());
            request = match (auth, &bearer) {
                (EwsAuth::AppOnly { mailbox, .. }, Some(bearer)) => request
                    .bearer_auth(bearer.expose_secret())
                    .header("X-AnchorMailbox", mailbox),
                (_, Some(bearer)) => request.bearer_auth(bearer.expose_secret()),
                (EwsAuth::Basic { user, password }, None) => {
                    request.basic_auth(user, Some(password.expose_secret()))
                }
                (_, None) => request,
            };
            let response = request
                .send()
                .await
                .map_err(|source| http_error(url.as_str(), source))?;
            let status = response.status();
            // A token refused before its time (revoked, the server's clock ahead of
            // ours): once, a new one from the source; a second 401 is the answer.
            if status.as_u16() == 401
                && !replaced
                && let (Some(source), Some(rejected)) = (source, &bearer)
                && let Some(fresh) = source
                    .refresh_after_rejection(rejected)
                    .await
                    .map_err(EwsError::Token)?
            {
                bearer = Some(fresh);
                replaced = true;
                continue;
            }
            if status.as_u16() == 401 {
                let diagnostics = response
                    .headers()
                    .get("x-ms-diagnostics")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return Err(EwsError::Unauthorized { diagnostics });
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let (true, Some(location)) = (status.is_redirection(), location) else {
                return Ok(response);
            };
            let target = url.join(location).map_err(|_| {
                EwsError::Redirected(ForeignUrl {
                    endpoint: redact(&self.config.url),
                    link: redact(location),
                })
            })?;
            url = check_origin(&self.origin, target.as_str())?;
            redirects += 1;
        }
        Err(EwsError::Protocol(format!(
            "EWS at {} redirected more than {MAX_REDIRECTS} times",
            redact(&self.config.url)
        )))
    }

    /// One round of SyncFolderItems on a distinguished folder (`inbox`, ...), from
    /// `sync_state` (none for the first round).
    pub async fn sync_folder_items(
        &self,
        auth: &EwsAuth,
        folder: &str,
        sync_state: Option<&str>,
        max_changes: u32,
    ) -> Result<SyncPage, EwsError> {
        let state = sync_state.map_or_else(String::new, |s| {
            format!("<m:SyncState>{}</m:SyncState>", escape(s))
        });
        let body = format!(
            r#"<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id="{}" /></m:SyncFolderId>{state}<m:MaxChangesReturned>{}</m:MaxChangesReturned></m:SyncFolderItems>"#,
            escape(folder),
            max_changes.clamp(1, 512)
        );
        let msg = self
            .call(auth, &body, "SyncFolderItemsResponseMessage")
            .await?;
        sync_page(&msg)
    }

    /// A whole SyncFolderItems round: from `sync_state`, answers of at most
    /// `max_changes` followed until `IncludesLastItemInRange`. Bounded by
    /// [`Limits::max_pages`], [`Limits::max_list_items`] (changes) and
    /// [`Limits::command_timeout`].
    pub async fn sync_round(
        &self,
        auth: &EwsAuth,
        folder: &str,
        sync_state: Option<&str>,
        max_changes: u32,
    ) -> Result<SyncPage, EwsError> {
        let mut budget = Budget::new(
            self.config.limits,
            format!("the sync round of folder {folder}"),
        );
        let mut state = sync_state.map(str::to_owned);
        let mut changes = Vec::new();
        loop {
            budget.page()?;
            let page = budget
                .timed(self.sync_folder_items(auth, folder, state.as_deref(), max_changes))
                .await??;
            budget.items(changes.len() + page.changes.len())?;
            changes.extend(page.changes);
            state = Some(page.sync_state);
            if page.includes_last {
                return Ok(SyncPage {
                    changes,
                    sync_state: state.unwrap_or_default(),
                    includes_last: true,
                });
            }
        }
    }
}

/// The bounds of one round of pages.
struct Budget {
    limits: Limits,
    deadline: tokio::time::Instant,
    pages: u64,
    what: String,
}

impl Budget {
    fn new(limits: Limits, what: String) -> Self {
        Self {
            limits,
            deadline: tokio::time::Instant::now() + limits.command_timeout(),
            pages: 0,
            what,
        }
    }

    fn exceeded(&self, limit: u64, unit: &'static str, setting: &'static str) -> EwsError {
        EwsError::LimitExceeded {
            what: self.what.clone(),
            limit,
            unit,
            setting,
        }
    }

    /// Counts a page.
    fn page(&mut self) -> Result<(), EwsError> {
        if self.pages >= self.limits.max_pages {
            return Err(self.exceeded(self.limits.max_pages, "pages", "limits.max_pages"));
        }
        self.pages += 1;
        Ok(())
    }

    /// Checks the entries collected.
    fn items(&self, count: usize) -> Result<(), EwsError> {
        if count as u64 > self.limits.max_list_items {
            return Err(self.exceeded(
                self.limits.max_list_items,
                "entries",
                "limits.max_list_items",
            ));
        }
        Ok(())
    }

    /// `f`, within the round's time.
    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T, EwsError> {
        tokio::time::timeout_at(self.deadline, f)
            .await
            .map_err(|_| {
                self.exceeded(
                    self.limits.command_timeout_secs,
                    "seconds",
                    "limits.command_timeout_secs",
                )
            })
    }
}

/// Reads a SyncFolderItems response message (after [`read_response`]).
/// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/syncfolderitems-operation>
pub fn sync_page(msg: &Element) -> Result<SyncPage, EwsError> {
    let sync_state = msg
        .child("SyncState")
        .map(|s| s.text.clone())
        .ok_or_else(|| EwsError::Protocol("SyncFolderItems answered without SyncState".into()))?;
    let includes_last = msg
        .child("IncludesLastItemInRange")
        .is_none_or(|e| e.text == "true");
    let mut changes = Vec::new();
    if let Some(list) = msg.child("Changes") {
        for c in &list.children {
            let kind = match c.name.as_str() {
                "Create" => ChangeKind::Create,
                "Update" => ChangeKind::Update,
                "Delete" => ChangeKind::Delete,
                "ReadFlagChange" => ChangeKind::ReadFlagChange,
                _ => continue,
            };
            let Some(item_id) = c.find("ItemId") else {
                continue;
            };
            let Some(id) = item_id.attr("Id") else {
                continue;
            };
            changes.push(Change {
                kind,
                id: id.to_owned(),
                change_key: item_id.attr("ChangeKey").map(str::to_owned),
                is_read: c.find("IsRead").map(|e| e.text == "true"),
            });
        }
    }
    Ok(SyncPage {
        changes,
        sync_state,
        includes_last,
    })
}

impl EwsClient {
    /// The item's header fields, in order (GetItem with
    /// `item:InternetMessageHeaders`): the header without the message.
    /// <https://learn.microsoft.com/exchange/client-developer/web-service-reference/internetmessageheaders>
    pub async fn get_headers(
        &self,
        auth: &EwsAuth,
        id: &str,
    ) -> Result<Vec<(String, String)>, EwsError> {
        let body = format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:InternetMessageHeaders" /></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:GetItem>"#,
            escape(id)
        );
        let msg = self.call(auth, &body, "GetItemResponseMessage").await?;
        let list = msg.find("InternetMessageHeaders").ok_or_else(|| {
            EwsError::Protocol("GetItem answered without InternetMessageHeaders".into())
        })?;
        Ok(list
            .children
            .iter()
            .filter(|h| h.name == "InternetMessageHeader")
            .filter_map(|h| Some((h.attr("HeaderName")?.to_owned(), h.text.clone())))
            .collect())
    }

    /// The item's MIME (GetItem with `IncludeMimeContent`), in memory; see
    /// [`Self::get_mime_into`].
    pub async fn get_mime(&self, auth: &EwsAuth, id: &str) -> Result<Vec<u8>, EwsError> {
        let mut mime = Vec::new();
        self.get_mime_into(auth, id, &mut mime).await?;
        Ok(mime)
    }

    /// The item's MIME (GetItem with `IncludeMimeContent`), decoded from base64 as the
    /// answer arrives and written into `sink`; its size. Memory does not follow the
    /// message size: only the envelope around it is kept (at most [`MAX_ANSWER`]).
    /// At most [`Limits::max_message_size`] bytes of message (an answer announcing
    /// more than its base64 is refused before reading) and [`Limits::command_timeout`]
    /// in all. On an error the sink may hold part of the message: discard it.
    pub async fn get_mime_into<W: AsyncWrite + Unpin>(
        &self,
        auth: &EwsAuth,
        id: &str,
        sink: &mut W,
    ) -> Result<u64, EwsError> {
        let body = format!(
            r#"<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:GetItem>"#,
            escape(id)
        );
        let envelope = self.envelope(auth, &body);
        let limits = self.config.limits;
        let mut budget = Budget::new(limits, format!("reading message {id}"));
        // base64 of the largest message, with a line break every 76 characters, and
        // the envelope around it.
        let b64 = limits.max_message_size.div_ceil(3).saturating_mul(4);
        let max_answer = b64
            .saturating_add(b64 / 38)
            .saturating_add(MAX_ANSWER as u64);
        loop {
            budget.page()?;
            let response = budget.timed(self.post(auth, &envelope)).await??;
            let status = response.status().as_u16();
            if response.content_length().is_some_and(|n| n > max_answer) {
                return Err(message_too_large(id, limits.max_message_size));
            }
            let mut scanner = MimeScanner::new(MAX_ANSWER, limits.max_message_size);
            budget
                .timed(Self::stream_mime(
                    &self.config.url,
                    id,
                    response,
                    &mut scanner,
                    sink,
                ))
                .await??;
            let total = scanner.decoded();
            let found = scanner.found();
            let rest = scanner
                .finish()
                .map_err(|e| EwsError::Protocol(format!("GetItem answer for message {id}: {e}")))?;
            let text = String::from_utf8_lossy(&rest);
            let Ok(root) = parse(&text) else {
                return Err(EwsError::Status { status });
            };
            match read_response(&root, "GetItemResponseMessage") {
                Err(EwsError::Response {
                    ref code,
                    back_off: Some(wait),
                    ..
                }) if code == "ErrorServerBusy"
                    && budget.pages < u64::from(self.config.attempts)
                    && total == 0 =>
                {
                    tokio::time::sleep(wait.min(Duration::from_mins(1))).await;
                }
                Err(e) => return Err(e),
                Ok(_) if !found => {
                    return Err(EwsError::Protocol(
                        "GetItem answered without MimeContent".into(),
                    ));
                }
                Ok(_) => {
                    sink.flush().await.map_err(EwsError::Sink)?;
                    return Ok(total);
                }
            }
        }
    }

    /// Feeds the answer's body through `scanner`, writing the decoded message.
    async fn stream_mime<W: AsyncWrite + Unpin>(
        url: &str,
        id: &str,
        mut response: reqwest::Response,
        scanner: &mut MimeScanner,
        sink: &mut W,
    ) -> Result<(), EwsError> {
        let mut out = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| http_error(url, source))?
        {
            scanner.feed(&chunk, &mut out).map_err(|e| match e {
                ScanError::MessageTooLarge { limit } => message_too_large(id, limit),
                e => EwsError::Protocol(format!("GetItem answer for message {id}: {e}")),
            })?;
            if !out.is_empty() {
                sink.write_all(&out).await.map_err(EwsError::Sink)?;
                out.clear();
            }
        }
        Ok(())
    }

    /// Marks an item read or unread.
    pub async fn set_read(
        &self,
        auth: &EwsAuth,
        id: &str,
        change_key: Option<&str>,
        read: bool,
    ) -> Result<(), EwsError> {
        let ck = change_key.map_or_else(String::new, |k| format!(r#" ChangeKey="{}""#, escape(k)));
        let body = format!(
            r#"<m:UpdateItem MessageDisposition="SaveOnly" ConflictResolution="AlwaysOverwrite"><m:ItemChanges><t:ItemChange><t:ItemId Id="{}"{ck} /><t:Updates><t:SetItemField><t:FieldURI FieldURI="message:IsRead" /><t:Message><t:IsRead>{read}</t:IsRead></t:Message></t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>"#,
            escape(id)
        );
        self.call(auth, &body, "UpdateItemResponseMessage")
            .await
            .map(|_| ())
    }

    /// Moves an item to a distinguished folder; the new item id.
    pub async fn move_item(
        &self,
        auth: &EwsAuth,
        id: &str,
        folder: &str,
    ) -> Result<Option<String>, EwsError> {
        let body = format!(
            r#"<m:MoveItem><m:ToFolderId><t:DistinguishedFolderId Id="{}" /></m:ToFolderId><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:MoveItem>"#,
            escape(folder),
            escape(id)
        );
        let msg = self.call(auth, &body, "MoveItemResponseMessage").await?;
        Ok(msg
            .find("ItemId")
            .and_then(|e| e.attr("Id"))
            .map(str::to_owned))
    }

    /// Deletes an item (`HardDelete`, or `MoveToDeletedItems`).
    pub async fn delete_item(&self, auth: &EwsAuth, id: &str, hard: bool) -> Result<(), EwsError> {
        let kind = if hard {
            "HardDelete"
        } else {
            "MoveToDeletedItems"
        };
        let body = format!(
            r#"<m:DeleteItem DeleteType="{kind}"><m:ItemIds><t:ItemId Id="{}" /></m:ItemIds></m:DeleteItem>"#,
            escape(id)
        );
        self.call(auth, &body, "DeleteItemResponseMessage")
            .await
            .map(|_| ())
    }

    /// Sends a MIME message (CreateItem `SendAndSaveCopy`, or `SendOnly`).
    pub async fn send_mime(
        &self,
        auth: &EwsAuth,
        mime: &[u8],
        save_copy: bool,
    ) -> Result<(), EwsError> {
        let disposition = if save_copy {
            "SendAndSaveCopy"
        } else {
            "SendOnly"
        };
        let saved = if save_copy {
            r#"<m:SavedItemFolderId><t:DistinguishedFolderId Id="sentitems" /></m:SavedItemFolderId>"#
        } else {
            ""
        };
        let body = format!(
            r#"<m:CreateItem MessageDisposition="{disposition}">{saved}<m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{}</t:MimeContent></t:Message></m:Items></m:CreateItem>"#,
            STANDARD.encode(mime)
        );
        self.call(auth, &body, "CreateItemResponseMessage")
            .await
            .map(|_| ())
    }
}

/// The error for a message over `limit` bytes.
fn message_too_large(id: &str, limit: u64) -> EwsError {
    EwsError::LimitExceeded {
        what: format!("message {id}"),
        limit,
        unit: "bytes",
        setting: "limits.max_message_size",
    }
}

/// `BackOffMilliseconds` from `<t:Value Name="BackOffMilliseconds">` (or an element of
/// that name).
fn back_off_ms(el: &Element) -> Option<Duration> {
    let mut values = Vec::new();
    el.find_all("Value", &mut values);
    values
        .into_iter()
        .find(|v| v.attr("Name") == Some("BackOffMilliseconds"))
        .or_else(|| el.find("BackOffMilliseconds"))
        .and_then(|e| e.text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// Reads the response message `message` from an answer: a SOAP fault or an item error
/// becomes [`EwsError::Response`].
pub fn read_response(root: &Element, message: &str) -> Result<Element, EwsError> {
    if let Some(fault) = root.find("Fault") {
        let code = fault
            .find("ResponseCode")
            .map(|e| e.text.clone())
            .or_else(|| fault.find("faultcode").map(|e| e.text.clone()))
            .unwrap_or_default();
        let message = fault
            .find("Message")
            .or_else(|| fault.find("faultstring"))
            .map(|e| e.text.clone())
            .unwrap_or_default();
        let back_off = back_off_ms(fault);
        return Err(EwsError::Response {
            code,
            message,
            back_off,
        });
    }
    let msg = root
        .find(message)
        .ok_or_else(|| EwsError::Protocol(format!("no {message} in the answer")))?;
    if msg.attr("ResponseClass") == Some("Error") {
        let code = msg
            .child("ResponseCode")
            .map(|e| e.text.clone())
            .unwrap_or_default();
        let text = msg
            .child("MessageText")
            .map(|e| e.text.clone())
            .unwrap_or_default();
        let back_off = back_off_ms(msg);
        return Err(EwsError::Response {
            code,
            message: text,
            back_off,
        });
    }
    Ok(msg.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_gets_the_retirement_notice() {
        let n = exchange_online_notice("https://outlook.office365.com/EWS/Exchange.asmx").unwrap();
        assert!(
            n.contains("2026-10-01") && n.contains("2027-04-01") && n.contains("Microsoft Graph")
        );
        assert!(exchange_online_notice("https://mail.contoso.com/EWS/Exchange.asmx").is_none());
    }

    #[test]
    fn faults_and_item_errors_are_read() {
        let fault = parse(r#"<s:Envelope xmlns:s="x"><s:Body><s:Fault><faultcode>a:ErrorServerBusy</faultcode><faultstring>The server cannot service this request right now. Try again later.</faultstring><detail><e:ResponseCode xmlns:e="y">ErrorServerBusy</e:ResponseCode><e:MessageXml xmlns:e="y"><t:Value xmlns:t="z" Name="BackOffMilliseconds">297749</t:Value></e:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#).unwrap();
        let err = read_response(&fault, "GetItemResponseMessage").unwrap_err();
        assert!(matches!(err.class(), ErrorClass::Throttled { .. }), "{err}");
        let item = parse(r#"<E><B><m:GetItemResponseMessage ResponseClass="Error"><m:MessageText>The specified object was not found in the store.</m:MessageText><m:ResponseCode>ErrorItemNotFound</m:ResponseCode></m:GetItemResponseMessage></B></E>"#).unwrap();
        let err = read_response(&item, "GetItemResponseMessage").unwrap_err();
        assert!(err.to_string().contains("ErrorItemNotFound"));
    }
}
