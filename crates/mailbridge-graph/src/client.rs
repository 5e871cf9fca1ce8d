//! The Graph mail client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use mailbridge_http::{BodyError, bounded_body};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use crate::error::{GraphError, Meaning};

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
        }
    }
}

/// One entry of a delta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaItem {
    pub id: String,
    /// `@removed`: deleted or moved out of the folder.
    pub removed: bool,
    pub is_read: Option<bool>,
    pub subject: Option<String>,
    pub received: Option<String>,
}

/// A page of a delta sync.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    pub items: Vec<DeltaItem>,
    /// Fetch this for the next page (`@odata.nextLink`).
    pub next_link: Option<String>,
    /// Store this as the checkpoint; fetch it for the next round (`@odata.deltaLink`).
    pub delta_link: Option<String>,
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
    limits: Arc<Mutex<HashMap<Mailbox, Arc<Semaphore>>>>,
}

/// Error of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("could not reach Microsoft Graph at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Microsoft Graph sent an answer mailbridge does not understand: {0}")]
    Protocol(String),
    #[error("writing the message failed")]
    Sink(#[source] std::io::Error),
}

impl ClientError {
    /// What to do about it.
    pub fn class(&self) -> mailbridge_types::ErrorClass {
        match self {
            ClientError::Graph(g) => g.class(),
            ClientError::Http { .. } | ClientError::Protocol(_) | ClientError::Sink(_) => {
                mailbridge_types::ErrorClass::Transient
            }
        }
    }
}

/// The longest a message body (`$value`) may take in all, as long as its bytes keep
/// coming (each read has the client's timeout): 150 MB at about 350 kbit/s.
const MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_hours(1);

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

    /// Sends a request built by `build`, at most N in flight per mailbox, retrying
    /// throttled and transient answers after `Retry-After` (bounded).
    async fn send(
        &self,
        mailbox: &Mailbox,
        token: &SecretString,
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
        token: Option<&SecretString>,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let limiter = self.limiter(mailbox);
        let _permit = limiter
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Protocol("limiter closed".into()))?;
        let mut attempt = 1;
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut request = build(&self.http);
            if let Some(token) = token {
                request = request.bearer_auth(token.expose_secret());
            }
            let response = request.send().await.map_err(|source| ClientError::Http {
                url: url.to_owned(),
                source,
            })?;
            let status = response.status().as_u16();
            if status < 400 {
                return Ok(response);
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
        token: &SecretString,
        url: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, ClientError> {
        let response = self.send(mailbox, token, url, build).await?;
        let bytes = bounded_body(response, MAX_JSON_BODY)
            .await
            .map_err(|e| match e {
                BodyError::Http(source) => ClientError::Http {
                    url: url.to_owned(),
                    source,
                },
                e => ClientError::Protocol(format!("{url}: {e}")),
            })?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{url}: {e}")))
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
    /// stored `@odata.nextLink` / `@odata.deltaLink`.
    pub async fn delta(
        &self,
        token: &SecretString,
        mailbox: &Mailbox,
        folder: &str,
        from: Option<&str>,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        let url = from.map_or_else(
            || {
                self.folder_url(
                    mailbox,
                    folder,
                    "messages/delta?$select=subject,isRead,receivedDateTime",
                )
            },
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
        token: &SecretString,
        mailbox: &Mailbox,
        folder: &str,
        since: &str,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        let url = self.folder_url(
            mailbox,
            folder,
            &format!(
                "messages/delta?$select=subject,isRead,receivedDateTime&$filter={}",
                percent_encode(&format!("receivedDateTime ge {since}"))
            ),
        );
        self.delta_page(token, mailbox, url, page_size).await
    }

    async fn delta_page(
        &self,
        token: &SecretString,
        mailbox: &Mailbox,
        url: String,
        page_size: u32,
    ) -> Result<DeltaPage, ClientError> {
        let prefer = format!("odata.maxpagesize={page_size}");
        let v = self
            .json(mailbox, token, &url, |h| {
                h.get(&url).header("Prefer", &prefer)
            })
            .await?;
        // Not a delta page (a proxy's answer, an HTML page in JSON clothing): an empty
        // page here would end the sync round as if the folder had no news.
        let Some(values) = v["value"].as_array() else {
            return Err(ClientError::Protocol(format!(
                "{url}: a delta page without a value array"
            )));
        };
        let items = values
            .iter()
            .filter_map(|m| {
                Some(DeltaItem {
                    id: m["id"].as_str()?.to_owned(),
                    removed: m.get("@removed").is_some(),
                    is_read: m["isRead"].as_bool(),
                    subject: m["subject"].as_str().map(str::to_owned),
                    received: m["receivedDateTime"].as_str().map(str::to_owned),
                })
            })
            .collect();
        Ok(DeltaPage {
            items,
            next_link: v["@odata.nextLink"].as_str().map(str::to_owned),
            delta_link: v["@odata.deltaLink"].as_str().map(str::to_owned),
        })
    }

    /// The message's MIME (`$value`), streamed into `sink`; its size.
    pub async fn fetch_mime<W: AsyncWrite + Unpin>(
        &self,
        token: &SecretString,
        mailbox: &Mailbox,
        id: &str,
        sink: &mut W,
    ) -> Result<u64, ClientError> {
        let url = self.message_url(mailbox, id, "/$value");
        // A message of up to 150 MB on a slow link (and sharing it with three more)
        // takes longer than an ordinary request may: the read timeout guards it instead.
        let response = self
            .send(mailbox, token, &url, |h| {
                h.get(&url).timeout(MESSAGE_TIMEOUT)
            })
            .await?;
        let mut stream = response.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
            sink.write_all(&chunk).await.map_err(ClientError::Sink)?;
            total += chunk.len() as u64;
        }
        sink.flush().await.map_err(ClientError::Sink)?;
        Ok(total)
    }

    /// Marks a message read or unread.
    pub async fn set_read(
        &self,
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
        token: &SecretString,
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
