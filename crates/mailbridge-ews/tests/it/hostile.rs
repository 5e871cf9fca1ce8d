//! Hostile EWS servers (scripted): sync rounds that never end, redirects to another
//! server, a MimeContent that never ends, and a large message whose peak memory must
//! not follow its size (measured in a child process).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_ews::{EwsAuth, EwsClient, EwsConfig, EwsError};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::SecretString;

use mailbridge_testkit::hostile::http::{Answer, serve};

fn client(url: &str, limits: Limits) -> EwsClient {
    let mut config = EwsConfig::new(url);
    config.limits = limits;
    config.timeout = Duration::from_secs(30);
    EwsClient::new(config).unwrap()
}

fn bearer() -> EwsAuth {
    EwsAuth::Bearer {
        token: mailbridge_auth::source::fixed(SecretString::from(
            "eyJ0eXAiOiJKV1QifQ.secret-token.",
        )),
    }
}

fn soap(inner: &str) -> Answer {
    Answer::Full {
        status: 200,
        headers: "content-type: text/xml; charset=utf-8\r\n".into(),
        body: format!(
            r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Body>{inner}</s:Body></s:Envelope>"#
        )
        .into_bytes(),
    }
}

fn sync_answer(n: usize, last: bool) -> Answer {
    soap(&format!(
        r#"<m:SyncFolderItemsResponse><m:ResponseMessages><m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:SyncState>state{n}</m:SyncState><m:IncludesLastItemInRange>{last}</m:IncludesLastItemInRange><m:Changes><t:Create><t:Message><t:ItemId Id="id{n}a" ChangeKey="k"/></t:Message></t:Create><t:Create><t:Message><t:ItemId Id="id{n}b" ChangeKey="k"/></t:Message></t:Create></m:Changes></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:SyncFolderItemsResponse>"#
    ))
}

#[tokio::test]
async fn sync_rounds_that_never_end_stop_at_max_pages_and_max_list_items() {
    let server = serve(|n, _| sync_answer(n, false)).await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let limits = Limits {
        max_pages: 7,
        ..Limits::default()
    };
    let err = client(&url, limits)
        .sync_round(&bearer(), "inbox", None, 512)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
    assert!(err.to_string().contains("limits.max_pages"), "{err}");
    assert_eq!(server.requests().len(), 7);
    let limits = Limits {
        max_list_items: 5,
        ..Limits::default()
    };
    let err = client(&url, limits)
        .sync_round(&bearer(), "inbox", None, 512)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limits.max_list_items"), "{err}");
    // A round that ends is read whole, its state the last page's.
    let server = serve(|n, _| sync_answer(n, n == 2)).await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let round = client(&url, Limits::default())
        .sync_round(&bearer(), "inbox", Some("start"), 512)
        .await
        .unwrap();
    assert_eq!(round.changes.len(), 6);
    assert_eq!(round.sync_state, "state2");
}

#[tokio::test]
async fn redirects_are_followed_only_on_the_ews_origin() {
    let stranger = serve(|n, _| sync_answer(n, true)).await;
    let to = format!("{}/EWS/Exchange.asmx?sig=SECRETSIG", stranger.base());
    let t = to.clone();
    let server = serve(move |_, _| Answer::Full {
        status: 302,
        headers: format!("location: {t}\r\n"),
        body: Vec::new(),
    })
    .await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let err = client(&url, Limits::default())
        .sync_folder_items(&bearer(), "inbox", None, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, EwsError::Redirected(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains(&format!("{}/EWS/Exchange.asmx", stranger.base())),
        "{text}"
    );
    assert!(!text.contains("SECRETSIG"), "{text}");
    assert!(stranger.requests().is_empty(), "{:?}", stranger.requests());
    // On the same origin, the redirect is followed with the credentials.
    let server = serve(|n, _| {
        if n == 0 {
            Answer::Full {
                status: 302,
                headers: "location: /ews/exchange.asmx\r\n".into(),
                body: Vec::new(),
            }
        } else {
            sync_answer(n, true)
        }
    })
    .await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let page = client(&url, Limits::default())
        .sync_folder_items(&bearer(), "inbox", None, 10)
        .await
        .unwrap();
    assert_eq!(page.changes.len(), 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].target(), "/ews/exchange.asmx");
    assert!(requests[1].header("authorization").is_some());
}

const HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:GetItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><m:ResponseMessages><m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">"#;
const TAIL: &str = r#"</t:MimeContent><t:ItemId Id="AAA=" ChangeKey="B" /></t:Message></m:Items></m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>"#;

/// A GetItem answer whose message is `pieces` pieces of 48 KiB (base64, generated as
/// sent), chunked; without end when `pieces` is `None`.
fn generated_mime(pieces: Option<usize>) -> Answer {
    let piece = STANDARD.encode(vec![b'a'; 48 * 1024]).into_bytes();
    let mut sent = 0usize;
    let mut state = 0u8;
    Answer::Chunked {
        headers: "content-type: text/xml; charset=utf-8\r\n".into(),
        pieces: Box::new(move || match state {
            0 => {
                state = 1;
                Some(HEAD.as_bytes().to_vec())
            }
            1 if pieces.is_none_or(|p| sent < p) => {
                sent += 1;
                Some(piece.clone())
            }
            1 => {
                state = 2;
                Some(TAIL.as_bytes().to_vec())
            }
            _ => None,
        }),
    }
}

#[tokio::test]
async fn a_mime_content_that_never_ends_is_refused_at_max_message_size() {
    let server = serve(|_, _| generated_mime(None)).await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let limits = Limits {
        max_message_size: 1024 * 1024,
        ..Limits::default()
    };
    let mut sink = Vec::new();
    let err = client(&url, limits)
        .get_mime_into(&bearer(), "AAA=", &mut sink)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::LimitExceeded, "{err:?}");
    assert!(
        err.to_string().contains("limits.max_message_size") && err.to_string().contains("1048576"),
        "{err}"
    );
    assert!(sink.len() <= 1024 * 1024);
    // The same answer, ended: exactly its message.
    let server = serve(|_, _| generated_mime(Some(20))).await;
    let url = format!("{}/EWS/Exchange.asmx", server.base());
    let mut sink = Vec::new();
    let n = client(&url, limits)
        .get_mime_into(&bearer(), "AAA=", &mut sink)
        .await
        .unwrap();
    assert_eq!(n, 20 * 48 * 1024);
    assert!(sink.iter().all(|&b| b == b'a') && sink.len() == 20 * 48 * 1024);
}

/// Env var that makes [`child_fetches_a_large_message`] do its work.
const CHILD: &str = "MAILBRIDGE_EWS_MEMORY_CHILD";

/// The child's part of [`a_large_message_is_fetched_in_memory_that_does_not_follow_its_size`]:
/// fetches a 50 MiB message (67 MiB of base64) into a sink that drops it, and prints
/// its peak memory. Does nothing unless started by the parent.
#[test]
fn child_fetches_a_large_message() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 1,067 pieces of 48 KiB: 50 MiB.
        let server = serve(|_, _| generated_mime(Some(1067))).await;
        let url = format!("{}/EWS/Exchange.asmx", server.base());
        let mut sink = tokio::io::sink();
        let before = mailbridge_testkit::memory::peak_kib();
        let n = client(&url, Limits::default())
            .get_mime_into(&bearer(), "AAA=", &mut sink)
            .await
            .unwrap();
        assert_eq!(n, 1067 * 48 * 1024);
        println!(
            "PEAK_KIB={} BEFORE_KIB={before} BYTES={n}",
            mailbridge_testkit::memory::peak_kib()
        );
    });
}

#[test]
fn a_large_message_is_fetched_in_memory_that_does_not_follow_its_size() {
    let (peak, stdout) =
        mailbridge_testkit::memory::child_peak_kib("hostile::child_fetches_a_large_message", CHILD);
    // Holding the answer (67 MiB of base64) and the message (50 MiB) took over
    // 117 MiB; streamed, the process stays far under the message's own size.
    assert!(peak < 40 * 1024, "peak resident set {peak} KiB: {stdout}");
    eprintln!("{stdout}");
}

#[test]
fn an_ews_url_that_is_not_a_url_is_misconfigured() {
    let err = EwsClient::new(EwsConfig::new("mail.contoso.com")).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert!(err.to_string().contains("/EWS/Exchange.asmx"), "{err}");
}
