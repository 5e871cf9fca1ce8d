//! Property tests of the Graph client's reading of answers, against a scripted HTTP
//! server: error answers of any shape are explained, delta pages with wrong types keep
//! what is valid or are refused, and answers too large to hold are refused.

use std::net::SocketAddr;
use std::time::Duration;

use mailbridge_graph::error::GraphError;
use mailbridge_graph::{ClientError, GraphClient, GraphConfig, Mailbox};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An HTTP server answering every request with `status`, `headers` and `body`.
async fn http_server(status: u16, headers: String, body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (headers, body) = (headers.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn delta(status: u16, body: Vec<u8>) -> Result<mailbridge_graph::DeltaPage, ClientError> {
    runtime().block_on(async {
        let addr = http_server(status, String::new(), body).await;
        let mut config = GraphConfig::new(&format!("http://{addr}/v1.0"));
        config.attempts = 1;
        config.timeout = Duration::from_secs(20);
        let client = GraphClient::new(config).unwrap();
        client
            .delta(
                &SecretString::from("t"),
                &Mailbox::User("a@b.example".into()),
                "inbox",
                None,
                50,
            )
            .await
    })
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z@.]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn a_json_answer_that_is_not_a_delta_page_is_refused() {
    // Found by `delta_pages_with_wrong_types`: `{}` and `{"value": "x"}` were empty
    // pages without links, which ends a sync round as if nothing had happened.
    for body in ["{}", r#"{"value":"x"}"#, "[]", "42", "null"] {
        let err = delta(200, body.as_bytes().to_vec()).unwrap_err();
        assert!(
            err.to_string()
                .contains("a delta page without a value array"),
            "{body}: {err}"
        );
    }
}

#[test]
fn an_answer_too_large_to_hold_is_refused() {
    // Found by review: the body was read whole, whatever its size.
    let mut body = br#"{"value":[],"pad":""#.to_vec();
    body.resize(40 * 1024 * 1024, b'a');
    body.extend_from_slice(br#""}"#);
    let err = delta(200, body).unwrap_err();
    assert!(err.to_string().contains("an answer larger than"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any status and body is explained: a meaning, a class, a message.
    #[test]
    fn error_answers_of_any_shape_are_explained(
        status in 400u16..600,
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (any_json(), any_json()).prop_map(|(code, message)| {
                json!({"error": {"code": code, "message": message}}).to_string().into_bytes()
            }),
            any_json().prop_map(|v| json!({"error": v}).to_string().into_bytes()),
        ],
        retry in proptest::option::of(any::<u64>()),
    ) {
        let e = GraphError::from_answer(status, retry.map(Duration::from_secs), None, &body);
        prop_assert!(!e.to_string().is_empty());
        let _ = e.class();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A delta page keeps the entries that have a string id and drops the rest; any
    /// other shape is an error with a message.
    #[test]
    fn delta_pages_with_wrong_types(
        values in proptest::collection::vec(
            prop_oneof![
                any_json(),
                ("[A-Za-z0-9=-]{1,20}", any_json(), any_json(), any::<bool>()).prop_map(|(id, subject, read, removed)| {
                    let mut m = json!({"id": id, "subject": subject, "isRead": read});
                    if removed {
                        m["@removed"] = json!({"reason": "deleted"});
                    }
                    m
                }),
            ],
            0..6,
        ),
        next in any_json(),
        wrap in any::<bool>(),
    ) {
        let body = if wrap {
            json!({"value": values, "@odata.nextLink": next})
        } else {
            values.first().cloned().unwrap_or(Value::Null)
        };
        match delta(200, body.to_string().into_bytes()) {
            Ok(_) if !wrap => {}
            Ok(page) => {
                let want: Vec<&str> = values.iter().filter_map(|m| m.get("id")?.as_str()).collect();
                let got: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(page.next_link.as_deref(), next.as_str());
                for (item, m) in page.items.iter().zip(values.iter().filter(|m| m.get("id").is_some_and(Value::is_string))) {
                    prop_assert_eq!(item.removed, m.get("@removed").is_some());
                    prop_assert_eq!(item.is_read, m.get("isRead").and_then(Value::as_bool));
                    prop_assert_eq!(item.subject.as_deref(), m.get("subject").and_then(Value::as_str));
                }
            }
            // A nextLink that is not on the root's origin is refused (never followed
            // with the token), naming the root.
            Err(ClientError::ForeignLink(f)) => {
                prop_assert!(wrap && next.is_string(), "{:?}", f);
                prop_assert!(f.endpoint.ends_with("/v1.0"), "{:?}", f);
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(!(wrap), "a wrapped page was refused: {}", e);
            }
        }
    }
}

/// A server that sends a message body in `pieces` pieces of 1 KiB, `gap` apart, then
/// stops (and keeps the connection open) when `stall` is set.
async fn trickling_server(pieces: usize, gap: Duration, stall: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
                let total = if stall { pieces + 1 } else { pieces };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                    total * 1024
                );
                let _ = s.write_all(head.as_bytes()).await;
                for _ in 0..pieces {
                    let _ = s.write_all(&[b'x'; 1024]).await;
                    tokio::time::sleep(gap).await;
                }
                if stall {
                    tokio::time::sleep(Duration::from_mins(1)).await;
                }
            });
        }
    });
    addr
}

/// A message body that keeps coming is read to its end however long it takes in all
/// (a 150 MB message on a slow link, or four side by side); one that stops arriving
/// fails after the client's timeout.
#[test]
fn a_message_body_is_bounded_by_silence_not_by_its_total_time() {
    runtime().block_on(async {
        let fetch = |addr: SocketAddr| async move {
            let mut config = GraphConfig::new(&format!("http://{addr}/v1.0"));
            config.attempts = 1;
            config.timeout = Duration::from_secs(1);
            let client = GraphClient::new(config).unwrap();
            let mut out = Vec::new();
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                client.fetch_mime(
                    &SecretString::from("t"),
                    &Mailbox::User("a@x.example".into()),
                    "m1",
                    &mut out,
                ),
            )
            .await
            .expect("the fetch neither ended nor failed");
            (r, out.len())
        };
        // 6 pieces 400 ms apart: 2.4 s in all, more than the 1 s timeout.
        let (r, got) = fetch(trickling_server(6, Duration::from_millis(400), false).await).await;
        assert_eq!(r.unwrap(), 6 * 1024);
        assert_eq!(got, 6 * 1024);
        // One piece, then silence.
        let (r, _) = fetch(trickling_server(1, Duration::ZERO, true).await).await;
        assert!(r.is_err(), "a stalled body must fail");
    });
}
