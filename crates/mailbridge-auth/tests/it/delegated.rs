//! Delegated sign-in: the loopback browser flow, device code and paste-the-URL driven
//! through the emulator's pages; refresh-token rotation and which failures mark an
//! account as needing sign-in.

use std::sync::Arc;
use std::time::Duration;

use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::interactive::{AuthorizationRequest, loopback_sign_in};
use mailbridge_auth::scopes::{Grant, Transport, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions, TokenStore};
use mailbridge_testkit::robot::Person;
use mailbridge_types::ErrorClass;
use secrecy::ExposeSecret;

use crate::support::{MemoryStore, PASSWORD, World, claims, world};

fn imap_scopes() -> Vec<String> {
    scopes_for(
        Transport::Imap,
        Grant::Delegated,
        "https://graph.microsoft.com",
    )
}

fn smtp_scopes() -> Vec<String> {
    scopes_for(
        Transport::Smtp,
        Grant::Delegated,
        "https://graph.microsoft.com",
    )
}

/// Runs the loopback sign-in with a robot in the browser's place.
async fn browser_sign_in(w: &World, person: Person) -> (mailbridge_auth::token::TokenSet, String) {
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let robot = tokio::spawn(async move {
        let url = url_rx.await.unwrap();
        person.authorize(&url).await.unwrap()
    });
    let tokens = loopback_sign_in(
        &w.client(),
        &w.desktop_app(),
        &w.authority("contoso.example"),
        &imap_scopes(),
        &smtp_scopes(),
        Some("alice@contoso.example"),
        Duration::from_secs(30),
        move |url| {
            let _ = url_tx.send(url.to_owned());
        },
    )
    .await
    .unwrap();
    let page = robot.await.unwrap();
    (tokens, page.body)
}

#[tokio::test]
async fn loopback_browser_sign_in_with_mfa_shows_signed_in_page() {
    let w = world().await;
    let mut bob = Person::new("bob@contoso.example", PASSWORD);
    bob.mfa_code = Some("123456".into());
    let (tokens, page) = browser_sign_in(&w, bob).await;
    assert!(
        page.contains("Signed in as bob@contoso.example. You can close this tab."),
        "{page}"
    );
    let c = claims(tokens.access_token.expose_secret());
    assert_eq!(c["aud"], "https://outlook.office.com");
    assert_eq!(c["upn"], "bob@contoso.example");
    assert!(c["scp"].as_str().unwrap().contains("IMAP.AccessAsUser.All"));
    assert!(tokens.refresh_token.is_some());
    // PKCE S256 went over the wire.
    let authorize = &w.emulator().requests_to("/oauth2/v2.0/authorize")[0];
    assert_eq!(
        authorize.param("code_challenge_method").as_deref(),
        Some("S256")
    );
    let token = &w.emulator().requests_to("/oauth2/v2.0/token")[0];
    assert!(token.param("code_verifier").is_some_and(|v| v.len() == 43));
    assert!(
        token
            .param("redirect_uri")
            .unwrap()
            .starts_with("http://localhost:")
    );
}

#[tokio::test]
async fn declined_consent_gives_an_error_page_and_a_clear_error() {
    let w = world().await;
    let mut alice = Person::new("alice@contoso.example", PASSWORD);
    alice.consent = false;
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
    let robot = tokio::spawn(async move { alice.authorize(&url_rx.await.unwrap()).await.unwrap() });
    let err = loopback_sign_in(
        &w.client(),
        &w.desktop_app(),
        &w.authority("contoso.example"),
        &imap_scopes(),
        &[],
        None,
        Duration::from_secs(30),
        move |url| {
            let _ = url_tx.send(url.to_owned());
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("AADSTS65004"), "{err}");
    let page = robot.await.unwrap();
    assert_eq!(page.status, 400);
    assert!(page.body.contains("Sign-in failed"), "{}", page.body);
}

#[tokio::test]
async fn device_code_sign_in_while_the_user_enters_the_code() {
    let w = world().await;
    w.emulator()
        .update_knobs(|k| k.device_code_interval_secs = 1);
    let client = w.client();
    let app = w.desktop_app();
    let authority = w.authority("contoso.example");
    let code = client
        .start_device_code(&app, &authority, &imap_scopes())
        .await
        .unwrap();
    assert!(code.message.contains(&code.user_code));
    let alice = Person::new("alice@contoso.example", PASSWORD);
    let uri = code.verification_uri.clone();
    let user_code = code.user_code.clone();
    let robot = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        alice.device_login(&uri, &user_code).await.unwrap()
    });
    let tokens = client
        .poll_device_code(&app, &authority, &code)
        .await
        .unwrap();
    let done = robot.await.unwrap();
    assert!(
        done.body.contains("You may now close this window"),
        "{}",
        done.body
    );
    assert_eq!(
        claims(tokens.access_token.expose_secret())["upn"],
        "alice@contoso.example"
    );
    let polls = w.emulator().requests_to("/oauth2/v2.0/token");
    assert!(polls.len() >= 2, "polled while pending");
    assert_eq!(polls[0].status, 400);
}

#[tokio::test]
async fn device_code_obeys_slow_down() {
    let w = world().await;
    w.emulator().update_knobs(|k| {
        k.device_code_interval_secs = 1;
        k.device_code_slow_down_polls = 1;
    });
    let client = w.client();
    let app = w.desktop_app();
    let authority = w.authority("contoso.example");
    let code = client
        .start_device_code(&app, &authority, &imap_scopes())
        .await
        .unwrap();
    let alice = Person::new("alice@contoso.example", PASSWORD);
    let (uri, user_code) = (code.verification_uri.clone(), code.user_code.clone());
    let robot = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        alice.device_login(&uri, &user_code).await.unwrap()
    });
    client
        .poll_device_code(&app, &authority, &code)
        .await
        .unwrap();
    robot.await.unwrap();
    let polls = w.emulator().requests_to("/oauth2/v2.0/token");
    assert!(polls.len() >= 2);
    // After slow_down the interval grew by 5 s (RFC 8628).
    assert!(
        polls[1].at - polls[0].at >= time::Duration::seconds(6),
        "{:?}",
        polls[1].at - polls[0].at
    );
}

#[tokio::test]
async fn pasted_redirect_url_completes_the_sign_in() {
    let w = world().await;
    let request = AuthorizationRequest::new(
        &w.desktop.client_id.to_string(),
        &w.authority("contoso.example"),
        &imap_scopes(),
        "http://localhost/",
        None,
    );
    let page = Person::new("alice@contoso.example", PASSWORD)
        .authorize(&request.url)
        .await
        .unwrap();
    // Nothing listens on http://localhost/: the person copies the address bar.
    assert!(
        page.url.starts_with("http://localhost/?code="),
        "{}",
        page.url
    );
    let code = request.code_from_redirect(&page.url).unwrap();
    let tokens = request
        .redeem(
            &w.client(),
            &w.desktop_app(),
            &w.authority("contoso.example"),
            &code,
        )
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
}

async fn signed_in_sessions(w: &World) -> (Sessions<MemoryStore>, Arc<MemoryStore>, AccountSignIn) {
    let (tokens, _) = browser_sign_in(w, Person::new("alice@contoso.example", PASSWORD)).await;
    let store = Arc::new(MemoryStore::default());
    let sessions = Sessions::new(
        w.client(),
        store.clone(),
        RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
        },
    );
    sessions.persist("alice", &tokens).await.unwrap();
    let sign_in = AccountSignIn {
        account: "alice".into(),
        app: w.desktop_app(),
        authority: w.authority("contoso.example"),
        scopes: smtp_scopes(),
        delegated: true,
    };
    (sessions, store, sign_in)
}

#[tokio::test]
async fn refresh_rotates_and_the_new_refresh_token_is_stored_before_use() {
    let w = world().await;
    w.emulator()
        .update_knobs(|k| k.revoke_rotated_refresh_tokens = true);
    let (sessions, store, sign_in) = signed_in_sessions(&w).await;
    let first_rt = store.load_refresh_token("alice").await.unwrap().unwrap();
    // A token for another resource (SMTP) from the refresh token consented at sign-in.
    let token = sessions.access_token(&sign_in).await.unwrap();
    assert!(
        claims(token.expose_secret())["scp"]
            .as_str()
            .unwrap()
            .contains("SMTP.Send")
    );
    let second_rt = store.load_refresh_token("alice").await.unwrap().unwrap();
    assert_ne!(
        first_rt.expose_secret(),
        second_rt.expose_secret(),
        "rotated"
    );
    // The old one no longer works (knob), the stored one does.
    let err = w
        .client()
        .refresh(
            &w.desktop_app(),
            &w.authority("contoso.example"),
            &first_rt,
            &smtp_scopes(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsSignIn);
    w.clock.advance(time::Duration::hours(2));
    sessions.access_token(&sign_in).await.unwrap();
    assert!(store.needs_sign_in.lock().unwrap().is_empty());
}

#[tokio::test]
async fn transient_failure_keeps_tokens_and_does_not_ask_for_sign_in() {
    let w = world().await;
    let (sessions, store, sign_in) = signed_in_sessions(&w).await;
    let before = store.load_refresh_token("alice").await.unwrap().unwrap();
    w.emulator().update_knobs(|k| k.faults.token_5xx = 10);
    let err = sessions.access_token(&sign_in).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(store.needs_sign_in.lock().unwrap().is_empty(), "not marked");
    let after = store.load_refresh_token("alice").await.unwrap().unwrap();
    assert_eq!(before.expose_secret(), after.expose_secret(), "kept");
    // Once the service is back, the same refresh token works.
    w.emulator().update_knobs(|k| k.faults.token_5xx = 0);
    sessions.access_token(&sign_in).await.unwrap();
}

#[tokio::test]
async fn idle_refresh_token_marks_the_account_as_needing_sign_in() {
    let w = world().await;
    let (sessions, store, sign_in) = signed_in_sessions(&w).await;
    w.clock.advance(time::Duration::days(91));
    let err = sessions.access_token(&sign_in).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsSignIn);
    assert!(err.to_string().contains("AADSTS700082"), "{err}");
    let reason = store
        .needs_sign_in
        .lock()
        .unwrap()
        .get("alice")
        .cloned()
        .unwrap();
    assert!(reason.contains("mailbridge auth login"), "{reason}");
}

#[tokio::test]
async fn mfa_turned_on_after_sign_in_needs_a_new_sign_in() {
    let w = world().await;
    let (sessions, store, sign_in) = signed_in_sessions(&w).await;
    w.emulator().update(|m| {
        m.tenants[0]
            .user_mut("alice@contoso.example")
            .unwrap()
            .mfa_required = true;
    });
    let err = sessions.access_token(&sign_in).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::NeedsSignIn);
    assert!(err.to_string().contains("AADSTS50076"), "{err}");
    assert!(store.needs_sign_in.lock().unwrap().contains_key("alice"));
}

#[tokio::test]
async fn personal_outlook_account_signs_in_through_consumers_with_an_opaque_token() {
    use mailbridge_testkit::model::{SignInAudience, Tenant, User};
    let w = crate::support::world_with(|m| {
        m.tenants[0].apps[0].audience = SignInAudience::MultiTenantAndPersonal;
        m.tenants.push(
            Tenant::personal_accounts("outlook.example").with_user(User::new(
                "pat@outlook.example",
                "Pat",
                PASSWORD,
            )),
        );
    })
    .await;
    let request = AuthorizationRequest::new(
        &w.desktop.client_id.to_string(),
        &w.authority("consumers"),
        &imap_scopes(),
        "http://localhost/",
        None,
    );
    let page = Person::new("pat@outlook.example", PASSWORD)
        .authorize(&request.url)
        .await
        .unwrap();
    let code = request.code_from_redirect(&page.url).unwrap();
    let tokens = request
        .redeem(
            &w.client(),
            &w.desktop_app(),
            &w.authority("consumers"),
            &code,
        )
        .await
        .unwrap();
    let access = tokens.access_token.expose_secret();
    assert!(access.starts_with("EwB"), "opaque personal-account token");
    assert!(mailbridge_auth::claims::TokenClaims::decode(access).is_none());
    // Its refresh token works on consumers.
    let rt = tokens.refresh_token.unwrap();
    w.client()
        .refresh(
            &w.desktop_app(),
            &w.authority("consumers"),
            &rt,
            &imap_scopes(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn device_code_sign_in_names_the_user_from_its_id_token() {
    let w = world().await;
    w.emulator()
        .update_knobs(|k| k.device_code_interval_secs = 1);
    let client = w.client();
    let app = w.desktop_app();
    let authority = w.authority("contoso.example");
    let code = client
        .start_device_code(&app, &authority, &imap_scopes())
        .await
        .unwrap();
    let asked = &w.emulator().requests_to("/oauth2/v2.0/devicecode")[0];
    let scope = asked.param("scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "openid"), "{scope}");
    assert!(scope.split(' ').any(|s| s == "profile"), "{scope}");
    let mut bob = Person::new("bob@contoso.example", PASSWORD);
    bob.mfa_code = Some("123456".into());
    let (uri, user_code) = (code.verification_uri.clone(), code.user_code.clone());
    let robot = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        bob.device_login(&uri, &user_code).await.unwrap()
    });
    let tokens = client
        .poll_device_code(&app, &authority, &code)
        .await
        .unwrap();
    robot.await.unwrap();
    assert!(tokens.id_token.is_some());
    let user = mailbridge_auth::claims::signed_in_user(
        tokens.id_token.as_deref(),
        tokens.access_token.expose_secret(),
    )
    .unwrap();
    assert_eq!(user.name, "bob@contoso.example");
    assert_eq!(user.source, mailbridge_auth::claims::UserSource::IdToken);
    assert!(!user.is("alice@contoso.example"));
}
