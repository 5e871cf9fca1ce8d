use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use mailbridge_sinks::address::AddressPolicy;
use mailbridge_sinks::webhook::{WebhookConfig, WebhookSink, signature};
use mailbridge_testkit::hostile::{HostileServer, Step};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

use crate::delivery;

const SECRET: &str = "whsec-test-5f2c";

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// A receiver on loopback answering every POST with `answer`.
struct Receiver {
    url: url::Url,
    requests: Arc<Mutex<Vec<Received>>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

async fn receiver(
    answer: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> Receiver {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let app = Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            let answer = answer.clone();
            async move {
                seen.lock().unwrap().push(Received { headers, body });
                answer()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let listener = listener.tap_io(move |_| {
        accepted.fetch_add(1, Ordering::SeqCst);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url: format!("http://{addr}/hook?token=query-secret")
            .parse()
            .unwrap(),
        requests,
        connections,
        _task: task,
    }
}

fn config(url: &url::Url) -> WebhookConfig {
    let mut c = WebhookConfig::new(url.clone(), SecretString::from(SECRET));
    c.addresses = AddressPolicy::AllowPrivate;
    c.timeout = Duration::from_secs(5);
    c
}

const MIME: &[u8] = b"From: Alice <alice@example.com>\r\nTo: helpdesk@example.com\r\nSubject: Printer on fire\r\nMessage-ID: <fire-1@example.com>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nThe printer on floor 2 is on fire.\r\n";

#[tokio::test]
async fn a_message_arrives_signed_with_its_key() {
    let r = receiver(|| StatusCode::NO_CONTENT.into_response()).await;
    let sink = WebhookSink::new(config(&r.url)).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "41", MIME);
    let accepted = sink.deliver(&d).await.unwrap();
    // The URL as shown carries no query (it may hold the receiver's own secret).
    assert!(
        !accepted.location.contains("query-secret"),
        "{}",
        accepted.location
    );

    let requests = r.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["idempotency-key"], d.key.as_str());

    // The signature, recomputed independently: HMAC-SHA256 over "<t>.<body>".
    let header = req.headers["x-mailbridge-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&req.body);
    let expected = hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        });
    assert_eq!(v1, expected);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(signature::verify(
        &SecretString::from(SECRET),
        header,
        &req.body,
        now,
        300
    ));
    assert!(!signature::verify(
        &SecretString::from("other"),
        header,
        &req.body,
        now,
        300
    ));
    assert!(!signature::verify(
        &SecretString::from(SECRET),
        header,
        b"{}",
        now,
        300
    ));
    assert!(!signature::verify(
        &SecretString::from(SECRET),
        header,
        &req.body,
        now + 3600,
        300
    ));

    let json: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(json["event"], "message.received");
    assert_eq!(json["key"], d.key.as_str());
    assert_eq!(json["account"], "alice");
    assert_eq!(json["folder"], "INBOX");
    assert_eq!(json["source_id"], "41");
    assert_eq!(json["message_id"], "fire-1@example.com");
    assert_eq!(json["subject"], "Printer on fire");
    assert_eq!(json["from"][0]["address"], "alice@example.com");
    assert_eq!(json["to"][0]["address"], "helpdesk@example.com");
    assert_eq!(json["date"], "2026-12-07T10:00:00Z");
    assert_eq!(json["size"], MIME.len());
    assert_eq!(json["text_excerpt"], "The printer on floor 2 is on fire. ");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(json["mime_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, MIME);
    // The secret travels in no header and no body.
    assert!(!String::from_utf8_lossy(&req.body).contains(SECRET));
    assert!(
        req.headers
            .values()
            .all(|v| !v.to_str().unwrap_or("").contains(SECRET))
    );
}

#[tokio::test]
async fn a_large_message_travels_as_a_link() {
    let r = receiver(|| StatusCode::OK.into_response()).await;
    let mut c = config(&r.url);
    c.inline_mime_max = 10;
    let sink = WebhookSink::new(c).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut d = delivery(spool.path(), "42", MIME);
    d.mime_link = Some("http://127.0.0.1:8025/api/v1/accounts/1/messages/42/raw".to_owned());
    sink.deliver(&d).await.unwrap();
    let body = r.requests.lock().unwrap()[0].body.clone();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json.get("mime_base64").is_none());
    assert_eq!(json["mime_link"], d.mime_link.unwrap());
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed_and_nothing_is_sent() {
    let r = receiver(|| StatusCode::OK.into_response()).await;
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "43", MIME);
    for url in [
        r.url.clone(),
        // A name that resolves to loopback is refused the same way.
        format!("http://localhost:{}/hook", r.url.port().unwrap())
            .parse()
            .unwrap(),
    ] {
        let mut c = config(&url);
        c.addresses = AddressPolicy::PublicOnly;
        let e = WebhookSink::new(c).unwrap().deliver(&d).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Misconfigured, "{e}");
        let text = e.to_string();
        assert!(
            text.contains("loopback") && text.contains("allow_private_addresses"),
            "{text}"
        );
        assert!(!text.contains("query-secret"), "{text}");
    }
    assert!(r.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn consecutive_deliveries_share_one_connection() {
    let r = receiver(|| StatusCode::NO_CONTENT.into_response()).await;
    let sink = WebhookSink::new(config(&r.url)).unwrap();
    let spool = tempfile::tempdir().unwrap();
    sink.deliver(&delivery(spool.path(), "46", MIME))
        .await
        .unwrap();
    sink.deliver(&delivery(spool.path(), "47", MIME))
        .await
        .unwrap();
    // A clone of the sink (the connector's per-route copies) shares the pool too.
    sink.clone()
        .deliver(&delivery(spool.path(), "48", MIME))
        .await
        .unwrap();
    let requests = r.requests.lock().unwrap().clone();
    let keys: Vec<_> = requests
        .iter()
        .map(|q| q.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys[0] != keys[1] && keys[1] != keys[2], "{keys:?}");
    assert_eq!(r.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_name_resolving_to_a_refused_address_stays_refused_on_every_delivery() {
    let r = receiver(|| StatusCode::OK.into_response()).await;
    let url: url::Url = format!("http://localhost:{}/hook", r.url.port().unwrap())
        .parse()
        .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "49", MIME);
    // The same host allowed: it works and leaves a kept-alive connection behind.
    let allowed = WebhookSink::new(config(&url)).unwrap();
    allowed.deliver(&d).await.unwrap();
    assert_eq!(r.connections.load(Ordering::SeqCst), 1);
    // Not allowed: refused every time, nothing sent, no connection made.
    let mut c = config(&url);
    c.addresses = AddressPolicy::PublicOnly;
    let sink = WebhookSink::new(c).unwrap();
    for _ in 0..2 {
        let e = sink.clone().deliver(&d).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Misconfigured, "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
    }
    assert_eq!(r.requests.lock().unwrap().len(), 1);
    assert_eq!(r.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_carry_their_class_and_retry_after() {
    let spool = tempfile::tempdir().unwrap();
    let d = delivery(spool.path(), "44", MIME);
    let cases: Vec<(u16, Option<&'static str>, ErrorClass)> = vec![
        (
            429,
            Some("120"),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_mins(2)),
            },
        ),
        (
            503,
            Some("30"),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(30)),
            },
        ),
        (503, None, ErrorClass::Transient),
        (500, None, ErrorClass::Transient),
        (401, None, ErrorClass::Misconfigured),
        (400, None, ErrorClass::Permanent),
        (302, None, ErrorClass::Permanent),
    ];
    for (status, retry_after, class) in cases {
        let r = receiver(move || {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                "receiver says \x1b[31mno\x1b[0m",
            )
                .into_response();
            if let Some(v) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", v.parse().unwrap());
            }
            if status == 302 {
                response
                    .headers_mut()
                    .insert("location", "http://127.0.0.1:1/elsewhere".parse().unwrap());
            }
            response
        })
        .await;
        let e = WebhookSink::new(config(&r.url))
            .unwrap()
            .deliver(&d)
            .await
            .unwrap_err();
        assert_eq!(e.class(), class, "{status}: {e}");
        let text = e.to_string();
        assert!(text.contains(&format!("answered {status}")), "{text}");
        assert!(
            text.contains("receiver says") && !text.contains('\x1b'),
            "{text}"
        );
        // A redirect is not followed: the receiver saw one request.
        assert_eq!(r.requests.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_transient() {
    let server =
        HostileServer::start(vec![Step::ReadLine, Step::Stall(Duration::from_mins(10))]).await;
    let url: url::Url = format!("http://{}/hook", server.addr()).parse().unwrap();
    let mut c = config(&url);
    c.timeout = Duration::from_secs(1);
    let spool = tempfile::tempdir().unwrap();
    let e = WebhookSink::new(c)
        .unwrap()
        .deliver(&delivery(spool.path(), "45", MIME))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    assert!(e.to_string().contains("could not be reached"), "{e}");
}

#[test]
fn only_http_urls_with_a_host_are_webhooks() {
    for url in ["ftp://example.com/x", "file:///etc/passwd"] {
        let e = WebhookSink::new(WebhookConfig::new(
            url.parse().unwrap(),
            SecretString::from("s"),
        ))
        .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Misconfigured, "{url}");
    }
}
