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
    wrong.pop();
    wrong.push('A');
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
