//! The device-code flow: the verification page driven like a browser while another task
//! polls the token endpoint.

use serde_json::Value;

use super::support::{World, assert_aad, browser, get, sign_in, submit, token, world, world_with};

const SCOPE: &str = "offline_access https://outlook.office.com/IMAP.AccessAsUser.All";

async fn start(w: &World, tenant: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(w.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[
            ("client_id", w.desktop.client_id.to_string().as_str()),
            ("scope", SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn poll(w: &World, tenant: &str, device_code: &str) -> reqwest::Response {
    token(
        w,
        tenant,
        &[
            ("client_id", &w.desktop.client_id.to_string()),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

/// Enters the code and signs in; returns the page after the sign-in (MFA done).
async fn enter_code_and_sign_in(
    w: &World,
    client: &reqwest::Client,
    user_code: &str,
    upn: &str,
) -> String {
    let (s, _, page) = get(client, &w.url("/devicelogin")).await;
    assert_eq!(s, 200);
    let (_, _, signin) = submit(client, &w.base, &page, &[("otc", user_code)]).await;
    let (_, _, next) = sign_in(client, w, &signin, upn, None).await;
    next
}

#[tokio::test]
async fn device_code_pending_then_success_while_the_browser_signs_in() {
    let w = world().await;
    let started = start(&w, "organizations").await;
    let user_code = started["user_code"].as_str().unwrap().to_owned();
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let verification = format!("{}/devicelogin", w.base);
    assert_eq!(started["verification_uri"], verification);
    assert_eq!(started["expires_in"], 900);
    assert_eq!(started["interval"], 5);
    assert_eq!(
        started["message"],
        format!(
            "To sign in, use a web browser to open the page {verification} and enter the code {user_code} to authenticate."
        )
    );

    assert_aad(
        poll(&w, "organizations", &device_code).await,
        400,
        "authorization_pending",
        70016,
        Some("The provided request has not yet been authorized by the user. The user must input their code."),
    )
    .await;

    let w = std::sync::Arc::new(w);
    let poller = {
        let w = w.clone();
        let device_code = device_code.clone();
        tokio::spawn(async move {
            let mut pending = 0;
            loop {
                let resp = poll(&w, "organizations", &device_code).await;
                if resp.status() == 200 {
                    return (pending, resp.json::<Value>().await.unwrap());
                }
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"], "authorization_pending", "{body}");
                pending += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };

    let client = browser();
    let confirm = enter_code_and_sign_in(
        &w,
        &client,
        &user_code.to_lowercase(),
        "alice@contoso.example",
    )
    .await;
    assert!(
        confirm.contains("Are you trying to sign in to Mail connector?"),
        "{confirm}"
    );
    let (_, _, consent) = submit(&client, &w.base, &confirm, &[("accept", "true")]).await;
    assert!(consent.contains("Permissions requested"));
    let (_, _, done) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    assert!(done.contains(
        "You have signed in to the Mail connector application on your device. You may now close this window."
    ));

    let (_, body) = poller.await.unwrap();
    assert!(body["refresh_token"].is_string());
    let claims = super::support::verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["upn"], "alice@contoso.example");
    assert_eq!(claims["aud"], "https://outlook.office.com");

    // Polling a finished code.
    assert_aad(
        poll(&w, "organizations", &device_code).await,
        400,
        "invalid_grant",
        90120,
        Some("The request was already authorized or declined."),
    )
    .await;
}

#[tokio::test]
async fn device_code_slow_down_expiry_decline_and_bad_code() {
    let w = world_with(|m| m.knobs.device_code_slow_down_polls = 2).await;
    let started = start(&w, &w.tid).await;
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let resp = poll(&w, &w.tid, &device_code).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "slow_down");
    }
    let body: Value = poll(&w, &w.tid, &device_code).await.json().await.unwrap();
    assert_eq!(body["error"], "authorization_pending");

    w.advance(901);
    assert_aad(
        poll(&w, &w.tid, &device_code).await,
        400,
        "expired_token",
        70020,
        Some("The provided value for the input parameter 'device_code' is not valid. This device code has expired."),
    )
    .await;
    // The page refuses the expired code too.
    let client = browser();
    let (_, _, page) = get(&client, &w.url("/devicelogin")).await;
    let (_, _, page) = submit(
        &client,
        &w.base,
        &page,
        &[("otc", started["user_code"].as_str().unwrap())],
    )
    .await;
    assert!(
        super::support::page_error(&page)
            .unwrap()
            .contains("AADSTS70019")
    );

    // Declined on the confirmation page.
    let started = start(&w, &w.tid).await;
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let client = browser();
    let confirm = enter_code_and_sign_in(
        &w,
        &client,
        started["user_code"].as_str().unwrap(),
        "alice@contoso.example",
    )
    .await;
    let (_, _, page) = submit(&client, &w.base, &confirm, &[("accept", "false")]).await;
    assert!(page.contains("declined"));
    let body: Value = poll(&w, &w.tid, &device_code).await.json().await.unwrap();
    assert_eq!(body["error"], "authorization_declined");
    assert_aad(
        poll(&w, &w.tid, &device_code).await,
        400,
        "invalid_grant",
        90120,
        None,
    )
    .await;

    // Unknown device code.
    assert_aad(
        poll(&w, &w.tid, "DAQABAAEAAAD--nonsense").await,
        400,
        "bad_verification_code",
        70018,
        None,
    )
    .await;

    // A wrong user code on the page.
    let (_, _, page) = get(&client, &w.url("/devicelogin")).await;
    let (_, _, page) = submit(&client, &w.base, &page, &[("otc", "NOPE12345")]).await;
    assert_eq!(
        super::support::page_error(&page).unwrap(),
        "That code didn't work. Check the code and try again."
    );
}

#[tokio::test]
async fn device_code_declined_on_consent() {
    let w = world().await;
    let started = start(&w, &w.tid).await;
    let device_code = started["device_code"].as_str().unwrap().to_owned();
    let client = browser();
    let confirm = enter_code_and_sign_in(
        &w,
        &client,
        started["user_code"].as_str().unwrap(),
        "alice@contoso.example",
    )
    .await;
    let (_, _, consent) = submit(&client, &w.base, &confirm, &[("accept", "true")]).await;
    let (_, _, _) = submit(&client, &w.base, &consent, &[("accept", "false")]).await;
    let resp = poll(&w, &w.tid, &device_code).await;
    assert_aad(resp, 400, "authorization_declined", 65004, None).await;
}
