//! `mailbridge serve` doing the daemon's work, as a user sets it up through the API:
//! a sink and a watch for an IMAP account (app-only XOAUTH2 on real Dovecot), a
//! message queued in the outbox of another account (app-only XOAUTH2 on real
//! Postfix), sent, delivered by Postfix into Dovecot, seen by the watcher (IDLE) and
//! written to the folder sink; the same again after a restart, nothing twice; and
//! the API's refusals (bad input named by field, roles, a sink in use).

use std::time::Duration;

use serde_json::{Value, json};

use super::daemon_world::{
    BOB, DEADLINE, Daemon, SECRET, World, account_id, eventually, start, world,
};

async fn queue(d: &Daemon, token: &str, account: &str, subject: &str, key: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/accounts/{account}/outbox", d.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(
            &json!({"to": [BOB], "subject": subject, "text": "Sent through the daemon's outbox."}),
        )
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn token_add(w: &World, name: &str, role: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbridge"))
        .args(["token", "add", name, "--role", role, "--json"])
        .env("MAILBRIDGE_CONFIG", w.dir.path().join("mailbridge.toml"))
        .env("MAILBRIDGE_DATA_DIR", w.dir.path().join("data"))
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_DATABASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn subject_count(files: &[String], subject: &str) -> usize {
    files
        .iter()
        .filter(|f| f.contains(&format!("Subject: {subject}")))
        .count()
}

#[tokio::test]
async fn the_daemon_sends_through_its_outbox_and_delivers_what_its_watcher_sees() {
    let w = world().await;
    let d = start(&w).await;
    let admin = d.token.clone().expect("first start prints a token");
    let bob = account_id(&d, &admin, "bob-imap").await;
    let alice = account_id(&d, &admin, "alice-smtp").await;

    // The events, followed from before the watcher exists.
    let mut events = reqwest::Client::new()
        .get(format!("{}/api/v1/events", d.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    // A sink, then a watch whose route names it.
    let archive = w.archive().display().to_string();
    let (status, sink) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&admin),
            Some(json!({"name": "archive", "settings": {"kind": "folder", "path": archive}})),
        )
        .await;
    assert_eq!(status, 201, "{sink}");
    let sink_id = sink["id"].as_str().unwrap().to_owned();
    let (status, watch) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(&admin),
            Some(json!({"routes": [{"name": "all", "sinks": ["archive"]}]})),
        )
        .await;
    assert_eq!(status, 200, "{watch}");

    // Its watcher goes through connecting and syncing to idle, told as events.
    let mut seen = String::new();
    tokio::time::timeout(DEADLINE, async {
        while !(seen.contains("event: watcher")
            && seen.contains(r#""account":"bob-imap""#)
            && seen.contains(r#""state":"idle""#))
        {
            let chunk = events
                .chunk()
                .await
                .unwrap()
                .expect("the event stream ended");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no idle event: {seen}"));
    assert!(seen.contains(r#""state":"connecting""#), "{seen}");
    drop(events);
    let (status, _) = d
        .call(reqwest::Method::GET, "/api/v1/events", None, None)
        .await;
    assert_eq!(status, 401);

    // Queued once, however often it is submitted under one key.
    let (status, first) = queue(&d, &admin, &alice, "Through the daemon", "order-1").await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = queue(&d, &admin, &alice, "Through the daemon", "order-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["message"]["id"], first["message"]["id"]);

    eventually(
        "the message reaches the archive through Postfix, Dovecot and the watcher",
        || subject_count(&w.archived(), "Through the daemon") == 1,
    )
    .await;
    let id = first["message"]["id"].as_str().unwrap();
    let (status, sent) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/outbox/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sent["state"], "sent", "{sent}");
    let (_, account) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/accounts/{bob}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(
        matches!(
            account["watcher"]["state"]["state"].as_str(),
            Some("idle" | "syncing")
        ),
        "{account}"
    );

    // The metrics count it: the watcher's delivery, the outbox's sent message.
    let start_wait = std::time::Instant::now();
    loop {
        let text = reqwest::get(format!("{}/metrics", d.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let delivered =
            text.contains(r#"mailbridge_messages_total{account="bob-imap",outcome="delivered"} 1"#);
        let sent = text.contains(&format!(
            r#"mailbridge_outbox_messages{{account="{alice}",state="sent"}} 1"#
        ));
        let histogram = text.contains("mailbridge_delivery_seconds_count 1");
        // The IMAP watcher and the SMTP sender share one Exchange token (one request).
        let tokens = text
            .lines()
            .find_map(|l| l.strip_prefix("mailbridge_token_requests_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n == 1);
        if delivered && sent && histogram && tokens {
            break;
        }
        assert!(
            start_wait.elapsed() < DEADLINE,
            "metrics did not count it:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Refusals, each naming what is wrong.
    let auditor = token_add(&w, "reports", "auditor");
    let (status, p) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(&admin),
            Some(json!({"routes": [{"name": "all", "sinks": ["nowhere"]}]})),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["field"], "routes[0].sinks[0]");
    let (status, p) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&admin),
            Some(json!({"name": "hook", "settings": {"kind": "webhook", "url": "http://127.0.0.1:9/"}})),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["field"], "secret");
    let (status, p) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&admin),
            Some(json!({"name": "x", "settings": {"kind": "folder", "path": "relative"}})),
        )
        .await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["field"], "settings.path");
    let (status, p) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&admin),
            Some(json!({"name": "archive", "settings": {"kind": "folder", "path": "/tmp/x"}})),
        )
        .await;
    assert_eq!(status, 409, "{p}");
    let (status, p) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/sinks/{sink_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["code"], "in-use");
    let (status, _) = d
        .call(reqwest::Method::GET, "/api/v1/sinks", Some(&auditor), None)
        .await;
    assert_eq!(status, 200);
    let (status, p) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&auditor),
            Some(json!({"name": "y", "settings": {"kind": "folder", "path": "/tmp/y"}})),
        )
        .await;
    assert_eq!(status, 403, "{p}");
    let (status, _) = queue(&d, &auditor, &alice, "not allowed", "k").await;
    assert_eq!(status, 403);
    let (status, _) = d
        .call(reqwest::Method::GET, "/api/v1/sinks", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = d
        .call(
            reqwest::Method::GET,
            "/api/v1/accounts/not-an-id",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A restart goes on from the checkpoint: nothing delivered twice, new mail once.
    d.stop().await;
    let d = start(&w).await;
    assert!(d.token.is_none());
    let (status, _) = queue(&d, &admin, &alice, "After the restart", "order-2").await;
    assert_eq!(status, 201);
    eventually("the second message reaches the archive", || {
        subject_count(&w.archived(), "After the restart") == 1
    })
    .await;
    let files = w.archived();
    assert_eq!(subject_count(&files, "Through the daemon"), 1, "{files:?}");
    assert_eq!(files.len(), 2, "{files:?}");
    let log = d.stop().await;
    assert!(!log.contains(SECRET));
    assert!(!log.contains(&admin));
}

/// A webhook receiver answering `status` (changeable) and counting what it got by
/// `Idempotency-Key`; `bodies` keeps every request's JSON, refused or not.
struct Receiver {
    url: String,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    got: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn receiver(status: u16) -> Receiver {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};
    let status = Arc::new(AtomicU16::new(status));
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (s, g, b) = (status.clone(), got.clone(), bodies.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (s, g, b) = (s.clone(), g.clone(), b.clone());
                async move {
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    let code = s.load(Ordering::SeqCst);
                    if code == 200 {
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        g.lock().unwrap().push(key);
                    }
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://{addr}/hook"),
        status,
        got,
        bodies,
    }
}

#[tokio::test]
async fn a_refusing_webhook_parks_the_message_and_a_retry_through_the_api_delivers_it_once() {
    let w = world().await;
    let d = start(&w).await;
    let admin = d.token.clone().expect("first start prints a token");
    let bob = account_id(&d, &admin, "bob-imap").await;
    let alice = account_id(&d, &admin, "alice-smtp").await;
    // 404 is final for this message: parked at once.
    let hook = receiver(404).await;
    let (status, sink) = d
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(&admin),
            Some(json!({
                "name": "helpdesk",
                // Every message is over the inline limit: it travels as a link.
                "settings": {"kind": "webhook", "url": hook.url, "allow_private_addresses": true, "inline_mime_max": 16},
                "secret": "whsec-0123456789abcdef",
            })),
        )
        .await;
    assert_eq!(status, 201, "{sink}");
    assert_eq!(sink["has_secret"], true);
    assert!(
        !sink.to_string().contains("whsec-0123456789abcdef"),
        "{sink}"
    );
    let (status, watch) = d
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(&admin),
            Some(json!({"routes": [{"name": "tickets", "sinks": ["helpdesk"]}]})),
        )
        .await;
    assert_eq!(status, 200, "{watch}");
    let (status, _) = queue(&d, &admin, &alice, "Printer on fire", "ticket-1").await;
    assert_eq!(status, 201);

    // Parked, listed with the reason.
    let start_wait = std::time::Instant::now();
    let parked = loop {
        let (status, rows) = d
            .call(reqwest::Method::GET, "/api/v1/parked", Some(&admin), None)
            .await;
        assert_eq!(status, 200, "{rows}");
        if let Some(row) = rows.as_array().unwrap().first() {
            break row.clone();
        }
        assert!(start_wait.elapsed() < DEADLINE, "nothing was parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(parked["account"], "bob-imap");
    assert_eq!(parked["remaining_sinks"], json!(["helpdesk"]));
    assert!(
        parked["last_error"].as_str().unwrap().contains("404"),
        "{parked}"
    );
    assert!(hook.got.lock().unwrap().is_empty());

    // The receiver is fixed; a retry on demand delivers it, once.
    hook.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let id = parked["id"].as_str().unwrap();
    let (status, p) = d
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/parked/{id}/retry"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 202, "{p}");
    eventually("the parked message reaches the webhook", || {
        hook.got.lock().unwrap().len() == 1
    })
    .await;
    let start_wait = std::time::Instant::now();
    loop {
        let (_, rows) = d
            .call(reqwest::Method::GET, "/api/v1/parked", Some(&admin), None)
            .await;
        if rows.as_array().unwrap().is_empty() {
            break;
        }
        assert!(start_wait.elapsed() < DEADLINE, "the row stayed: {rows}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hook.got.lock().unwrap()[0],
        parked["idempotency_key"].as_str().unwrap()
    );
    let (status, _) = d
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/parked/{id}/retry"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Too large to travel inline: both requests (the watcher's, refused, and the
    // parked worker's) carry the same link into the API, which gives the message.
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let link = bodies[0]["mime_link"].as_str().expect("a link").to_owned();
    for b in &bodies {
        assert_eq!(b["mime_link"], link, "{b}");
        assert!(b.get("mime_base64").is_none_or(Value::is_null), "{b}");
    }
    assert!(
        link.starts_with(&format!("{}/api/v1/accounts/{bob}/messages/", d.base)),
        "{link}"
    );
    let res = reqwest::Client::new()
        .get(&link)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mime = res.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&mime);
    assert!(text.contains("Subject: Printer on fire"), "{text}");
    assert_eq!(
        bodies[0]["size"].as_u64(),
        Some(mime.len() as u64),
        "{}",
        bodies[0]
    );
    d.stop().await;
    assert_eq!(hook.got.lock().unwrap().len(), 1);
}
