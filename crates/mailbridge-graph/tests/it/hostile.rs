//! Hostile Graph servers (scripted): page chains that never end, listings too long,
//! rounds too slow, message bodies that never end or announce too much, links to
//! another server, and upload URLs that must not be shown. Each is stopped by a bound
//! of the account's `Limits` or the origin check, with an error that names it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailbridge_graph::{ClientError, GraphClient, GraphConfig, Mailbox};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::SecretString;
use serde_json::json;

use mailbridge_testkit::hostile::http::{Answer, json, serve};

fn client(base: &str, limits: Limits) -> GraphClient {
    let mut config = GraphConfig::new(&format!("{base}/v1.0"));
    config.attempts = 1;
    config.timeout = Duration::from_secs(20);
    config.limits = limits;
    GraphClient::new(config).unwrap()
}

fn token() -> SecretString {
    SecretString::from("eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.secret-token.")
}

fn mailbox() -> Mailbox {
    Mailbox::User("alice@contoso.example".into())
}

/// A delta page of `n` messages numbered from `first`, with a next link to `next`.
fn page(first: usize, n: usize, next: &str) -> serde_json::Value {
    let value: Vec<_> = (first..first + n)
        .map(|i| json!({"id": format!("m{i}"), "subject": "s", "isRead": false}))
        .collect();
    json!({"value": value, "@odata.nextLink": next})
}

#[tokio::test]
async fn an_endless_next_link_chain_stops_at_max_pages() {
    // Measured on main: 26,812 pages and 5.0 GB before it was killed.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let server = serve(move |n, _| {
        let next = format!("{}/v1.0/next?$skiptoken={n}", b.get().unwrap());
        json(200, &page(n, 1, &next))
    })
    .await;
    base.set(server.base()).unwrap();
    let limits = Limits {
        max_pages: 20,
        ..Limits::default()
    };
    let err = client(&server.base(), limits)
        .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("limits.max_pages") && text.contains("20 pages"),
        "{text}"
    );
    assert_eq!(server.requests().len(), 20);
}

#[tokio::test]
async fn a_listing_longer_than_max_list_items_is_refused() {
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let server = serve(move |n, _| {
        let next = format!("{}/v1.0/next?$skiptoken={n}", b.get().unwrap());
        json(200, &page(n * 10, 10, &next))
    })
    .await;
    base.set(server.base()).unwrap();
    let limits = Limits {
        max_list_items: 25,
        ..Limits::default()
    };
    let err = client(&server.base(), limits)
        .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert!(err.to_string().contains("limits.max_list_items"), "{err}");
    // The third page would make 30: refused there, not after reading on.
    assert_eq!(server.requests().len(), 3);
    // One page holding more than the bound is refused by the page parser itself.
    let server = serve(|_, _| {
        json(200, &json!({"value": (0..30).map(|i| json!({"id": format!("m{i}")})).collect::<Vec<_>>(), "@odata.deltaLink": "x"}))
    })
    .await;
    let err = client(&server.base(), limits)
        .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limits.max_list_items"), "{err}");
}

#[tokio::test]
async fn a_round_that_takes_longer_than_the_command_timeout_is_stopped() {
    // Each page comes quickly enough for the per-request timeout, but the chain
    // never ends: the round's own time bound stops it.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let server = serve(move |n, _| {
        std::thread::sleep(Duration::from_millis(150));
        let next = format!("{}/v1.0/next?$skiptoken={n}", b.get().unwrap());
        json(200, &page(n, 1, &next))
    })
    .await;
    base.set(server.base()).unwrap();
    let limits = Limits {
        command_timeout_secs: 1,
        ..Limits::default()
    };
    let err = client(&server.base(), limits)
        .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert!(
        err.to_string().contains("limits.command_timeout_secs"),
        "{err}"
    );
}

#[tokio::test]
async fn links_to_another_server_are_not_followed_and_get_no_token() {
    // The other server: any request to it is a token handed to a stranger.
    let stranger = serve(|_, _| json(200, &json!({"value": []}))).await;
    for field in ["@odata.nextLink", "@odata.deltaLink"] {
        // Same host, another port, plain http: as measured on main.
        let link = format!(
            "{}/v1.0/me/messages/delta?$deltatoken=SECRETSTATE",
            stranger.base()
        );
        let l = link.clone();
        let server =
            serve(move |_, _| json(200, &json!({"value": [{"id": "m1"}], field: l.clone()}))).await;
        let err = client(&server.base(), Limits::default())
            .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::ForeignLink(_)), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Misconfigured);
        let text = err.to_string();
        // Both URLs named, neither's query shown.
        assert!(text.contains(&format!("{}/v1.0", server.base())), "{text}");
        assert!(
            text.contains(&format!("{}/v1.0/me/messages/delta", stranger.base())),
            "{text}"
        );
        assert!(!text.contains("SECRETSTATE") && !format!("{err:?}").contains("SECRETSTATE"));
        assert_eq!(server.requests().len(), 1);
        // A stored link to the stranger (a checkpoint) is not followed either.
        let err = client(&server.base(), Limits::default())
            .delta(&token(), &mailbox(), "inbox", Some(&link), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::ForeignLink(_)), "{err:?}");
    }
    assert!(
        stranger.requests().is_empty(),
        "the other server got {:?}",
        stranger.requests()
    );
    // Links on the root's own origin are followed, with the token.
    let base = Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let server = serve(move |n, _| {
        let b = b.get().unwrap();
        if n == 0 {
            json(200, &page(0, 2, &format!("{b}/v1.0/p2?$skiptoken=x")))
        } else {
            json(200, &json!({"value": [{"id": "m2"}], "@odata.deltaLink": format!("{b}/v1.0/d?$deltatoken=y")}))
        }
    })
    .await;
    base.set(server.base()).unwrap();
    let round = client(&server.base(), Limits::default())
        .delta_round(&token(), &mailbox(), "inbox", None, None, 10)
        .await
        .unwrap();
    assert_eq!(round.items.len(), 3);
    assert_eq!(round.pages, 2);
    assert_eq!(server.requests()[1].target(), "/v1.0/p2?$skiptoken=x");
    assert!(round.delta_link.ends_with("$deltatoken=y"));
    assert!(server.requests().iter().all(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))
    }));
}

/// A `$value` body generated without end, in 64 KiB pieces.
fn endless() -> Answer {
    Answer::Chunked {
        headers: "content-type: text/plain\r\n".into(),
        pieces: Box::new(|| Some(vec![b'x'; 64 * 1024])),
    }
}

#[tokio::test]
async fn a_message_that_never_ends_or_announces_too_much_is_refused() {
    // Measured on main: 1.07 GB written and counted as fetched.
    let limits = Limits {
        max_message_size: 1024 * 1024,
        ..Limits::default()
    };
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let server = serve(move |_, _| {
        s.fetch_add(1, Ordering::SeqCst);
        endless()
    })
    .await;
    let mut sink = Vec::new();
    let err = client(&server.base(), limits)
        .fetch_mime(&token(), &mailbox(), "m1", &mut sink)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("message m1")
            && text.contains("1048576 bytes")
            && text.contains("limits.max_message_size"),
        "{text}"
    );
    assert!(sink.len() <= 1024 * 1024, "{} bytes written", sink.len());
    // A Content-Length over the bound: refused before a byte is written.
    let server = serve(|_, _| Answer::Full {
        status: 200,
        headers: "content-type: text/plain\r\n".into(),
        body: vec![b'x'; 1024 * 1024 + 1],
    })
    .await;
    let mut sink = Vec::new();
    let err = client(&server.base(), limits)
        .fetch_mime(&token(), &mailbox(), "m1", &mut sink)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded);
    assert!(sink.is_empty());
    // Exactly the bound is a message.
    let server = serve(|_, _| Answer::Full {
        status: 200,
        headers: "content-type: text/plain\r\n".into(),
        body: vec![b'x'; 1024 * 1024],
    })
    .await;
    let mut sink = Vec::new();
    let size = client(&server.base(), limits)
        .fetch_mime(&token(), &mailbox(), "m1", &mut sink)
        .await
        .unwrap();
    assert_eq!(size, 1024 * 1024);
}

#[tokio::test]
async fn an_upload_url_never_appears_in_an_error() {
    // A port nothing listens on: the request fails to connect.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let upload = format!(
        "http://127.0.0.1:{port}/api/v2.0/Users('a')/Messages('b')/AttachmentSessions('c')?authtoken=UPLOADSECRET"
    );
    let c = client("https://graph.example", Limits::default());
    let err = c
        .upload_chunk(
            &mailbox(),
            &upload,
            0,
            10,
            bytes::Bytes::from_static(b"0123456789"),
        )
        .await
        .unwrap_err();
    let mut shown = format!("{err} / {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        let _ = write!(shown, " / {s} / {s:?}");
        source = s.source();
    }
    assert!(!shown.contains("UPLOADSECRET"), "{shown}");
    assert!(!shown.contains("authtoken"), "{shown}");
    assert!(
        shown.contains(&format!("127.0.0.1:{port}/api/v2.0/")),
        "{shown}"
    );
    // And when the upload server answers an error.
    let server = serve(|_, _| json(500, &json!({"error": {"code": "x", "message": "boom"}}))).await;
    let upload = format!("{}/up?authtoken=UPLOADSECRET", server.base());
    let err = c
        .upload_chunk(
            &mailbox(),
            &upload,
            0,
            10,
            bytes::Bytes::from_static(b"0123456789"),
        )
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("UPLOADSECRET"));
    // The upload server gets no Graph token.
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

#[test]
fn a_graph_root_that_is_not_a_url_is_misconfigured() {
    let err = GraphClient::new(GraphConfig::new("graph.microsoft.com/v1.0?x=SECRET")).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

/// Env var that makes [`child_follows_an_endless_delta`] do its work.
const MEMORY_CHILD: &str = "MAILBRIDGE_GRAPH_MEMORY_CHILD";

/// The child's part of [`an_endless_delta_is_bounded_in_memory_at_the_defaults`]:
/// follows a next-link chain that never ends (1,000 messages a page) with the
/// default limits and prints its peak memory. Does nothing unless started by the
/// parent.
#[test]
fn child_follows_an_endless_delta() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let base = Arc::new(std::sync::OnceLock::<String>::new());
        let b = base.clone();
        // The same 1,000 messages on every page, written once (the test's cost is
        // the client's, not the server's JSON).
        let items = page(0, 1000, "")["value"].to_string();
        let server = serve(move |n, _| Answer::Full {
            status: 200,
            headers: "content-type: application/json\r\n".into(),
            body: format!(
                r#"{{"value":{items},"@odata.nextLink":"{}/v1.0/next?$skiptoken={n}"}}"#,
                b.get().unwrap()
            )
            .into_bytes(),
        })
        .await;
        base.set(server.base()).unwrap();
        let err = client(&server.base(), Limits::default())
            .delta_round(&token(), &mailbox(), "inbox", None, None, 1000)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
        assert!(err.to_string().contains("limits.max_list_items"), "{err}");
        println!(
            "PEAK_KIB={} PAGES={}",
            mailbridge_testkit::memory::peak_kib(),
            server.requests().len()
        );
    });
}

/// Measured before the bounds: an endless delta ran 26,812 pages to 5.0 GB. With the
/// default limits it stops at 1,000,000 items with a clear error, far below that.
#[test]
fn an_endless_delta_is_bounded_in_memory_at_the_defaults() {
    let (peak, stdout) = mailbridge_testkit::memory::child_peak_kib(
        "hostile::child_follows_an_endless_delta",
        MEMORY_CHILD,
    );
    assert!(peak < 1024 * 1024, "peak resident set {peak} KiB: {stdout}");
    eprintln!("{stdout}");
}
