//! The HTTP surface over a real socket: tokens and roles, problem+json answers for
//! every kind of bad input, health, readiness, metrics and the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailbridge_server::api_token::MemoryTokens;
use mailbridge_server::metrics::Metrics;
use mailbridge_server::{ApiLimits, AppState, app};
use mailbridge_types::access::Role;
use secrecy::{ExposeSecret as _, SecretString};

struct Daemon {
    base: String,
    http: reqwest::Client,
    admin: SecretString,
    auditor: SecretString,
    ready: Arc<AtomicBool>,
}

async fn daemon() -> Daemon {
    let tokens = Arc::new(MemoryTokens::default());
    let admin = tokens.add("ops", Role::Administrator, None).unwrap();
    let auditor = tokens.add("audit", Role::Auditor, None).unwrap();
    let ready = Arc::new(AtomicBool::new(true));
    let flag = ready.clone();
    let state = AppState {
        tokens,
        metrics: Arc::new(Metrics::default()),
        ready: Arc::new(move || {
            let up = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                if up {
                    Ok(())
                } else {
                    Err(
                        "the database at /var/lib/mailbridge/mailbridge.db does not answer"
                            .to_owned(),
                    )
                }
            })
        }),
        limits: ApiLimits {
            body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            message_bytes: 64 * 1024,
        },
        daemon: None,
        web: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    Daemon {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        admin,
        auditor,
        ready,
    }
}

async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{status}"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn whoami_needs_a_known_token() {
    let d = daemon().await;
    let url = format!("{}/api/v1/whoami", d.base);

    let ok: serde_json::Value = d
        .http
        .get(&url)
        .bearer_auth(d.admin.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token"], "ops");
    assert_eq!(ok["role"], "administrator");
    let ok: serde_json::Value = d
        .http
        .get(&url)
        .bearer_auth(d.auditor.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["role"], "auditor");

    // No token, a foreign scheme, a made-up token, a real one with a character off.
    let mut wrong = d.admin.expose_secret().to_owned();
    // One character off (a token ending in A must not become itself: 1 in 16).
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    for auth in [
        None,
        Some("Basic b3BzOnNlY3JldA==".to_owned()),
        Some("Bearer mbt_madeup".to_owned()),
        Some(format!("Bearer {wrong}")),
    ] {
        let mut req = d.http.get(&url);
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let (status, body) = problem(response).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body["code"], "unauthenticated");
        assert_eq!(body["type"], "urn:mailbridge:problem:unauthenticated");
    }
}

#[tokio::test]
async fn health_readiness_and_unknown_addresses() {
    let d = daemon().await;
    let r = d
        .http
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        d.http
            .get(format!("{}/readyz", d.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    d.ready.store(false, Ordering::SeqCst);
    let (status, body) = problem(
        d.http
            .get(format!("{}/readyz", d.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "not-ready");
    assert!(body["detail"].as_str().unwrap().contains("does not answer"));

    let (status, body) = problem(
        d.http
            .get(format!("{}/api/v1/nothing", d.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not-found")));
    let (status, body) = problem(
        d.http
            .delete(format!("{}/healthz", d.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method-not-allowed"))
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern() {
    let d = daemon().await;
    for _ in 0..3 {
        d.http
            .get(format!("{}/healthz", d.base))
            .send()
            .await
            .unwrap();
    }
    d.http
        .get(format!("{}/api/v1/whoami", d.base))
        .send()
        .await
        .unwrap();
    d.http
        .get(format!("{}/no/such/42", d.base))
        .send()
        .await
        .unwrap();
    let r = d
        .http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            r#"mailbridge_http_requests_total{route="/healthz",method="GET",status="2xx"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"mailbridge_http_requests_total{route="/api/v1/whoami",method="GET",status="4xx"} 1"#
        ),
        "{text}"
    );
    // An unknown path is one series, not one per path.
    assert!(
        text.contains(r#"route="unmatched""#) && !text.contains("/no/such/42"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_the_api() {
    let d = daemon().await;
    let doc: serde_json::Value = d
        .http
        .get(format!("{}/api/openapi.json", d.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/healthz", "/readyz", "/api/v1/whoami"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_token"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"].get("Problem").is_some());
}

/// Every operation of `/api/v1` in the OpenAPI document, with its path's ids filled.
async fn operations(d: &Daemon) -> Vec<(reqwest::Method, String)> {
    let doc: serde_json::Value = d
        .http
        .get(format!("{}/api/openapi.json", d.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let filled = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            out.push((m, filled.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_endpoint_refuses_a_missing_or_wrong_token_and_a_role_that_may_not() {
    let d = daemon().await;
    let ops = operations(&d).await;
    // The daemon's resources are all there.
    for path in [
        "/api/v1/accounts",
        "/api/v1/sinks",
        "/api/v1/parked",
        "/api/v1/outbox",
        "/api/v1/events",
        "/api/v1/watchers",
    ] {
        assert!(
            ops.iter().any(|(_, p)| p == path),
            "{path} missing: {ops:?}"
        );
    }
    assert!(ops.len() >= 18, "{ops:?}");
    let mut wrong = d.admin.expose_secret().to_owned();
    // One character off (a token ending in A must not become itself: 1 in 16).
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    for (method, path) in &ops {
        for token in [None, Some(wrong.as_str()), Some("mbt_madeup")] {
            let mut req = d.http.request(method.clone(), format!("{}{path}", d.base));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let (status, body) = problem(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["code"], "unauthenticated");
        }
        if path.ends_with("/whoami") {
            continue;
        }
        // An auditor reads but changes nothing.
        let (status, body) = problem(
            d.http
                .request(method.clone(), format!("{}{path}", d.base))
                .bearer_auth(d.auditor.expose_secret())
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        if *method == reqwest::Method::GET {
            // Past the role check: this server runs without the daemon's work.
            assert!(
                status == 503 && body["code"] == "not-running" || path.ends_with("/whoami"),
                "{method} {path}: {status} {body}"
            );
        } else {
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert_eq!(body["code"], "forbidden");
        }
    }
}

#[tokio::test]
async fn bad_input_to_the_resources_is_named() {
    // path, media type, body, status, code, field
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        u16,
        &'static str,
        Option<&'static str>,
    );
    let d = daemon().await;
    let post = |path: &str, ct: &str, body: Vec<u8>| {
        d.http
            .post(format!("{}{path}", d.base))
            .bearer_auth(d.admin.expose_secret())
            .header("content-type", ct.to_owned())
            .body(body)
    };
    let cases: Vec<Case> = vec![
        (
            "/api/v1/sinks",
            "application/json",
            b"{\"name\": ".to_vec(),
            400,
            "malformed-json",
            None,
        ),
        (
            "/api/v1/sinks",
            "text/plain",
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
            None,
        ),
        (
            "/api/v1/sinks",
            "application/json",
            br#"{"name": 7, "settings": {"kind": "folder", "path": "/x"}}"#.to_vec(),
            422,
            "invalid-field",
            Some("name"),
        ),
        (
            "/api/v1/sinks",
            "application/json",
            br#"{"name": "a", "settings": {"kind": "folder", "path": "/x"}, "colour": 1}"#.to_vec(),
            422,
            "unknown-field",
            Some("colour"),
        ),
        (
            "/api/v1/sinks",
            "application/json",
            br#"{"name": "a"}"#.to_vec(),
            422,
            "invalid-field",
            Some(""),
        ),
        (
            "/api/v1/sinks",
            "application/json",
            vec![b' '; 65 * 1024],
            413,
            "body-too-large",
            None,
        ),
    ];
    for (path, ct, body, status, code, field) in cases {
        let (got, p) = problem(post(path, ct, body).send().await.unwrap()).await;
        assert_eq!(got, status, "{path}: {p}");
        assert_eq!(p["code"], code, "{p}");
        if let Some(f) = field
            && !f.is_empty()
        {
            assert_eq!(p["field"], f, "{p}");
        }
    }
    // A queued message over the account's limit is refused before anything is
    // stored (here: over the server's message limit, 64 KiB in this test).
    let (got, p) = problem(
        post(
            "/api/v1/accounts/00000000-0000-4000-8000-000000000000/outbox",
            "message/rfc822",
            vec![b'x'; 70 * 1024],
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(got, 413, "{p}");
}
