//! Property tests of the EWS XML reader and of the client's reading of answers: trees
//! written out (with prefixes, escapes, character references and CDATA) read back the
//! same; deep, truncated and entity-laden documents are refused with an error; and
//! whatever an EWS server answers, the client returns a result or a clear error.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use mailbridge_ews::xml::{Element, MAX_DEPTH, escape, parse};
use mailbridge_ews::{EwsAuth, EwsClient, EwsConfig, EwsError};
use proptest::prelude::*;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How a piece of text is written: escaped, as numeric character references, or CDATA.
#[derive(Debug, Clone, Copy)]
enum Writing {
    Escaped,
    CharRefs,
    CData,
}

fn write_text(text: &str, how: Writing, out: &mut String) {
    match how {
        Writing::CharRefs => {
            for (i, c) in text.chars().enumerate() {
                if i % 2 == 0 {
                    let _ = write!(out, "&#{};", u32::from(c));
                } else {
                    let _ = write!(out, "&#x{:X};", u32::from(c));
                }
            }
        }
        Writing::CData if !text.contains("]]>") => {
            out.push_str("<![CDATA[");
            out.push_str(text);
            out.push_str("]]>");
        }
        // Text that cannot be CDATA is escaped.
        Writing::Escaped | Writing::CData => out.push_str(&escape(text)),
    }
}

/// Writes `el` with `prefix:` on every name; text before the children.
fn write(el: &Element, prefix: &str, how: Writing, out: &mut String) {
    out.push('<');
    out.push_str(prefix);
    out.push_str(&el.name);
    for (k, v) in &el.attributes {
        let _ = write!(out, " {k}=\"{}\"", escape(v));
    }
    if el.text.is_empty() && el.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    write_text(&el.text, how, out);
    for c in &el.children {
        write(c, prefix, how, out);
    }
    out.push_str("</");
    out.push_str(prefix);
    out.push_str(&el.name);
    out.push('>');
}

/// Text as the reader keeps it: no leading or trailing white space.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}-\u{1f}\u{7f}\u{fffe}\u{ffff}]{0,20}".prop_map(|s| s.trim().to_owned())
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = (
        "[A-Za-z][A-Za-z0-9]{0,8}",
        proptest::collection::btree_map("[a-z][a-zA-Z]{0,6}", text(), 0..3),
        text(),
    )
        .prop_map(|(name, attributes, text)| Element {
            name,
            attributes: attributes.into_iter().collect(),
            text,
            children: Vec::new(),
        });
    leaf.prop_recursive(5, 40, 5, |inner| {
        (
            "[A-Za-z][A-Za-z0-9]{0,8}",
            text(),
            proptest::collection::vec(inner, 0..5),
        )
            .prop_map(|(name, text, children)| Element {
                name,
                attributes: Vec::new(),
                text,
                children,
            })
    })
}

#[test]
fn numeric_character_references_are_text() {
    // Found by `written_trees_read_back_the_same`: `&#60;` and `&#x41;` were refused as
    // "unknown entity".
    let root = parse("<a t=\"&#65;\">x &#60; &#x41;&#x1F600;</a>").unwrap();
    assert_eq!(root.text, "x < A\u{1F600}");
    assert_eq!(root.attr("t"), Some("A"));
    for bad in [
        "<a>&#0;</a>",
        "<a>&#xD800;</a>",
        "<a>&#x110000;</a>",
        "<a>&#;</a>",
        "<a>&#xZ;</a>",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn nesting_just_within_and_past_the_limit() {
    let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
    assert!(parse(&ok).is_ok());
    let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
    assert!(
        parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("too large or too deep")
    );
    // Far past the limit: an error, not a stack overflow.
    let very = "<a>".repeat(1_000_000);
    assert!(parse(&very).is_err());
}

#[test]
fn entity_expansion_is_refused() {
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>"#;
    assert!(parse(laughs).unwrap_err().to_string().contains("DTD"));
    let external = r#"<!DOCTYPE x SYSTEM "file:///etc/passwd"><x>&ext;</x>"#;
    assert!(parse(external).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn xml_ish_text_never_panics(s in "(<[a-z:]{0,3}|</[a-z:]{0,3}|>|/>|&[a-z#x0-9]{0,4};?|<!\\[CDATA\\[|\\]\\]>|<\\?|\\?>|<!--|-->|<!DOCTYPE|\"|=| |[a-z]){0,60}") {
        let _ = parse(&s);
    }

    /// A tree written out any way reads back as the same tree.
    #[test]
    fn written_trees_read_back_the_same(
        root in element(),
        prefix in prop_oneof![Just(""), Just("t:"), Just("soap:")],
        how in prop_oneof![Just(Writing::Escaped), Just(Writing::CharRefs), Just(Writing::CData)],
        declaration in any::<bool>(),
    ) {
        let mut doc = String::new();
        if declaration {
            doc.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        }
        write(&root, prefix, how, &mut doc);
        let back = parse(&doc);
        prop_assert_eq!(back.as_ref(), Ok(&root), "{}", doc);
    }

    /// A document cut anywhere before its end is an error, not a partial tree.
    #[test]
    fn truncated_documents_are_errors(root in element(), cut in any::<prop::sample::Index>()) {
        let mut doc = String::new();
        write(&root, "m:", Writing::Escaped, &mut doc);
        let boundaries: Vec<usize> = doc.char_indices().map(|(i, _)| i).collect();
        let end = boundaries[cut.index(boundaries.len())];
        let cut_doc = doc.get(..end).unwrap();
        prop_assert!(parse(cut_doc).is_err(), "{}", cut_doc);
    }
}

/// An HTTP server answering every request with `status` and `body`.
async fn http_server(status: u16, body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request head and body (content-length).
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
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

fn ask(status: u16, body: Vec<u8>) -> (Result<Vec<u8>, EwsError>, Result<(), EwsError>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = http_server(status, body).await;
        let mut config = EwsConfig::new(&format!("http://{addr}/EWS/Exchange.asmx"));
        config.timeout = Duration::from_secs(10);
        // One attempt: a busy answer is not retried after its (random) back-off.
        config.attempts = 1;
        let client = EwsClient::new(config).unwrap();
        let auth = EwsAuth::Bearer {
            token: mailbridge_auth::source::fixed(SecretString::from("t")),
        };
        let mime = client.get_mime(&auth, "AAMk=").await;
        let sync = client
            .sync_folder_items(&auth, "inbox", None, 10)
            .await
            .map(|_| ());
        (mime, sync)
    })
}

/// EWS answers: envelopes around response messages with random classes, codes,
/// back-offs, MIME content (base64 or not) and changes.
fn ews_answer() -> impl Strategy<Value = String> {
    let class = prop_oneof![Just("Success"), Just("Error"), Just("Warning"), Just("")];
    let code = prop_oneof![
        Just("NoError".to_owned()),
        Just("ErrorServerBusy".to_owned()),
        Just("ErrorItemNotFound".to_owned()),
        "[A-Za-z]{0,12}",
    ];
    let back_off = prop_oneof![
        Just(String::new()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,30}",
        "[a-z ]{0,5}",
    ];
    let mime = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "[A-Za-z0-9+/= \r\n]{0,80}",
        ".{0,40}".prop_map(|s| escape(&s)),
    ];
    let change = (
        prop_oneof![
            Just("Create"),
            Just("Update"),
            Just("Delete"),
            Just("ReadFlagChange"),
            Just("Other")
        ],
        prop_oneof![
            Just(String::new()),
            "[A-Za-z0-9=]{1,20}".prop_map(|id| format!("<t:ItemId Id=\"{id}\" ChangeKey=\"ck\"/>"))
        ],
        prop_oneof![
            Just(""),
            Just("<t:IsRead>true</t:IsRead>"),
            Just("<t:IsRead>x</t:IsRead>")
        ],
    )
        .prop_map(|(kind, id, read)| {
            format!("<t:{kind}><t:Message>{id}{read}</t:Message></t:{kind}>")
        });
    (
        class,
        code,
        back_off,
        mime,
        proptest::collection::vec(change, 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(class, code, back_off, mime, changes, fault, with_state, with_mime)| {
            let back = if back_off.is_empty() {
                String::new()
            } else {
                format!("<m:MessageXml><t:Value Name=\"BackOffMilliseconds\">{back_off}</t:Value></m:MessageXml>")
            };
            let body = if fault {
                format!("<s:Fault><faultcode>a:{code}</faultcode><faultstring>busy</faultstring><detail><e:ResponseCode>{code}</e:ResponseCode>{back}</detail></s:Fault>")
            } else {
                let state = if with_state { "<m:SyncState>H4sI</m:SyncState>" } else { "" };
                let mime = if with_mime { format!("<t:Message><t:MimeContent CharacterSet=\"UTF-8\">{mime}</t:MimeContent></t:Message>") } else { String::new() };
                format!(
                    "<m:GetItemResponse><m:ResponseMessages><m:GetItemResponseMessage ResponseClass=\"{class}\"><m:MessageText>t</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>{back}<m:Items>{mime}</m:Items></m:GetItemResponseMessage>\
                     <m:SyncFolderItemsResponseMessage ResponseClass=\"{class}\"><m:ResponseCode>{code}</m:ResponseCode>{state}<m:IncludesLastItemInRange>true</m:IncludesLastItemInRange><m:Changes>{}</m:Changes></m:SyncFolderItemsResponseMessage></m:ResponseMessages></m:GetItemResponse>",
                    changes.concat()
                )
            };
            format!("<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"s\" xmlns:m=\"m\" xmlns:t=\"t\" xmlns:e=\"e\"><s:Body>{body}</s:Body></s:Envelope>")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the server answers, every error has a message and a class.
    #[test]
    fn any_answer_gives_a_result_or_a_clear_error(
        status in prop_oneof![Just(200u16), Just(500), Just(503), Just(302), Just(400)],
        body in prop_oneof![
            3 => ews_answer().prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..300),
        ],
    ) {
        let (mime, sync) = ask(status, body);
        for e in [mime.err(), sync.err()].into_iter().flatten() {
            prop_assert!(!e.to_string().is_empty());
            let _ = e.class();
        }
    }
}
