//! The webhook sink: a JSON summary of each message POSTed to a receiver.
//!
//! The body is [`Payload`]: the message's [`Summary`] (addresses, subject, date, size,
//! attachments, text excerpt) with where it came from, and the raw MIME in base64 when
//! it is at most [`WebhookConfig::inline_mime_max`] bytes, else a link to fetch it
//! (when the daemon gave one). Headers:
//! - `X-Mailbridge-Signature: t=<unix seconds>,v1=<hex>`, where `v1` is
//!   HMAC-SHA256 under the webhook's secret over `<t>.<body>`: a receiver recomputes
//!   it, compares in constant time and refuses old timestamps ([`signature`]);
//! - `Idempotency-Key: <key>`, the same for every delivery of one message, so a
//!   receiver drops what it already has (webhooks are at-least-once).
//!
//! Addresses: the host's addresses are resolved here and checked
//! ([`crate::address::AddressPolicy`]) before anything is sent, and the request is
//! pinned to exactly those addresses; no proxy from the environment is used (it would
//! bypass the check); redirects are not followed. The name is resolved and checked
//! for every delivery; the HTTP client (and its pool of kept-alive connections) is
//! kept per checked address set, so deliveries to the same addresses share
//! connections and a changed DNS answer gets a client pinned to the new addresses
//! (the last few sets are kept). Every request has a timeout; the answer's body is
//! read up to 1 KiB for the error message. 2xx is accepted; 429 and 503 with
//! `Retry-After` are throttled, 408 and 5xx transient, 401/403 misconfigured, other
//! answers permanent (the connector parks the message).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use secrecy::SecretString;
use serde::Serialize;
use time::OffsetDateTime;
use url::Url;

use crate::address::AddressPolicy;
use crate::summary::{Summary, summarize};
use crate::{Accepted, Delivery, SinkError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Mailbridge-Signature";
/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How much of a refusing answer is kept for the error.
const ANSWER_EXCERPT: usize = 1024;

/// A webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `http` or `https`.
    pub url: Url,
    /// Signs every request (HMAC-SHA256).
    pub secret: SecretString,
    /// The whole request, connection to answer.
    pub timeout: Duration,
    /// Messages up to this size travel inline (base64); larger ones as a link.
    pub inline_mime_max: u64,
    /// Which addresses may be reached.
    pub addresses: AddressPolicy,
    /// Extra trust for an `https` receiver (an extra CA, a pin).
    pub trust: mailbridge_tls::TlsSettings,
    /// The largest message read (the account's maximum message size).
    pub max_message_size: u64,
}

impl WebhookConfig {
    /// A webhook with a 30 s timeout, MIME inline up to 1 MiB, public addresses only.
    pub fn new(url: Url, secret: SecretString) -> Self {
        Self {
            url,
            secret,
            timeout: Duration::from_secs(30),
            inline_mime_max: 1024 * 1024,
            addresses: AddressPolicy::PublicOnly,
            trust: mailbridge_tls::TlsSettings::default(),
            max_message_size: 150 * 1024 * 1024,
        }
    }
}

/// What a webhook receives.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Always `message.received`.
    pub event: &'static str,
    pub key: &'a str,
    pub account: &'a str,
    pub folder: &'a str,
    pub source_id: &'a str,
    #[serde(flatten)]
    pub summary: Summary,
    /// The raw MIME, base64, when it is small enough.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_base64: Option<String>,
    /// Where to fetch the raw MIME when it is not inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_link: Option<&'a str>,
}

/// Signing and checking `X-Mailbridge-Signature`.
pub mod signature {
    use super::{SecretString, hmac};
    use secrecy::ExposeSecret as _;

    /// The header value for `body` sent at `timestamp` (Unix seconds).
    pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        let tag = ctx.sign();
        format!("t={timestamp},v1={}", crate::hex(tag.as_ref()))
    }

    /// Checks a header value against `body`: the signature must match (compared in
    /// constant time) and the timestamp be within `tolerance_secs` of `now`.
    pub fn verify(
        secret: &SecretString,
        header: &str,
        body: &[u8],
        now: i64,
        tolerance_secs: i64,
    ) -> bool {
        let mut t = None;
        let mut v1 = None;
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => t = value.parse::<i64>().ok(),
                Some(("v1", value)) => v1 = decode_hex(value),
                _ => {}
            }
        }
        let (Some(t), Some(v1)) = (t, v1) else {
            return false;
        };
        if (now - t).abs() > tolerance_secs {
            return false;
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        let mut signed = t.to_string().into_bytes();
        signed.push(b'.');
        signed.extend_from_slice(body);
        hmac::verify(&key, &signed, &v1).is_ok()
    }

    fn decode_hex(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

/// A webhook receiver.
///
/// Clones share its HTTP clients, so they share connections too.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    config: WebhookConfig,
    tls: Option<rustls::ClientConfig>,
    clients: Arc<Mutex<ClientCache>>,
}

/// How many address sets keep their HTTP client (a name whose DNS answers rotate
/// among a few sets keeps a pool per set; beyond that the oldest is dropped).
const CACHED_ADDRESS_SETS: usize = 4;

/// HTTP clients, one per checked address set, most recently used first.
///
/// A client is built pinned to the addresses that were resolved and checked for it
/// (`resolve_to_addrs`), so its connection pool only ever holds connections to
/// those: looking a client up by the set that this delivery's resolution and check
/// produced keeps the pinning exact, while consecutive deliveries to the same
/// addresses reuse one pool (and its kept-alive connections).
#[derive(Debug, Default)]
struct ClientCache {
    entries: Vec<(Vec<SocketAddr>, reqwest::Client)>,
}

impl ClientCache {
    /// The client for `addrs` (sorted), built by `build` when there is none.
    fn get_or_build(
        &mut self,
        addrs: &[SocketAddr],
        build: impl FnOnce() -> Result<reqwest::Client, SinkError>,
    ) -> Result<reqwest::Client, SinkError> {
        if let Some(at) = self.entries.iter().position(|(set, _)| set == addrs) {
            let entry = self.entries.remove(at);
            let client = entry.1.clone();
            self.entries.insert(0, entry);
            return Ok(client);
        }
        let client = build()?;
        self.entries.insert(0, (addrs.to_vec(), client.clone()));
        self.entries.truncate(CACHED_ADDRESS_SETS);
        Ok(client)
    }
}

impl WebhookSink {
    /// Checks the configuration: an http(s) URL with a host, and a usable TLS setup.
    pub fn new(config: WebhookConfig) -> Result<Self, SinkError> {
        if !matches!(config.url.scheme(), "http" | "https") {
            return Err(SinkError::WebhookConfig(format!(
                "the URL {} is not http or https",
                mailbridge_http::redact_url(&config.url)
            )));
        }
        if config.url.host_str().is_none_or(str::is_empty) {
            return Err(SinkError::WebhookConfig(format!(
                "the URL {} names no host",
                mailbridge_http::redact_url(&config.url)
            )));
        }
        let tls = if config.url.scheme() == "https" {
            Some(config.trust.client_config().map_err(|e| {
                SinkError::WebhookConfig(format!("its TLS settings cannot be used: {e}"))
            })?)
        } else {
            None
        };
        Ok(Self {
            config,
            tls,
            clients: Arc::default(),
        })
    }

    /// The URL as it may be shown (no query, no user info).
    pub fn shown_url(&self) -> String {
        mailbridge_http::redact_url(&self.config.url)
    }

    /// The addresses the request may go to, checked, sorted and without repeats.
    async fn addresses(&self) -> Result<Vec<SocketAddr>, SinkError> {
        let url = &self.config.url;
        let port = url.port_or_known_default().unwrap_or(443);
        let host = url.host_str().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if let Ok(ip) = literal.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| SinkError::Resolve {
                    host: host.to_owned(),
                    source,
                })?
                .collect()
        };
        if addrs.is_empty() {
            return Err(SinkError::Resolve {
                host: host.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            });
        }
        for a in &addrs {
            if let Err(kind) = self.config.addresses.check(a.ip()) {
                return Err(SinkError::AddressRefused {
                    url: self.shown_url(),
                    address: a.ip(),
                    kind,
                });
            }
        }
        let mut addrs = addrs;
        addrs.sort_unstable();
        addrs.dedup();
        Ok(addrs)
    }

    /// The client pinned to `addrs` (checked): the cached one, or a new one.
    fn client(&self, addrs: &[SocketAddr]) -> Result<reqwest::Client, SinkError> {
        // A poisoned lock only means another delivery panicked while holding it;
        // the cache holds no invariant a panic could break.
        let mut cache = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get_or_build(addrs, || self.build_client(addrs))
    }

    fn build_client(&self, addrs: &[SocketAddr]) -> Result<reqwest::Client, SinkError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = self.config.url.host_str() {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls_backend_preconfigured(tls.clone());
        }
        builder
            .build()
            .map_err(|e| SinkError::WebhookConfig(format!("its HTTP client cannot be built: {e}")))
    }

    /// POSTs the message's summary; accepted on 2xx.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Accepted, SinkError> {
        let mime = delivery.read(self.config.max_message_size).await?;
        let inline = mime.len() as u64 <= self.config.inline_mime_max;
        let payload = Payload {
            event: "message.received",
            key: delivery.key.as_str(),
            account: &delivery.account,
            folder: &delivery.folder,
            source_id: &delivery.source_id,
            summary: summarize(&mime),
            mime_base64: inline.then(|| base64::engine::general_purpose::STANDARD.encode(&mime)),
            mime_link: if inline {
                None
            } else {
                delivery.mime_link.as_deref()
            },
        };
        drop(mime);
        let body = serde_json::to_vec(&payload).map_err(|e| {
            SinkError::WebhookConfig(format!("the message could not be written as JSON: {e}"))
        })?;
        let addrs = self.addresses().await?;
        let client = self.client(&addrs)?;
        let now = OffsetDateTime::now_utc();
        let signature = signature::sign(&self.config.secret, now.unix_timestamp(), &body);
        let response = client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(IDEMPOTENCY_HEADER, delivery.key.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::Unreachable {
                url: self.shown_url(),
                source: mailbridge_http::without_url(e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Accepted {
                location: self.shown_url(),
                already_there: false,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| mailbridge_auth::token::parse_retry_after(v, OffsetDateTime::now_utc()));
        let excerpt = answer_excerpt(response).await;
        Err(SinkError::Refused {
            url: self.shown_url(),
            status: status.as_u16(),
            retry_after,
            body: excerpt,
        })
    }
}

/// The start of an answer's body, printable; whatever could be read in time.
async fn answer_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(ANSWER_EXCERPT);
    mailbridge_types::text::without_controls(&String::from_utf8_lossy(&bytes), ANSWER_EXCERPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_client_is_kept_per_address_set_and_the_cache_is_bounded() {
        let mut cache = ClientCache::default();
        let mut built = 0;
        let mut get = |cache: &mut ClientCache, set: &[SocketAddr]| {
            cache
                .get_or_build(set, || {
                    built += 1;
                    Ok(reqwest::Client::new())
                })
                .unwrap()
        };
        let a = addrs(&["192.0.2.1:443"]);
        let b = addrs(&["192.0.2.1:443", "192.0.2.2:443"]);
        get(&mut cache, &a);
        get(&mut cache, &a);
        assert_eq!(cache.entries.len(), 1);
        get(&mut cache, &b);
        assert_eq!(cache.entries.len(), 2);
        // The most recently used set comes first.
        get(&mut cache, &a);
        assert_eq!(cache.entries[0].0, a);
        for i in 3..10 {
            get(&mut cache, &addrs(&[&format!("192.0.2.{i}:443")]));
        }
        assert_eq!(cache.entries.len(), CACHED_ADDRESS_SETS);
        assert_eq!(built, 9);
    }

    #[test]
    fn a_client_that_cannot_be_built_is_not_cached() {
        let mut cache = ClientCache::default();
        let set = addrs(&["192.0.2.1:443"]);
        let e = cache
            .get_or_build(&set, || Err(SinkError::WebhookConfig("no".to_owned())))
            .unwrap_err();
        assert_eq!(e.class(), mailbridge_types::ErrorClass::Misconfigured);
        assert!(cache.entries.is_empty());
    }
}
