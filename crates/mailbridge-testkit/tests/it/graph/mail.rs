//! Graph against the mail store: list, get, `$value`, PATCH, move, DELETE, delta,
//! sending, attachments and upload sessions.

use mailbridge_testkit::model::{
    AccessPolicyMode, ApplicationAccessPolicy, MailboxPermission, MailboxRight,
};
use reqwest::Method;
use serde_json::{Value, json};

use super::support::{ALICE, BOB, CAROL, PAT, World, base64_encode, error_of, message};

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
#[expect(
    clippy::many_single_char_names,
    reason = "w, m, r, s, ... read best in a long scenario"
)]
async fn list_get_value_patch_move_delete() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    for (s, b) in [("första", "one"), ("второй", "two"), ("third ☕", "three")] {
        w.deliver(ALICE, &message(s, b)).await;
    }
    w.wait_for_messages(&token, ALICE, "inbox", 3).await;

    // Paging with $top and $select, following @odata.nextLink verbatim.
    let page = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/inbox/messages?$select=subject,isRead&$top=2"),
        )
        .await;
    let first = page["value"].as_array().unwrap();
    assert_eq!(first.len(), 2);
    let keys: Vec<&String> = first[0].as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| ["@odata.etag", "id", "subject", "isRead"].contains(&k.as_str())),
        "{keys:?}"
    );
    let next = page["@odata.nextLink"].as_str().unwrap();
    let page2 = w.get_json(&token, next).await;
    let second = page2["value"].as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert!(page2.get("@odata.nextLink").is_none());
    let mut subjects: Vec<String> = first
        .iter()
        .chain(second)
        .map(|m| m["subject"].as_str().unwrap().to_owned())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["första", "third ☕", "второй"]);

    // One message, full JSON.
    let id = first[0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("AAMkAD"), "{id}");
    let m = w
        .get_json(&token, &format!("users/{ALICE}/messages/{id}"))
        .await;
    assert_eq!(m["from"]["emailAddress"]["name"], "Søren Sender");
    assert_eq!(m["from"]["emailAddress"]["address"], "sender@example.org");
    assert_eq!(m["toRecipients"][0]["emailAddress"]["address"], ALICE);
    assert_eq!(m["isRead"], false);
    assert_eq!(m["isDraft"], false);
    assert_eq!(m["body"]["contentType"], "text");
    assert!(
        m["internetMessageId"]
            .as_str()
            .unwrap()
            .ends_with("@example.org>")
    );
    let inbox_id = m["parentFolderId"].as_str().unwrap().to_owned();

    // Raw MIME as text/plain.
    let r = w
        .http
        .get(w.url(&format!("users/{ALICE}/messages/{id}/$value")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    let raw = r.text().await.unwrap();
    assert!(raw.contains("Message-ID: <"), "{raw}");

    // Mark read; the unread filter sees the change.
    let r = w
        .send_json(
            Method::PATCH,
            &token,
            &format!("users/{ALICE}/messages/{id}"),
            &json!({"isRead": true}),
        )
        .await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["isRead"], true);
    let unread = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/inbox/messages?$filter=isRead eq false"),
        )
        .await;
    assert_eq!(unread["value"].as_array().unwrap().len(), 2);
    assert!(!ids(unread["value"].as_array().unwrap()).contains(&id));

    // Follow-up flag is IMAP's \Flagged.
    let r = w
        .send_json(
            Method::PATCH,
            &token,
            &format!("users/{ALICE}/messages/{id}"),
            &json!({"flag": {"flagStatus": "flagged"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["flag"]["flagStatus"],
        "flagged"
    );
    let over_imap = w.imap_messages(ALICE, "INBOX").await;
    let flagged: Vec<&String> = over_imap
        .iter()
        .filter(|m| m.contains("\\Flagged"))
        .collect();
    assert_eq!(flagged.len(), 1);
    assert!(flagged[0].contains("\\Seen"), "{}", flagged[0]);

    // Move to Archive: 201, new id, old id gone.
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/messages/{id}/move"),
            &json!({"destinationId": "archive"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let moved: Value = r.json().await.unwrap();
    let new_id = moved["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_ne!(moved["parentFolderId"], inbox_id.as_str());
    assert_eq!(moved["isRead"], true);
    let (s, code, msg) =
        error_of(w.get(&token, &format!("users/{ALICE}/messages/{id}")).await).await;
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store."
        )
    );
    let archive = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/archive/messages"),
        )
        .await;
    assert_eq!(
        ids(archive["value"].as_array().unwrap()),
        std::slice::from_ref(&new_id)
    );

    // Delete: 204, lands in Deleted Items.
    let r = w
        .http
        .delete(w.url(&format!("users/{ALICE}/messages/{new_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let deleted = w.wait_for_messages(&token, ALICE, "deleteditems", 1).await;
    assert_eq!(deleted[0]["subject"], moved["subject"]);
    let archive = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/archive/messages"),
        )
        .await;
    assert!(archive["value"].as_array().unwrap().is_empty());

    // The whole mailbox still has all three; folders count them.
    let all = w.get_json(&token, &format!("users/{ALICE}/messages")).await;
    assert_eq!(all["value"].as_array().unwrap().len(), 3);
    let folders = w
        .get_json(&token, &format!("users/{ALICE}/mailFolders"))
        .await;
    let inbox = folders["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["displayName"] == "Inbox")
        .unwrap();
    assert_eq!(inbox["totalItemCount"], 2);
    assert_eq!(inbox["id"], inbox_id.as_str());
}

#[tokio::test]
async fn unsupported_filter_and_orderby_rules() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.Read"]);
    let (s, code, _) = error_of(
        w.get(
            &token,
            &format!("users/{ALICE}/messages?$filter=subject eq 'x'"),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "InefficientFilter"));
    let (s, code, _) = error_of(
        w.get(
            &token,
            &format!(
                "users/{ALICE}/messages?$filter=isRead eq false&$orderby=receivedDateTime desc"
            ),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "InefficientFilter"));
    let ok = w
        .get_json(&token, &format!("users/{ALICE}/messages?$filter=receivedDateTime ge 2020-01-01T00:00:00Z and isRead eq false&$orderby=receivedDateTime desc"))
        .await;
    assert!(ok["value"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn delta_rounds_bring_new_and_removed_messages() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    for i in 0..3 {
        w.deliver(ALICE, &message(&format!("m{i}"), "x")).await;
    }
    w.wait_for_messages(&token, ALICE, "inbox", 3).await;
    let get = |url: String| {
        let w = &w;
        let token = token.clone();
        async move {
            let r = w
                .http
                .get(url)
                .bearer_auth(&token)
                .header("Prefer", "odata.maxpagesize=2")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["preference-applied"], "odata.maxpagesize=2");
            r.json::<Value>().await.unwrap()
        }
    };
    let p1 = get(w.url(&format!(
        "users/{ALICE}/mailFolders/inbox/messages/delta?$select=subject,isRead"
    )))
    .await;
    assert_eq!(p1["value"].as_array().unwrap().len(), 2);
    assert!(p1.get("@odata.deltaLink").is_none());
    let p2 = get(p1["@odata.nextLink"].as_str().unwrap().to_owned()).await;
    assert_eq!(p2["value"].as_array().unwrap().len(), 1);
    let delta_link = p2["@odata.deltaLink"].as_str().unwrap().to_owned();
    assert!(delta_link.contains("$deltatoken="), "{delta_link}");
    let mut seen: Vec<String> = ids(p1["value"].as_array().unwrap());
    seen.extend(ids(p2["value"].as_array().unwrap()));
    assert_eq!(p1["value"][0]["@odata.type"], "#microsoft.graph.message");
    assert!(p1["value"][0].get("body").is_none(), "$select is honoured");

    // Nothing changed: an empty round.
    let quiet = get(delta_link.clone()).await;
    assert!(quiet["value"].as_array().unwrap().is_empty());
    let delta_link = quiet["@odata.deltaLink"].as_str().unwrap().to_owned();

    // A new message arrives, one is deleted, one is read.
    w.deliver(ALICE, &message("m3 new", "x")).await;
    w.wait_for_messages(&token, ALICE, "inbox", 4).await;
    let r = w
        .http
        .delete(w.url(&format!("users/{ALICE}/messages/{}", seen[0])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = w
        .send_json(
            Method::PATCH,
            &token,
            &format!("users/{ALICE}/messages/{}", seen[1]),
            &json!({"isRead": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut changes = Vec::new();
    let mut url = delta_link;
    loop {
        let page = get(url.clone()).await;
        changes.extend(page["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = page["@odata.nextLink"].as_str() {
            url = next.to_owned();
        } else {
            break;
        }
    }
    assert_eq!(changes.len(), 3, "{changes:#?}");
    let removed: Vec<&Value> = changes
        .iter()
        .filter(|c| c.get("@removed").is_some())
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["id"], seen[0].as_str());
    assert_eq!(removed[0]["@removed"], json!({"reason": "deleted"}));
    assert!(
        changes
            .iter()
            .any(|c| c["subject"] == "m3 new" && c["isRead"] == false)
    );
    assert!(
        changes
            .iter()
            .any(|c| c["id"] == seen[1].as_str() && c["isRead"] == true)
    );

    // An unknown token asks for a full resync.
    let r = w
        .http
        .get(w.url(&format!(
            "users/{ALICE}/mailFolders/inbox/messages/delta?$deltatoken=bogus"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("location"));
    let (s, code, _) = error_of(r).await;
    assert_eq!((s, code.as_str()), (410, "syncStateNotFound"));
}

#[tokio::test]
async fn send_mail_json_delivers_and_keeps_a_sent_copy() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite", "Mail.Send"]);
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/sendMail"),
            &json!({
                "message": {
                    "subject": "Grüße 👋",
                    "body": {"contentType": "Text", "content": "Hej Bob, läget?"},
                    "toRecipients": [{"emailAddress": {"address": BOB, "name": "Bøb"}}],
                    "bccRecipients": [{"emailAddress": {"address": CAROL}}],
                    "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "hello.txt",
                                     "contentType": "text/plain", "contentBytes": "SGVsbG8gV29ybGQh"}]
                },
                "saveToSentItems": "true"
            }),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(r.bytes().await.unwrap().is_empty());
    let got = w.wait_for_messages(&token, BOB, "inbox", 1).await;
    assert_eq!(got[0]["subject"], "Grüße 👋");
    assert_eq!(got[0]["from"]["emailAddress"]["name"], "Alice Älvsjö");
    assert_eq!(got[0]["from"]["emailAddress"]["address"], ALICE);
    assert_eq!(got[0]["hasAttachments"], true);
    assert!(
        got[0]["body"]["content"]
            .as_str()
            .unwrap()
            .contains("läget?")
    );
    let att = w
        .get_json(
            &token,
            &format!(
                "users/{BOB}/messages/{}/attachments",
                got[0]["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(att["value"][0]["name"], "hello.txt");
    assert_eq!(att["value"][0]["contentBytes"], "SGVsbG8gV29ybGQh");
    let sent = w.wait_for_messages(&token, ALICE, "sentitems", 1).await;
    assert_eq!(sent[0]["subject"], "Grüße 👋");
    assert_eq!(sent[0]["isRead"], true);
    assert_eq!(
        sent[0]["bccRecipients"][0]["emailAddress"]["address"],
        CAROL
    );

    // Over IMAP: the same message in Bob's INBOX without the Bcc line, and in Alice's
    // Sent Items with it.
    let message_id = got[0]["internetMessageId"].as_str().unwrap().to_owned();
    let inbox = w.imap_messages(BOB, "INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].contains(&message_id), "{}", inbox[0]);
    assert!(inbox[0].contains("hello.txt"));
    assert!(!inbox[0].contains("\nBcc:"));
    let sent_imap = w.imap_messages(ALICE, "Sent Items").await;
    assert_eq!(sent_imap.len(), 1);
    assert!(sent_imap[0].contains(&message_id));
    assert!(
        sent_imap[0].contains(&format!("Bcc: {CAROL}")),
        "{}",
        sent_imap[0]
    );

    // saveToSentItems false: delivered, no copy.
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/sendMail"),
            &json!({"message": {"subject": "no copy", "toRecipients": [{"emailAddress": {"address": BOB}}]}, "saveToSentItems": false}),
        )
        .await;
    assert_eq!(r.status(), 202);
    w.wait_for_messages(&token, BOB, "inbox", 2).await;
    let sent = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/sentitems/messages"),
        )
        .await;
    assert_eq!(sent["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn send_mail_mime_delivers_and_rejects_bad_base64() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite", "Mail.Send"]);
    let mime = format!(
        "From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: =?UTF-8?B?w4Rsc2tsaW5nIE1JTUU=?=\r\n\r\nHello from MIME.\r\n"
    );
    let r = w
        .http
        .post(w.url(&format!("users/{ALICE}/sendMail")))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(base64_encode(mime.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = w.wait_for_messages(&token, BOB, "inbox", 1).await;
    assert_eq!(got[0]["subject"], "Älskling MIME");
    assert!(
        got[0]["internetMessageId"]
            .as_str()
            .unwrap()
            .contains("@contoso.example>")
    );
    w.wait_for_messages(&token, ALICE, "sentitems", 1).await;

    let r = w
        .http
        .post(w.url(&format!("users/{ALICE}/sendMail")))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("this is *not* base64!")
        .send()
        .await
        .unwrap();
    let (s, code, msg) = error_of(r).await;
    assert_eq!(
        (s, code.as_str()),
        (400, "ErrorMimeContentInvalidBase64String")
    );
    assert_eq!(msg, "Invalid base64 string for MIME content.");
}

#[tokio::test]
async fn twenty_megabyte_attachment_through_an_upload_session_arrives_intact() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite", "Mail.Send"]);
    let size: usize = 20 * 1024 * 1024 + 12345;
    let bytes: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let digest = mailbridge_testkit::crypto::sha256(&bytes);

    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/messages"),
            &json!({"subject": "big one", "body": {"contentType": "Text", "content": "see attached"},
                    "toRecipients": [{"emailAddress": {"address": BOB}}],
                    "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "note.txt",
                                     "contentType": "text/plain", "contentBytes": "bm90ZQ=="}]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let draft: Value = r.json().await.unwrap();
    assert_eq!(draft["isDraft"], true);
    let draft_id = draft["id"].as_str().unwrap();

    // Too small for a session.
    let (s, code, _) = error_of(
        w.send_json(Method::POST, &token, &format!("users/{ALICE}/messages/{draft_id}/attachments/createUploadSession"),
            &json!({"AttachmentItem": {"attachmentType": "file", "name": "small.bin", "size": 1000}})).await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
    );

    let r = w
        .send_json(Method::POST, &token, &format!("users/{ALICE}/messages/{draft_id}/attachments/createUploadSession"),
            &json!({"AttachmentItem": {"attachmentType": "file", "name": "data.bin", "size": size, "contentType": "application/octet-stream"}}))
        .await;
    assert_eq!(r.status(), 201);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["nextExpectedRanges"], json!(["0-"]));
    let upload_url = session["uploadUrl"].as_str().unwrap().to_owned();

    // A chunk that does not start where expected is refused and changes nothing.
    let r = w
        .http
        .put(&upload_url)
        .header("content-range", format!("bytes 5-9/{size}"))
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let chunk = 4 * 1024 * 1024;
    let mut start = 0;
    let mut location = String::new();
    while start < size {
        let end = (start + chunk).min(size);
        let r = w
            .http
            .put(&upload_url)
            .header(
                "content-range",
                format!("bytes {}-{}/{size}", start, end - 1),
            )
            .header("content-type", "application/octet-stream")
            .body(bytes[start..end].to_vec())
            .send()
            .await
            .unwrap();
        if end < size {
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["NextExpectedRanges"], json!([end.to_string()]));
        } else {
            assert_eq!(r.status(), 201);
            r.headers()["location"]
                .to_str()
                .unwrap()
                .clone_into(&mut location);
        }
        start = end;
    }

    // The Location names the new attachment of the draft.
    let attachment_id = location
        .split("/Attachments('")
        .nth(1)
        .unwrap()
        .trim_end_matches("')");
    let on_draft = w
        .get_json(
            &token,
            &format!("users/{ALICE}/messages/{draft_id}/attachments/{attachment_id}"),
        )
        .await;
    assert_eq!(on_draft["name"], "data.bin");
    assert_eq!(on_draft["size"], size);
    let draft_now = w
        .get_json(
            &token,
            &format!("users/{ALICE}/messages/{draft_id}?$select=hasAttachments"),
        )
        .await;
    assert_eq!(draft_now["hasAttachments"], true);

    let r = w
        .http
        .post(w.url(&format!("users/{ALICE}/messages/{draft_id}/send")))
        .bearer_auth(&token)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = w.wait_for_messages(&token, BOB, "inbox", 1).await;
    assert_eq!(got[0]["subject"], "big one");
    assert_eq!(got[0]["hasAttachments"], true);
    let list = w
        .get_json(
            &token,
            &format!(
                "users/{BOB}/messages/{}/attachments",
                got[0]["id"].as_str().unwrap()
            ),
        )
        .await;
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["note.txt", "data.bin"]);
    let att = &list["value"][1];
    assert_eq!(att["name"], "data.bin");
    assert_eq!(att["size"], size);
    let r = w
        .http
        .get(w.url(&format!(
            "users/{BOB}/messages/{}/attachments/{}/$value",
            got[0]["id"].as_str().unwrap(),
            att["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let received = r.bytes().await.unwrap();
    assert_eq!(received.len(), size);
    assert_eq!(mailbridge_testkit::crypto::sha256(&received), digest);
    // The draft is gone, the sent copy is in Sent Items.
    let drafts = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/drafts/messages"),
        )
        .await;
    assert!(drafts["value"].as_array().unwrap().is_empty());
    w.wait_for_messages(&token, ALICE, "sentitems", 1).await;
}

#[tokio::test]
async fn access_policy_applies_after_the_propagation_delay() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.Read"]);
    let now = w.emulator().now();
    let app_id = w.app.client_id;
    w.emulator().update(|m| {
        m.knobs.exchange_propagation_delay_secs = 1800;
        m.tenants[0].access_policies.push(ApplicationAccessPolicy {
            app_id,
            mode: AccessPolicyMode::RestrictAccess,
            mailboxes: vec![ALICE.to_owned()],
            added_at: Some(now),
        });
    });
    // Not propagated yet: Bob's mailbox still opens.
    w.get_json(&token, &format!("users/{BOB}/messages")).await;
    w.clock.advance(time::Duration::seconds(1801));
    let token = w.app_token(&["Mail.Read"]);
    let (s, code, msg) = error_of(w.get(&token, &format!("users/{BOB}/messages")).await).await;
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (403, "ErrorAccessDenied", "Access to OData is disabled.")
    );
    w.get_json(&token, &format!("users/{ALICE}/messages")).await;
}

#[tokio::test]
async fn delegated_access_to_own_and_full_access_mailboxes() {
    let w = World::start_with_mail().await;
    w.deliver(BOB, &message("for bob", "x")).await;
    let alice = w.user_token(ALICE, &["Mail.ReadWrite", "Mail.Read.Shared"]);
    w.get_json(&alice, "me/mailFolders/inbox/messages").await;
    let (s, _, _) = error_of(w.get(&alice, &format!("users/{BOB}/messages")).await).await;
    assert_eq!(s, 403);
    w.emulator().update(|m| {
        m.tenants[0].mailbox_permissions.push(MailboxPermission {
            mailbox: BOB.to_owned(),
            trustee: ALICE.to_owned(),
            right: MailboxRight::FullAccess,
            added_at: None,
        });
    });
    let list = w.wait_for_messages(&alice, BOB, "inbox", 1).await;
    assert_eq!(list[0]["subject"], "for bob");
}

#[tokio::test]
async fn permission_added_under_graph_instead_of_exchange_still_works_on_graph() {
    // The admin meant IMAP (Office 365 Exchange Online -> IMAP.AccessAsApp) but added
    // Microsoft Graph -> Mail.ReadWrite: IMAP refuses, Graph works.
    let w = World::start_with_mail().await;
    w.deliver(ALICE, &message("graph works", "x")).await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    let list = w.wait_for_messages(&token, ALICE, "inbox", 1).await;
    assert_eq!(list[0]["subject"], "graph works");
    // The mailbox answers under the user's object id too.
    let oid = w
        .emulator()
        .read(|m| m.user(ALICE).map(|(_, u)| u.object_id))
        .unwrap();
    let by_id = w.get_json(&token, &format!("users/{oid}/messages")).await;
    assert_eq!(by_id["value"][0]["id"], list[0]["id"]);
}

#[tokio::test]
async fn throttled_requests_leave_the_admitted_ones_working() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.Read"]);
    // The mailbox exists before the burst (its first opening creates the folders).
    w.get_json(&token, &format!("users/{ALICE}/messages")).await;
    let gate = mailbridge_testkit::graph::hold_requests(w.emulator());
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::spawn(
            w.http
                .get(w.url(&format!("users/{ALICE}/messages")))
                .bearer_auth(&token)
                .send(),
        ));
    }
    while mailbridge_testkit::graph::in_flight(w.emulator(), ALICE) < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = w.get(&token, &format!("users/{ALICE}/messages")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    drop(gate);
    for h in held {
        let r = h.await.unwrap().unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{text}\n{}", w.mail.as_ref().unwrap().logs());
    }
}

#[tokio::test]
async fn body_type_preference_and_personal_accounts() {
    let w = World::start_with_mail().await;
    let html = format!(
        "From: news@example.org\r\nTo: {PAT}\r\nSubject: newsletter\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Plain words\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Rich <b>words</b></p>\r\n--b--\r\n"
    );
    w.deliver(PAT, html.as_bytes()).await;
    let token = w.personal_token(PAT, &["Mail.Read"]);
    let list = w.wait_for_messages(&token, "me", "inbox", 1).await;
    assert_eq!(list[0]["body"]["contentType"], "html");
    assert!(
        list[0]["body"]["content"]
            .as_str()
            .unwrap()
            .contains("<b>words</b>")
    );
    let id = list[0]["id"].as_str().unwrap();
    let r = w
        .http
        .get(w.url(&format!("me/messages/{id}")))
        .bearer_auth(&token)
        .header("Prefer", "outlook.body-content-type=\"text\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["preference-applied"],
        "outlook.body-content-type=\"text\""
    );
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["body"]["contentType"], "text");
    assert_eq!(m["body"]["content"].as_str().unwrap().trim(), "Plain words");
}

#[tokio::test]
async fn attachment_added_to_a_draft_is_in_its_mime_and_keeps_its_id() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite", "Mail.Send"]);
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/messages"),
            &json!({"subject": "draft with file", "toRecipients": [{"emailAddress": {"address": BOB}}]}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let draft: Value = r.json().await.unwrap();
    let draft_id = draft["id"].as_str().unwrap().to_owned();
    assert_eq!(draft["hasAttachments"], false);
    let delta = w
        .get_json(
            &token,
            &format!("users/{ALICE}/mailFolders/drafts/messages/delta"),
        )
        .await;
    assert_eq!(delta["value"].as_array().unwrap().len(), 1);
    let delta_link = delta["@odata.deltaLink"].as_str().unwrap().to_owned();

    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/messages/{draft_id}/attachments"),
            &json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "small.txt",
                    "contentType": "text/plain", "contentBytes": base64_encode(b"tiny file")}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let att: Value = r.json().await.unwrap();
    assert_eq!(att["name"], "small.txt");

    // Same Graph id, now with the attachment, also in the MIME Dovecot holds.
    let now = w
        .get_json(&token, &format!("users/{ALICE}/messages/{draft_id}"))
        .await;
    assert_eq!(now["hasAttachments"], true);
    assert_ne!(now["changeKey"], draft["changeKey"]);
    let got = w
        .get_json(
            &token,
            &format!(
                "users/{ALICE}/messages/{draft_id}/attachments/{}",
                att["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(got["contentBytes"], base64_encode(b"tiny file"));
    let drafts = w.imap_messages(ALICE, "Drafts").await;
    assert_eq!(drafts.len(), 1);
    assert!(drafts[0].contains("small.txt"), "{}", drafts[0]);

    // Delta reports it as an update of the same message, not a removal.
    let changes = w.get_json(&token, &delta_link).await;
    let changes = changes["value"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["id"], draft_id.as_str());
    assert!(changes[0].get("@removed").is_none());

    // Received messages take no attachments.
    w.deliver(ALICE, &message("received", "x")).await;
    let inbox = w.wait_for_messages(&token, ALICE, "inbox", 1).await;
    let (s, code, _) = error_of(
        w.send_json(
            Method::POST,
            &token,
            &format!(
                "users/{ALICE}/messages/{}/attachments",
                inbox[0]["id"].as_str().unwrap()
            ),
            &json!({"@odata.type": "#microsoft.graph.fileAttachment", "name": "x.txt",
                    "contentBytes": base64_encode(b"x")}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "ErrorInvalidOperation"));

    // Sending delivers the attachment.
    let r = w
        .http
        .post(w.url(&format!("users/{ALICE}/messages/{draft_id}/send")))
        .bearer_auth(&token)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let bob = w.imap_messages_when(BOB, "INBOX", 1).await;
    assert!(bob[0].contains("small.txt"), "{}", bob[0]);
}

#[tokio::test]
async fn folders_can_be_created_used_and_deleted() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/mailFolders"),
            &json!({"displayName": "Rechnungen 2024 ✓"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let folder: Value = r.json().await.unwrap();
    assert_eq!(folder["displayName"], "Rechnungen 2024 ✓");
    let folder_id = folder["id"].as_str().unwrap().to_owned();
    let (s, code, _) = error_of(
        w.send_json(
            Method::POST,
            &token,
            &format!("users/{ALICE}/mailFolders"),
            &json!({"displayName": "Rechnungen 2024 ✓"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (409, "ErrorFolderExists"));

    w.deliver(ALICE, &message("invoice", "x")).await;
    let inbox = w.wait_for_messages(&token, ALICE, "inbox", 1).await;
    let r = w
        .send_json(
            Method::POST,
            &token,
            &format!(
                "users/{ALICE}/messages/{}/move",
                inbox[0]["id"].as_str().unwrap()
            ),
            &json!({"destinationId": folder_id}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let moved = w.wait_for_messages(&token, ALICE, &folder_id, 1).await;
    assert_eq!(moved[0]["subject"], "invoice");
    assert_eq!(moved[0]["parentFolderId"], folder_id.as_str());
    // Over IMAP the folder has its modified UTF-7 name and holds the message.
    let imap_name = mailbridge_testkit::mailstore::mutf7::encode("Rechnungen 2024 ✓");
    let there = w.imap_messages(ALICE, &imap_name).await;
    assert_eq!(there.len(), 1);
    assert!(there[0].contains("Subject: invoice"), "{}", there[0]);

    let (s, code, _) = error_of(
        w.http
            .delete(w.url(&format!("users/{ALICE}/mailFolders/inbox")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ErrorDeleteDistinguishedFolder"));
    let r = w
        .http
        .delete(w.url(&format!("users/{ALICE}/mailFolders/{folder_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let folders = w
        .get_json(&token, &format!("users/{ALICE}/mailFolders?$top=50"))
        .await;
    assert!(
        folders["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["id"] != folder_id.as_str())
    );
}

/// Graph takes at most five `internetMessageHeaders`: a sixth is a 400
/// `InvalidInternetMessageHeaderCollection`, on a draft and on `sendMail` alike.
#[tokio::test]
async fn more_than_five_internet_message_headers_are_refused() {
    let w = World::start_with_mail().await;
    let token = w.app_token(&["Mail.ReadWrite", "Mail.Send"]);
    let headers = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| serde_json::json!({ "name": format!("X-H{i}"), "value": "v" }))
            .collect()
    };
    let message = |n: usize| {
        serde_json::json!({
            "subject": "headers",
            "body": { "contentType": "Text", "content": "x" },
            "toRecipients": [{ "emailAddress": { "address": BOB } }],
            "internetMessageHeaders": headers(n),
        })
    };
    for (path, body) in [
        (format!("users/{ALICE}/messages"), message(6)),
        (
            format!("users/{ALICE}/sendMail"),
            serde_json::json!({ "message": message(6) }),
        ),
    ] {
        let r = w
            .http
            .post(w.url(&path))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "InvalidInternetMessageHeaderCollection");
        assert_eq!(
            v["error"]["message"],
            "Maximum number of headers in one message should be less than or equal to 5."
        );
    }
    let r = w
        .http
        .post(w.url(&format!("users/{ALICE}/messages")))
        .bearer_auth(&token)
        .json(&message(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
