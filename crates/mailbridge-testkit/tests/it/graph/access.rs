//! Tokens, permissions, mailbox scoping, licensing, error envelope, throttling: the
//! answers a connector sees before any mail is touched.

use mailbridge_testkit::model::{AccessPolicyMode, ApplicationAccessPolicy};
use serde_json::{Value, json};

use super::support::{ALICE, BOB, CAROL, PAT, World, error_of};

const ACCESS_DENIED: &str = "Access is denied. Check credentials and try again.";

#[tokio::test]
async fn missing_token_is_401_with_the_envelope_and_correlation_headers() {
    let w = World::start().await;
    let r = w
        .http
        .get(w.url(&format!("users/{ALICE}/messages")))
        .header("client-request-id", "4f1c1f5e-1111-4222-8333-944444444444")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        www.contains("client_id=\"00000003-0000-0000-c000-000000000000\""),
        "{www}"
    );
    assert_eq!(
        r.headers()["client-request-id"],
        "4f1c1f5e-1111-4222-8333-944444444444"
    );
    let request_id = r.headers()["request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(v["error"]["message"], "Access token is empty.");
    let inner = &v["error"]["innerError"];
    assert_eq!(inner["request-id"], request_id.as_str());
    assert_eq!(
        inner["client-request-id"],
        "4f1c1f5e-1111-4222-8333-944444444444"
    );
    let date = inner["date"].as_str().unwrap();
    assert_eq!(date.len(), 19, "{date}");
    assert!(!date.ends_with('Z'));
}

#[tokio::test]
async fn garbage_wrong_audience_and_expired_tokens_are_401() {
    let w = World::start().await;
    let path = format!("users/{ALICE}/messages");
    let (s, code, msg) = error_of(w.get("not-a-jwt", &path).await).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert_eq!(msg, "CompactToken parsing failed with error code: 80049217");

    let exchange = w.exchange_app_token(&["Mail.ReadWrite", "full_access_as_app"]);
    let (s, code, msg) = error_of(w.get(&exchange, &path).await).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert_eq!(msg, "Access token validation failure. Invalid audience.");

    let token = w.app_token(&["Mail.ReadWrite"]);
    w.clock.advance(time::Duration::hours(2));
    let (s, code, msg) = error_of(w.get(&token, &path).await).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert_eq!(msg, "Access token has expired or is not yet valid.");
}

#[tokio::test]
async fn token_without_roles_after_missing_admin_consent_is_access_denied() {
    let w = World::start().await;
    let token = w.app_token(&[]);
    let (s, code, msg) = error_of(w.get(&token, &format!("users/{ALICE}/messages")).await).await;
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (403, "ErrorAccessDenied", ACCESS_DENIED)
    );
}

#[tokio::test]
async fn each_operation_needs_its_own_permission() {
    let w = World::start().await;
    let read_only = w.app_token(&["Mail.Read"]);
    let id = "AAMkADAwAAAAAAAAAAAAAAAAAAA=";
    let (s, code, _) = error_of(
        w.send_json(
            reqwest::Method::PATCH,
            &read_only,
            &format!("users/{ALICE}/messages/{id}"),
            &json!({"isRead": true}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
    let (s, code, _) = error_of(
        w.send_json(
            reqwest::Method::POST,
            &read_only,
            &format!("users/{ALICE}/sendMail"),
            &json!({"message": {"toRecipients": [{"emailAddress": {"address": BOB}}]}}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
    let send_only = w.app_token(&["Mail.Send"]);
    let (s, code, _) = error_of(w.get(&send_only, &format!("users/{ALICE}/messages")).await).await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
}

#[tokio::test]
async fn unknown_user_unlicensed_mailbox_and_app_only_me() {
    let w = World::start().await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    let (s, code, msg) =
        error_of(w.get(&token, "users/nobody@contoso.example/messages").await).await;
    assert_eq!((s, code.as_str()), (404, "ErrorInvalidUser"));
    assert_eq!(
        msg,
        "The requested user 'nobody@contoso.example' is invalid."
    );

    let (s, code, msg) = error_of(w.get(&token, &format!("users/{CAROL}/messages")).await).await;
    assert_eq!((s, code.as_str()), (404, "MailboxNotEnabledForRESTAPI"));
    assert_eq!(
        msg,
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
    );

    let (s, code, msg) = error_of(w.get(&token, "me/messages").await).await;
    assert_eq!((s, code.as_str()), (400, "BadRequest"));
    assert_eq!(
        msg,
        "/me request is only valid with delegated authentication flow."
    );
}

#[tokio::test]
async fn delegated_user_may_not_open_another_mailbox_without_full_access() {
    let w = World::start().await;
    let token = w.user_token(ALICE, &["Mail.Read", "Mail.Read.Shared"]);
    let (s, code, msg) = error_of(w.get(&token, &format!("users/{BOB}/messages")).await).await;
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (403, "ErrorAccessDenied", ACCESS_DENIED)
    );
    let no_mail_scope = w.user_token(ALICE, &["User.Read"]);
    let (s, code, _) = error_of(w.get(&no_mail_scope, "me/messages").await).await;
    assert_eq!((s, code.as_str()), (403, "ErrorAccessDenied"));
}

#[tokio::test]
async fn access_policy_that_excludes_the_mailbox_disables_odata() {
    let w = World::start().await;
    let app_id = w.app.client_id;
    w.emulator().update(|m| {
        m.tenants[0].access_policies.push(ApplicationAccessPolicy {
            app_id,
            mode: AccessPolicyMode::RestrictAccess,
            mailboxes: vec![ALICE.to_owned()],
            added_at: None,
        });
        m.tenants[0].access_policies.push(ApplicationAccessPolicy {
            app_id,
            mode: AccessPolicyMode::DenyAccess,
            mailboxes: vec![ALICE.to_owned()],
            added_at: None,
        });
    });
    let token = w.app_token(&["Mail.ReadWrite"]);
    for who in [ALICE, BOB] {
        let (s, code, msg) = error_of(w.get(&token, &format!("users/{who}/messages")).await).await;
        assert_eq!(
            (s, code.as_str(), msg.as_str()),
            (403, "ErrorAccessDenied", "Access to OData is disabled."),
            "{who}"
        );
    }
}

#[tokio::test]
async fn injected_faults_answer_429_and_503_with_retry_after() {
    let w = World::start().await;
    w.emulator().update_knobs(|k| {
        k.faults.graph_429 = 1;
        k.faults.graph_503 = 1;
        k.graph_retry_after_secs = 7;
    });
    let token = w.app_token(&["Mail.ReadWrite"]);
    let path = format!("users/{ALICE}/messages");
    let r = w.get(&token, &path).await;
    assert_eq!(r.headers()["retry-after"], "7");
    let (s, code, _) = error_of(r).await;
    assert_eq!((s, code.as_str()), (503, "ServiceNotAvailable"));
    let r = w.get(&token, &path).await;
    assert_eq!(r.headers()["retry-after"], "7");
    let (s, code, msg) = error_of(r).await;
    assert_eq!((s, code.as_str()), (429, "ApplicationThrottled"));
    assert_eq!(msg, "Application is over its MailboxConcurrency limit.");
}

#[tokio::test]
async fn request_budget_per_mailbox_runs_out_and_other_mailboxes_are_unaffected() {
    let w = World::start().await;
    w.emulator()
        .update_knobs(|k| k.graph_budget_per_mailbox = 2);
    let token = w.app_token(&["Mail.ReadWrite"]);
    let alice = format!("users/{ALICE}/mailFolders");
    for _ in 0..2 {
        assert_ne!(w.get(&token, &alice).await.status(), 429);
    }
    let r = w.get(&token, &alice).await;
    assert!(r.headers().contains_key("retry-after"));
    let (s, code, msg) = error_of(r).await;
    assert_eq!((s, code.as_str()), (429, "ApplicationThrottled"));
    assert_eq!(msg, "Application is over its request limit.");
    assert_ne!(
        w.get(&token, &format!("users/{BOB}/mailFolders"))
            .await
            .status(),
        429
    );
    // A new window opens once the budget window has passed.
    w.clock.advance(time::Duration::seconds(601));
    let fresh = w.app_token(&["Mail.ReadWrite"]);
    assert_ne!(w.get(&fresh, &alice).await.status(), 429);
}

#[tokio::test]
async fn unknown_segments_and_upload_urls_are_refused() {
    let w = World::start().await;
    let token = w.app_token(&["Mail.ReadWrite"]);
    let (s, code, msg) = error_of(w.get(&token, &format!("users/{ALICE}/calendar")).await).await;
    assert_eq!((s, code.as_str()), (400, "BadRequest"));
    assert_eq!(msg, "Resource not found for the segment 'calendar'.");
    let r = w
        .http
        .put(format!(
            "{}/api/v2.0/Users('x')/Messages('y')/AttachmentSessions('z')?authtoken=nope",
            w.server.base_url()
        ))
        .header("content-range", "bytes 0-0/1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn fifth_request_in_flight_for_one_mailbox_is_throttled() {
    let w = World::start().await;
    w.emulator().update_knobs(|k| k.graph_retry_after_secs = 3);
    let token = w.app_token(&["Mail.ReadWrite"]);
    let gate = mailbridge_testkit::graph::hold_requests(w.emulator());
    let mut held = Vec::new();
    for _ in 0..4 {
        let request = w
            .http
            .get(w.url(&format!("users/{ALICE}/mailFolders")))
            .bearer_auth(&token)
            .send();
        held.push(tokio::spawn(request));
    }
    while mailbridge_testkit::graph::in_flight(w.emulator(), ALICE) < 4 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = w.get(&token, &format!("users/{ALICE}/mailFolders")).await;
    assert_eq!(r.headers()["retry-after"], "3");
    let (s, code, msg) = error_of(r).await;
    assert_eq!((s, code.as_str()), (429, "ApplicationThrottled"));
    assert_eq!(msg, "Application is over its MailboxConcurrency limit.");
    // Another mailbox has its own four slots.
    let other = w
        .http
        .get(w.url(&format!("users/{BOB}/mailFolders")))
        .bearer_auth(&token)
        .send();
    let other = tokio::spawn(other);
    while mailbridge_testkit::graph::in_flight(w.emulator(), BOB) < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(gate);
    for h in held {
        assert_ne!(h.await.unwrap().unwrap().status(), 429);
    }
    assert_ne!(other.await.unwrap().unwrap().status(), 429);
    assert_eq!(mailbridge_testkit::graph::in_flight(w.emulator(), ALICE), 0);
    assert_ne!(
        w.get(&token, &format!("users/{ALICE}/mailFolders"))
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn delegated_send_from_another_mailbox_needs_send_as() {
    let w = World::start().await;
    let token = w.user_token(ALICE, &["Mail.Send", "Mail.Send.Shared"]);
    let (s, code, msg) = error_of(
        w.send_json(
            reqwest::Method::POST,
            &token,
            &format!("users/{BOB}/sendMail"),
            &json!({"message": {"toRecipients": [{"emailAddress": {"address": ALICE}}]}}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "ErrorSendAsDenied"));
    assert_eq!(
        msg,
        "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."
    );
}

#[tokio::test]
async fn expired_personal_account_ticket_is_a_compact_token_failure() {
    let w = World::start().await;
    let token = w.personal_token(PAT, &["Mail.Read"]);
    assert!(token.starts_with("EwB"), "{token}");
    w.clock.advance(time::Duration::hours(2));
    let (s, code, msg) = error_of(w.get(&token, "me/messages").await).await;
    assert_eq!((s, code.as_str()), (401, "InvalidAuthenticationToken"));
    assert_eq!(
        msg,
        "CompactToken validation failed with reason code: 80049228."
    );
}
