//! The Graph mail client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use mailbridge_auth::source::TokenSource;
use mailbridge_auth::token::AuthError;
use mailbridge_http::{BodyError, ForeignUrl, bounded_body, check_origin, redact};
use mailbridge_types::config::Limits;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::error::{GraphError, Meaning};
pub use crate::page::{DeltaItem, DeltaPage};

mod inbox_probe;
pub use inbox_probe::{FolderCounts, MessageHeaders};
/// Largest JSON answer read (a delta page of the largest page size is far smaller).
const MAX_JSON_BODY: usize = 32 * 1024 * 1024;
/// Largest error answer read; the rest is not needed to explain it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Which mailbox: app-only addresses a user by object id or UPN; delegated uses `/me`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mailbox {
    Me,
    User(String),
}

impl Mailbox {
    fn path(&self) -> String {
        match self {
            Mailbox::Me => "/me".to_owned(),
            Mailbox::User(id) => format!("/users/{}", percent_encode(id)),
        }
    }
}

fn percent_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// The Graph root including the version, e.g. `https://graph.microsoft.com/v1.0`.
    pub root: String,
    /// Extra trusted CA (PEM).
    pub extra_ca_pem: Option<String>,
    /// The server's own certificate, pinned (see [`mailbridge_tls::Pin`]); other
    /// certificates are verified as usual.
    pub tls_pin: Option<mailbridge_tls::Pin>,
    /// Requests in flight per mailbox (Graph allows 4).
    pub concurrency_per_mailbox: usize,
    /// Attempts for throttled or transient answers.
    pub attempts: u32,
    /// Longest wait honoured from `Retry-After`.
    pub max_retry_after: Duration,
    pub timeout: Duration,
    /// Bounds on a delta round (pages, items, time) and on a message's size.
    pub limits: Limits,
}

impl GraphConfig {
    /// Microsoft's defaults for `root`.
    pub fn new(root: &str) -> Self {
        Self {
            root: root.trim_end_matches('/').to_owned(),
            extra_ca_pem: None,
            tls_pin: None,
            concurrency_per_mailbox: 4,
            attempts: 4,
            max_retry_after: Duration::from_mins(2),
            timeout: Duration::from_secs(100),
            limits: Limits::default(),
        }
    }
}

/// A whole delta round: every page followed to its `@odata.deltaLink`.
#[derive(Debug, Clone)]
pub struct DeltaRound {
    pub items: Vec<DeltaItem>,
    /// Store this as the checkpoint.
    pub delta_link: String,
    /// Pages read.
    pub pages: u64,
}

/// A draft created by [`GraphClient::create_draft`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub id: String,
    /// The `Message-ID` Exchange gave it.
    pub internet_message_id: Option<String>,
}

/// Upload-session chunks (all but the last) are a multiple of 320 KiB.
pub const UPLOAD_CHUNK_UNIT: usize = 320 * 1024;
/// Attachments of this size or more go through an upload session (3 MB).
pub const UPLOAD_SESSION_MIN: u64 = 3 * 1024 * 1024;
/// Largest attachment an upload session takes (150 MB).
pub const UPLOAD_SESSION_MAX: u64 = 150 * 1024 * 1024;
/// Largest request body Graph takes (4 MB), which bounds `sendMail` MIME (base64).
pub const REQUEST_LIMIT: u64 = 4 * 1024 * 1024;

/// The client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    config: GraphConfig,
    /// The root as a URL: links Graph hands out must be on its origin.
    origin: url::Url,
    limits: Arc<Mutex<HashMap<Mailbox, Arc<Semaphore>>>>,
}

/// Error of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// `url` is redacted (no query: an upload session's URL carries its credential).
    #[error("could not reach Microsoft Graph at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// Graph (or something answering in its place) handed out a next or delta link
    /// on another scheme, host or port: it is not followed, so the token goes nowhere
    /// else. Misconfigured: retrying gets the same link, and the likely cause is a
    /// Graph endpoint set to a proxy or alias whose answers name the real host.
    #[error(
        "Microsoft Graph gave a link to another server, which mailbridge does not follow with the token: {0}; if that server is the right Graph endpoint, set the account's Graph endpoint to it"
    )]
    ForeignLink(#[from] ForeignUrl),
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
    #[error("Microsoft Graph sent an answer mailbridge does not understand: {0}")]
    Protocol(String),
    /// No access token could be had for the request (the class is the sign-in's: a
    /// withdrawn consent needs a person, a token endpoint down is transient).
    #[error("no access token for Microsoft Graph")]
    Token(#[source] AuthError),
    /// The configured Graph root is not a URL.
    #[error("{0}")]
    BadEndpoint(String),
    #[error("writing the message failed")]
    Sink(#[source] std::io::Error),
}

impl ClientError {
    /// What to do about it.
    pub fn class(&self) -> mailbridge_types::ErrorClass {
        match self {
            ClientError::Graph(g) => g.class(),
            ClientError::ForeignLink(_) | ClientError::BadEndpoint(_) => {
                mailbridge_types::ErrorClass::Misconfigured
            }
            ClientError::LimitExceeded { .. } => mailbridge_types::ErrorClass::LimitExceeded,
            ClientError::Token(e) => e.class(),
            ClientError::Http { .. } | ClientError::Protocol(_) | ClientError::Sink(_) => {
                mailbridge_types::ErrorClass::Transient
            }
        }
    }
}

/// A transport error for `url`, shown redacted and without the URL reqwest keeps.
fn http_error(url: &str, source: reqwest::Error) -> ClientError {
    ClientError::Http {
        url: redact(url),
        source: source.without_url(),
    }
}

/// The text `field` of an answer, or a protocol error saying `missing`.
fn text_field(v: &Value, field: &str, missing: &str) -> Result<String, ClientError> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Protocol(missing.to_owned()))
}

impl GraphClient {
    /// A client.
    pub fn new(config: GraphConfig) -> Result<Self, ClientError> {
        let origin = url::Url::parse(&config.root).map_err(|e| {
            ClientError::BadEndpoint(format!(
                "the Graph root {} is not a URL ({e}): set the account's Graph endpoint to e.g. https://graph.microsoft.com",
                redact(&config.root)
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            // A body that stops arriving fails after this long, whatever its size.
            .read_timeout(config.timeout)
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
        if let Some(pin) = config.tls_pin {
            let trust = mailbridge_tls::TlsSettings {
                extra_ca_pem: config.extra_ca_pem.clone(),
                server_name: None,
                pin: Some(pin),
            };
            let tls = trust
                .client_config()
                .map_err(|e| ClientError::Protocol(format!("HTTP client: {e}")))?;
            builder = builder.tls_backend_preconfigured(tls);
        } else if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| ClientError::Protocol(format!("extra CA is not PEM: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            config,
            origin,
            limits: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn limiter(&self, mailbox: &Mailbox) -> Arc<Semaphore> {
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        limits
            .entry(mailbox.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.concurrency_per_mailbox.max(1))))
            .clone()
    }

    /// Sends a request built by `build` with a token from `token`, at most N in flight
    /// per mailbox, retrying throttled and transient answers after `Retry-After`
    /// (bounded), and a 401 once with a token the source replaced it with.
    async fn send(
        &self,
        mailbox: &Mailbox,
        token: &dyn TokenSource,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with(mailbox, Some(token), url, build).await
    }

    /// [`Self::send`] with the bearer token optional: an upload session's `uploadUrl`
    /// carries its own authorisation and must not get the Graph token.
    async fn send_with(
        &self,
        mailbox: &Mailbox,
        token: Option<&dyn TokenSource>,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut bearer = match token {
            Some(source) => Some(source.token().await.map_err(ClientError::Token)?),
            None => None,
        };
        let limiter = self.limiter(mailbox);
        let _permit = limiter
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Protocol("limiter closed".into()))?;
        let mut attempt = 1;
        let mut backoff = Duration::from_millis(500);
        let mut replaced = false;
        loop {
            let mut request = build(&self.http);
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer.expose_secret());
            }
            let response = request
                .send()
                .await
                .map_err(|source| http_error(url, source))?;
            let status = response.status().as_u16();
            if status < 400 {
                return Ok(response);
            }
            // A token refused before its time (revoked, Graph's clock ahead of ours):
            // once, a new one from the source; a second 401 is the answer.
            if status == 401
                && !replaced
                && let (Some(source), Some(rejected)) = (token, &bearer)
                && let Some(fresh) = source
                    .refresh_after_rejection(rejected)
                    .await
                    .map_err(ClientError::Token)?
            {
                bearer = Some(fresh);
                replaced = true;
                continue;
            }
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let request_id = response
                .headers()
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = bounded_body(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let error = GraphError::from_answer(status, retry_after, request_id, &body);
            let retryable = matches!(error.meaning, Meaning::Throttled | Meaning::Transient);
            if !retryable || attempt >= self.config.attempts {
                return Err(error.into());
            }
            let wait = retry_after
                .unwrap_or(backoff)
                .min(self.config.max_retry_after);
            tokio::time::sleep(wait).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn json(
        &self,
        mailbox: &Mailbox,
        token: &dyn TokenSource,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ClientError> {
        let response = self.send(mailbox, token, url, build).await?;
        let bytes = bounded_body(response, MAX_JSON_BODY)
            .await
            .map_err(|e| match e {
                BodyError::Http(source) => http_error(url, source),
                e => ClientError::Protocol(format!("{}: {e}", redact(url))),
            })?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{}: {e}", redact(url))))
    }

    /// The raw body of a JSON answer, read with the page bound.
    async fn body(
        &self,
        mailbox: &Mailbox,
        token: &dyn TokenSource,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self.send(mailbox, token, url, build).await?;
        bounded_body(response, MAX_JSON_BODY)
            .await
            .map_err(|e| match e {
                BodyError::Http(source) => http_error(url, source),
                e => ClientError::Protocol(format!("{}: {e}", redact(url))),
            })
    }

    /// True when `link` is on the Graph root's scheme, host and port (a stored delta
    /// link from before the endpoint changed is not).
    pub fn is_own_link(&self, link: &str) -> bool {
        check_origin(&self.origin, link).is_ok()
    }

    /// `{root}{mailbox}/messages/{id}{suffix}`.
    fn message_url(&self, mailbox: &Mailbox, id: &str, suffix: &str) -> String {
        format!(
            "{}{}/messages/{}{suffix}",
            self.config.root,
            mailbox.path(),
            percent_encode(id)
        )
    }

    fn folder_url(&self, mailbox: &Mailbox, folder: &str, rest: &str) -> String {
        format!(
            "{}{}/mailFolders/{}/{rest}",
            self.config.root,
            mailbox.path(),
            percent_encode(folder)
        )
    }

    /// One page of a folder's delta sync: from the start (`from = None`), or from a
    /// stored `@odata.nextLink` / `@odata.deltaLink` (which must be on the root's
    /// origin, as must the links the page hands out).
    pub async fn delta(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        folder: &str,
        from: Option<&str>,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        let url = from.map_or_else(
            || self.first_delta_url(mailbox, folder, None),
            str::to_owned,
        );
        self.delta_page(token, mailbox, url, page_size).await
    }

    /// The first page of a folder's delta sync limited to messages received at or
    /// after `since` (an ISO 8601 UTC date-time, e.g. `2026-12-01T00:00:00Z`): the one
    /// `$filter` message delta takes (`receivedDateTime ge`). Its links keep the
    /// filter, so the round's `@odata.deltaLink` goes on tracking those messages.
    /// <https://learn.microsoft.com/graph/delta-query-messages>
    pub async fn delta_received_since(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        folder: &str,
        since: &str,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        let url = self.first_delta_url(mailbox, folder, Some(since));
        self.delta_page(token, mailbox, url, page_size).await
    }

    /// The URL of a delta round's first page.
    fn first_delta_url(&self, mailbox: &Mailbox, folder: &str, since: Option<&str>) -> String {
        let filter = since.map_or_else(String::new, |since| {
            format!(
                "&$filter={}",
                percent_encode(&format!("receivedDateTime ge {since}"))
            )
        });
        self.folder_url(
            mailbox,
            folder,
            &format!("messages/delta?$select=subject,isRead,receivedDateTime{filter}"),
        )
    }

    async fn delta_page(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        url: String,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        // The token goes only to the configured root's origin, whoever wrote the link.
        check_origin(&self.origin, &url)?;
        let prefer = format!("odata.maxpagesize={page_size}");
        let bytes = self
            .body(mailbox, token, &url, |h| {
                h.get(&url).header("Prefer", &prefer)
            })
            .await?;
        let max_items = usize::try_from(self.config.limits.max_list_items).unwrap_or(usize::MAX);
        let page = crate::page::parse_delta_page(&bytes, max_items).map_err(|e| match e {
            crate::page::PageError::TooManyItems { .. } => self.too_many_items(mailbox),
            e => ClientError::Protocol(format!("{}: {e}", redact(&url))),
        })?;
        // Refused when handed out, before a deltaLink becomes a stored checkpoint.
        for link in [&page.next_link, &page.delta_link].into_iter().flatten() {
            check_origin(&self.origin, link)?;
        }
        Ok(page)
    }

    fn too_many_items(&self, mailbox: &Mailbox) -> ClientError {
        ClientError::LimitExceeded {
            what: format!("the delta listing of {}", mailbox.path()),
            limit: self.config.limits.max_list_items,
            unit: "entries",
            setting: "limits.max_list_items",
        }
    }

    /// A whole delta round of `folder`: from a stored link (`from`), else from the
    /// start (received at or after `since` when given), following `@odata.nextLink`
    /// to the `@odata.deltaLink`. Bounded by [`Limits::max_pages`],
    /// [`Limits::max_list_items`] and [`Limits::command_timeout`]; every link must be
    /// on the root's origin.
    pub async fn delta_round(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        folder: &str,
        from: Option<&str>,
        since: Option<&str>,
        page_size: u32,
    ) -> Result<DeltaRound, ClientError> {
        let limits = self.config.limits;
        let deadline = tokio::time::Instant::now() + limits.command_timeout();
        let mut items: Vec<DeltaItem> = Vec::new();
        let mut pages = 0u64;
        let mut url = match from {
            Some(link) => link.to_owned(),
            None => self.first_delta_url(mailbox, folder, since),
        };
        loop {
            if pages >= limits.max_pages {
                return Err(ClientError::LimitExceeded {
                    what: format!("the delta round of folder {folder}"),
                    limit: limits.max_pages,
                    unit: "pages",
                    setting: "limits.max_pages",
                });
            }
            pages += 1;
            let page =
                tokio::time::timeout_at(deadline, self.delta_page(token, mailbox, url, page_size))
                    .await
                    .map_err(|_| ClientError::LimitExceeded {
                        what: format!("the delta round of folder {folder}"),
                        limit: limits.command_timeout_secs,
                        unit: "seconds",
                        setting: "limits.command_timeout_secs",
                    })??;
            if (items.len() + page.items.len()) as u64 > limits.max_list_items {
                return Err(self.too_many_items(mailbox));
            }
            items.extend(page.items);
            if let Some(next) = page.next_link {
                url = next;
                continue;
            }
            let delta_link = page.delta_link.ok_or_else(|| {
                ClientError::Protocol("Graph ended a delta round without a deltaLink".into())
            })?;
            return Ok(DeltaRound {
                items,
                delta_link,
                pages,
            });
        }
    }

    /// The message's MIME (`$value`), streamed into `sink`; its size. At most
    /// [`Limits::max_message_size`] bytes: a larger `Content-Length` is refused before
    /// reading, and a body that goes past it (with or without a length) is an error,
    /// never a message cut short. A message may take [`Limits::command_timeout`] in
    /// all, as long as its bytes keep coming (each read has the client's timeout).
    pub async fn fetch_mime<W: AsyncWrite + Unpin>(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        id: &str,
        sink: &mut W,
    ) -> Result<u64, ClientError> {
        let url = self.message_url(mailbox, id, "/$value");
        let limits = self.config.limits;
        let too_large = || ClientError::LimitExceeded {
            what: format!("message {id}"),
            limit: limits.max_message_size,
            unit: "bytes",
            setting: "limits.max_message_size",
        };
        let response = self
            .send(mailbox, token, &url, |h| {
                h.get(&url).timeout(limits.command_timeout())
            })
            .await?;
        if response
            .content_length()
            .is_some_and(|n| n > limits.max_message_size)
        {
            return Err(too_large());
        }
        let mut stream = response.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| http_error(&url, source))?;
            total += chunk.len() as u64;
            if total > limits.max_message_size {
                return Err(too_large());
            }
            sink.write_all(&chunk).await.map_err(ClientError::Sink)?;
        }
        sink.flush().await.map_err(ClientError::Sink)?;
        Ok(total)
    }

    /// Marks a message read or unread.
    pub async fn set_read(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        id: &str,
        read: bool,
    ) -> Result<(), ClientError> {
        let url = self.message_url(mailbox, id, "");
        let body = json!({ "isRead": read });
        self.json(mailbox, token, &url, |h| h.patch(&url).json(&body))
            .await
            .map(|_| ())
    }

    /// Moves a message to a folder (id or well-known name); the moved message's new id.
    pub async fn move_to(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        id: &str,
        destination: &str,
    ) -> Result<String, ClientError> {
        let url = self.message_url(mailbox, id, "/move");
        let body = json!({ "destinationId": destination });
        let v = self
            .json(mailbox, token, &url, |h| h.post(&url).json(&body))
            .await?;
        text_field(&v, "id", "move answered without an id")
    }

    /// Deletes a message (to Deleted Items, as Graph does).
    pub async fn delete(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        id: &str,
    ) -> Result<(), ClientError> {
        let url = self.message_url(mailbox, id, "");
        self.json(mailbox, token, &url, |h| h.delete(&url))
            .await
            .map(|_| ())
    }

    /// Sends a MIME message (`sendMail` with `Content-Type: text/plain`, base64), which
    /// Graph accepts up to about 4 MB; a copy goes to Sent Items.
    pub async fn send_mime(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        mime: &[u8],
    ) -> Result<(), ClientError> {
        let url = format!("{}{}/sendMail", self.config.root, mailbox.path());
        let body = STANDARD.encode(mime);
        self.json(mailbox, token, &url, |h| {
            h.post(&url)
                .header("content-type", "text/plain")
                .body(body.clone())
        })
        .await
        .map(|_| ())
    }

    /// Creates a draft from a Graph `message` object (`POST {mailbox}/messages`);
    /// the draft's id and `internetMessageId`.
    ///
    /// <https://learn.microsoft.com/graph/api/user-post-messages>
    pub async fn create_draft(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        message: &Value,
    ) -> Result<Draft, ClientError> {
        let url = format!("{}{}/messages", self.config.root, mailbox.path());
        let v = self
            .json(mailbox, token, &url, |h| h.post(&url).json(message))
            .await?;
        let id = text_field(&v, "id", "the new draft has no id")?;
        Ok(Draft {
            id,
            internet_message_id: v["internetMessageId"].as_str().map(str::to_owned),
        })
    }

    /// Adds a file attachment of less than 3 MB to a draft in one request
    /// (`POST messages/{id}/attachments`, base64 `contentBytes`).
    ///
    /// <https://learn.microsoft.com/graph/api/message-post-attachments>
    pub async fn add_attachment(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        message_id: &str,
        name: &str,
        content_type: &str,
        content: &[u8],
    ) -> Result<(), ClientError> {
        let url = self.message_url(mailbox, message_id, "/attachments");
        let body = json!({
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": name,
            "contentType": content_type,
            "contentBytes": STANDARD.encode(content),
        });
        self.json(mailbox, token, &url, |h| h.post(&url).json(&body))
            .await
            .map(|_| ())
    }

    /// Opens an upload session for an attachment of 3 to 150 MB on a draft
    /// (`POST messages/{id}/attachments/createUploadSession`); its `uploadUrl`.
    ///
    /// <https://learn.microsoft.com/graph/api/attachment-createuploadsession>
    pub async fn create_upload_session(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        message_id: &str,
        name: &str,
        content_type: &str,
        size: u64,
    ) -> Result<String, ClientError> {
        let url = self.message_url(mailbox, message_id, "/attachments/createUploadSession");
        let body = json!({
            "AttachmentItem": {
                "attachmentType": "file",
                "name": name,
                "size": size,
                "contentType": content_type,
            }
        });
        let v = self
            .json(mailbox, token, &url, |h| h.post(&url).json(&body))
            .await?;
        text_field(&v, "uploadUrl", "the upload session has no uploadUrl")
    }

    /// Uploads one chunk (`PUT uploadUrl` with `Content-Range: bytes start-end/total`),
    /// without the Graph token: the URL authorises itself. True when this was the last
    /// chunk (201). Chunks other than the last must be a multiple of
    /// [`UPLOAD_CHUNK_UNIT`] and at most 4 MB. Counts against the mailbox's requests in
    /// flight and is retried after `Retry-After` like every request.
    ///
    /// <https://learn.microsoft.com/graph/outlook-large-attachments>
    pub async fn upload_chunk(
        &self,
        mailbox: &Mailbox,
        upload_url: &str,
        start: u64,
        total: u64,
        chunk: bytes::Bytes,
    ) -> Result<bool, ClientError> {
        let len = chunk.len() as u64;
        if len == 0 {
            return Err(ClientError::Protocol("an empty upload chunk".into()));
        }
        let range = format!("bytes {start}-{}/{total}", start + len - 1);
        let response = self
            .send_with(mailbox, None, upload_url, |h| {
                h.put(upload_url)
                    .header("content-range", &range)
                    .header("content-type", "application/octet-stream")
                    .body(chunk.clone())
            })
            .await?;
        Ok(response.status().as_u16() == 201)
    }

    /// Cancels an upload session (`DELETE uploadUrl`).
    pub async fn cancel_upload(
        &self,
        mailbox: &Mailbox,
        upload_url: &str,
    ) -> Result<(), ClientError> {
        self.send_with(mailbox, None, upload_url, |h| h.delete(upload_url))
            .await
            .map(|_| ())
    }

    /// Sends a draft (`POST messages/{id}/send`); Graph moves it to Sent Items.
    ///
    /// <https://learn.microsoft.com/graph/api/message-send>
    pub async fn send_draft(
        &self,
        token: &dyn TokenSource,
        mailbox: &Mailbox,
        message_id: &str,
    ) -> Result<(), ClientError> {
        let url = self.message_url(mailbox, message_id, "/send");
        // An empty body with a length: Graph answers 411 to a POST without one.
        self.json(mailbox, token, &url, |h| h.post(&url).body(""))
            .await
            .map(|_| ())
    }
}
