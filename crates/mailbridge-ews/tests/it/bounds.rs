//! Answers are read with a bound: a small one for every operation but GetItem with
//! MimeContent, which carries a whole message in base64. A tiny local HTTP server
//! stands in for EWS and sends answers larger than the bounds.

use base64::Engine as _;
use mailbridge_ews::client::{MAX_ANSWER, MAX_MIME_ANSWER};
use mailbridge_ews::{EwsAuth, EwsClient, EwsConfig, EwsError};
use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Answers each request (read whole) with the next of `answers`, as text/xml, its
/// `content-length` the one given (a claim, the connection then closes) or the real one.
async fn serve(answers: Vec<(Vec<u8>, Option<usize>)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for (answer, claimed) in answers {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/xml; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                claimed.unwrap_or(answer.len())
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        }
    });
    format!("http://{addr}/EWS/Exchange.asmx")
}

fn envelope(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>{inner}</s:Body></s:Envelope>"#
    )
}

fn auth() -> EwsAuth {
    EwsAuth::Basic {
        user: "alice".into(),
        password: SecretString::from("pw"),
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused_naming_the_endpoint_and_the_limit() {
    // A SyncFolderItems answer padded past the bound with a long sync state.
    let sync = envelope(&format!(
        r#"<m:SyncFolderItemsResponse><m:ResponseMessages><m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:SyncState>{}</m:SyncState><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes /></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:SyncFolderItemsResponse>"#,
        "A".repeat(MAX_ANSWER)
    ));
    let url = serve(vec![(sync.into_bytes(), None)]).await;
    let client = EwsClient::new(EwsConfig::new(&url)).unwrap();
    let err = client
        .sync_folder_items(&auth(), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, EwsError::TooLarge { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("SyncFolderItems") && text.contains("8388608"),
        "{text}"
    );
}

#[tokio::test]
async fn get_item_mime_content_may_be_larger_up_to_its_own_bound() {
    // A 9 MiB message: over the bound of other answers, well under GetItem's.
    let message = format!(
        "Subject: large\r\n\r\n{}",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"
            .repeat(9 * 1024 * 1024 / 66)
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&message);
    let item = |mime: &str| {
        envelope(&format!(
            r#"<m:GetItemResponse><m:ResponseMessages><m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent><t:ItemId Id="AAA=" ChangeKey="B" /></t:Message></m:Items></m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse>"#
        ))
        .into_bytes()
    };
    assert!(b64.len() > MAX_ANSWER);
    // The bound of GetItem is the message size limit's (in base64, with the
    // envelope): an answer announced over it is refused before it is read.
    let url = serve(vec![
        (item(&b64), None),
        (item("AAAA"), Some(MAX_MIME_ANSWER * 2)),
    ])
    .await;
    let client = EwsClient::new(EwsConfig::new(&url)).unwrap();
    let got = client.get_mime(&auth(), "AAA=").await.unwrap();
    assert_eq!(got, message.as_bytes());
    let err = client.get_mime(&auth(), "AAA=").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("limits.max_message_size") && text.contains("157286400"),
        "{text}"
    );
}
