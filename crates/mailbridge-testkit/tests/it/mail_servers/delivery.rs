//! One loop, every protocol real: SMTP submission -> Postfix -> LMTP -> Dovecot ->
//! IMAP and POP; and Exchange's SendAs rule at the end of DATA.

use mailbridge_testkit::mailservers::wire::LineClient;
use mailbridge_testkit::model::{MailboxPermission, MailboxRight};

use super::fixture::{
    ALICE, BOB, SHARED, World, imap_xoauth2, message, pop_xoauth2, smtp_xoauth2, world, world_with,
};

const APP_ROLES: &[&str] = &["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"];

/// Authenticates as `user` with an app-only token and sends `raw` from `from` to `to`;
/// the reply to the end of DATA.
async fn submit(
    w: &World,
    c: &mut LineClient,
    user: &str,
    from: &str,
    to: &str,
    raw: &[u8],
) -> String {
    let token = w.app_token(APP_ROLES);
    let r = smtp_xoauth2(c, user, &token).await;
    assert_eq!(r.code, 235, "{}", c.transcript());
    let r = c
        .smtp_command(&format!("MAIL FROM:<{from}>"))
        .await
        .unwrap();
    assert_eq!(r.code, 250, "{}", c.transcript());
    let r = c.smtp_command(&format!("RCPT TO:<{to}>")).await.unwrap();
    assert_eq!(r.code, 250, "{}", c.transcript());
    let r = c.smtp_command("DATA").await.unwrap();
    assert_eq!(r.code, 354, "{}", c.transcript());
    c.send_raw(&mailbridge_testkit::mailservers::wire::dot_stuff(raw))
        .await
        .unwrap();
    c.read_smtp_reply().await.unwrap().last().to_owned()
}

/// Waits (bounded) until `mailbox`'s INBOX holds `n` messages.
async fn wait_for_inbox(w: &World, mailbox: &str, n: usize) {
    let store = w.mail.mail_store();
    for _ in 0..300 {
        if store.list(mailbox, "INBOX").await.unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{mailbox} did not receive {n} message(s)\n{}",
        w.mail.logs()
    );
}

#[tokio::test]
async fn smtp_submission_is_read_over_imap_and_pop() {
    let w = world_with(|t, app| {
        t.mailbox_permissions.push(MailboxPermission {
            mailbox: BOB.into(),
            trustee: app.client_id.to_string(),
            right: MailboxRight::FullAccess,
            added_at: None,
        });
    })
    .await;
    let (mut c, _) = w.submission().await;
    let raw = message(ALICE, BOB, "Across the loop");
    let reply = submit(&w, &mut c, ALICE, ALICE, BOB, &raw).await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    wait_for_inbox(&w, BOB, 1).await;

    // IMAP, as the app with FullAccess on bob (trustee by app id).
    let mut imap = w.imaps().await;
    assert!(
        imap_xoauth2(&mut imap, BOB, &w.app_token(APP_ROLES))
            .await
            .starts_with("a1 OK")
    );
    let r = imap.imap_command("a2", "SELECT INBOX").await.unwrap();
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = imap
        .imap_command("a3", "UID FETCH 1:* (BODY.PEEK[])")
        .await
        .unwrap();
    let body = r.join("\n");
    assert!(body.contains("Subject: Across the loop"), "{body}");
    assert!(body.contains("\r\n.leading dot line\r\n"), "{body}");

    // POP, delegated as bob.
    let mut pop = w.pop3s().await;
    let ok = pop_xoauth2(&mut pop, BOB, &w.user_token(BOB, &["POP.AccessAsUser.All"])).await;
    assert!(ok.starts_with("+OK"), "{}", pop.transcript());
    assert!(pop.pop_command("STAT").await.unwrap().starts_with("+OK 1 "));
    assert!(pop.pop_command("RETR 1").await.unwrap().starts_with("+OK"));
    let lines = pop.read_pop_multiline().await.unwrap();
    assert!(
        lines.iter().any(|l| l == "Subject: Across the loop"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == ".leading dot line"), "{lines:?}");
}

#[tokio::test]
async fn sending_as_another_mailbox_needs_send_as() {
    let w = world().await;
    let (mut c, _) = w.submission().await;
    let reply = submit(
        &w,
        &mut c,
        ALICE,
        SHARED,
        BOB,
        &message(SHARED, BOB, "Spoof"),
    )
    .await;
    assert_eq!(
        reply,
        format!(
            "554 5.2.252 SendAsDenied; {ALICE} not allowed to send as {SHARED}; STOREDRV.Submit; Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message.[EndDiagnosticData] [Hostname=SN4PR0501CA0123.namprd05.prod.outlook.com]"
        )
    );
    let denied = w
        .emulator()
        .requests()
        .into_iter()
        .rfind(|r| r.surface == "smtp-sendas")
        .unwrap();
    assert_eq!(denied.header("x-verdict"), Some("deny"));

    // Add-RecipientPermission shared -Trustee <app> -AccessRights SendAs
    let app_id = w.app.client_id.to_string();
    w.emulator().update(|m| {
        m.tenants[0].mailbox_permissions.push(MailboxPermission {
            mailbox: SHARED.into(),
            trustee: app_id,
            right: MailboxRight::SendAs,
            added_at: None,
        });
    });
    let (mut c, _) = w.submission().await;
    let reply = submit(
        &w,
        &mut c,
        ALICE,
        SHARED,
        BOB,
        &message(SHARED, BOB, "Allowed"),
    )
    .await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    wait_for_inbox(&w, BOB, 1).await;
}

/// Authenticates as alice and starts a message to bob (MAIL, RCPT).
async fn open_session(w: &World) -> LineClient {
    let (mut c, _) = w.submission().await;
    let r = smtp_xoauth2(&mut c, ALICE, &w.app_token(APP_ROLES)).await;
    assert_eq!(r.code, 235, "{}", c.transcript());
    assert_eq!(
        c.smtp_command(&format!("MAIL FROM:<{ALICE}>"))
            .await
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        c.smtp_command(&format!("RCPT TO:<{BOB}>"))
            .await
            .unwrap()
            .code,
        250
    );
    c
}

async fn send_data(c: &mut LineClient) -> String {
    assert_eq!(c.smtp_command("DATA").await.unwrap().code, 354);
    c.send_raw(&mailbridge_testkit::mailservers::wire::dot_stuff(&message(
        ALICE, BOB, "Busy",
    )))
    .await
    .unwrap();
    c.read_smtp_reply().await.unwrap().last().to_owned()
}

#[tokio::test]
async fn a_fourth_concurrent_session_for_a_mailbox_is_deferred() {
    let w = world().await;
    let mut first = open_session(&w).await;
    let _second = open_session(&w).await;
    let _third = open_session(&w).await;
    let mut fourth = open_session(&w).await;
    assert_eq!(
        send_data(&mut fourth).await,
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=SN4PR0501CA0123.namprd05.prod.outlook.com]"
    );
    let throttled = w
        .emulator()
        .requests()
        .into_iter()
        .rfind(|r| r.surface == "smtp-throttle");
    assert_eq!(throttled.unwrap().header("x-open-sessions"), Some("4"));

    // One session ends; a new one goes through.
    assert!(send_data(&mut first).await.starts_with("250 "));
    assert_eq!(first.smtp_command("QUIT").await.unwrap().code, 221);
    drop(fourth);
    for _ in 0..100 {
        let mut c = open_session(&w).await;
        let reply = send_data(&mut c).await;
        if reply.starts_with("250 ") {
            return;
        }
        // The closed sessions' milter connections may take a moment to end.
        assert!(reply.starts_with("432 "), "{reply}");
        let _ = c.smtp_command("QUIT").await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("sessions were not released");
}

#[tokio::test]
async fn smtp_submission_is_read_through_graph_and_ews() {
    let w = world().await;
    let (mut c, _) = w.submission().await;
    let raw = message(ALICE, BOB, "Seen by every surface");
    let reply = submit(&w, &mut c, ALICE, ALICE, BOB, &raw).await;
    assert!(reply.starts_with("250 2.0.0 Ok"), "{reply}");
    wait_for_inbox(&w, BOB, 1).await;
    let http = reqwest::Client::new();
    let base = w.server.base_url();

    // Graph, app-only with Mail.Read.
    let graph = w.graph_app_token(&["Mail.Read"]);
    let list: serde_json::Value = http
        .get(format!(
            "{base}/v1.0/users/{BOB}/mailFolders/inbox/messages"
        ))
        .bearer_auth(&graph)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &list["value"][0];
    assert_eq!(message["subject"], "Seen by every surface", "{list}");
    assert_eq!(message["from"]["emailAddress"]["address"], ALICE);
    let id = message["id"].as_str().unwrap();
    let mime = http
        .get(format!("{base}/v1.0/users/{BOB}/messages/{id}/$value"))
        .bearer_auth(&graph)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(mime.contains("Subject: Seen by every surface"), "{mime}");

    // EWS, app-only with full_access_as_app and impersonation.
    let ews = w.app_token(&["full_access_as_app"]);
    let find = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2016" />
    <t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{BOB}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body>
    <m:FindItem Traversal="Shallow">
      <m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>
      <m:ParentFolderIds><t:DistinguishedFolderId Id="inbox" /></m:ParentFolderIds>
    </m:FindItem>
  </soap:Body>
</soap:Envelope>"#
    );
    let answer = http
        .post(format!("{base}/EWS/Exchange.asmx"))
        .bearer_auth(&ews)
        .header("content-type", "text/xml; charset=utf-8")
        .header("X-AnchorMailbox", BOB)
        .body(find)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let xml = answer.text().await.unwrap();
    assert!(xml.contains("ResponseClass=\"Success\""), "{xml}");
    assert!(xml.contains("Seen by every surface"), "{xml}");
}
