//! Authorization code + PKCE through the HTML pages, refresh-token rotation, and the
//! error answers of /authorize and of code redemption.

use serde_json::Value;

use super::support::{
    CHALLENGE, IMAP_SCOPE, assert_aad, authorize_code, authorize_url, browser, form, get, location,
    page_error, query, redeem, sign_in, submit, token, verified_claims, world, world_with,
};

#[tokio::test]
async fn loopback_code_flow_with_mfa_and_consent_then_refresh_rotates() {
    let w = world().await;
    let client = browser();
    let (s, _, html) = get(
        &client,
        &authorize_url(&w, "organizations", IMAP_SCOPE, &[]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(html.contains("Mail connector"));
    // Bob needs MFA: wrong code first, then the right one.
    let (_, _, mfa) = sign_in(&client, &w, &html, "bob@contoso.example", None).await;
    assert!(mfa.contains("action=\"/login/mfa\""), "{mfa}");
    let (_, _, mfa_again) = submit(&client, &w.base, &mfa, &[("otc", "000000")]).await;
    assert!(page_error(&mfa_again).unwrap().starts_with("AADSTS500121"));
    let (s, _, consent) = submit(&client, &w.base, &mfa_again, &[("otc", "123456")]).await;
    assert_eq!(s, 200);
    assert!(consent.contains("Permissions requested"), "{consent}");
    assert!(consent.contains("Office 365 Exchange Online"));
    assert!(consent.contains("IMAP.AccessAsUser.All"));
    assert!(consent.contains("SMTP.Send"));
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    let back = location(s, &h);
    assert_eq!(
        back.as_str().split('?').next().unwrap(),
        "http://localhost:53682/"
    );
    assert_eq!(query(&back, "state").as_deref(), Some("12345"));
    let code = query(&back, "code").unwrap();
    assert!(code.starts_with("0.A"));

    // Consent was recorded.
    let recorded = w.emulator().read(|m| m.tenants[0].user_consents.clone());
    assert_eq!(recorded.len(), 1);
    assert!(
        recorded[0]
            .scopes
            .contains(&"IMAP.AccessAsUser.All".to_owned())
    );

    let resp = redeem(&w, "organizations", &code, None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert_eq!(
        body["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send"
    );
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://outlook.office.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{}/", w.tid));
    assert_eq!(claims["tid"], w.tid);
    assert_eq!(claims["upn"], "bob@contoso.example");
    assert_eq!(claims["appid"], w.desktop.client_id.to_string());
    assert_eq!(claims["appidacr"], "0");
    let scp = claims["scp"].as_str().unwrap();
    assert!(
        scp.split(' ').any(|s| s == "IMAP.AccessAsUser.All"),
        "{scp}"
    );
    let bob_oid = w
        .emulator()
        .read(|m| m.tenants[0].users[1].object_id.to_string());
    assert_eq!(claims["oid"], bob_oid);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3599);
    let id_token = verified_claims(&w, body["id_token"].as_str().unwrap()).await;
    assert_eq!(id_token["aud"], w.desktop.client_id.to_string());
    assert_eq!(id_token["ver"], "2.0");
    assert_eq!(id_token["preferred_username"], "bob@contoso.example");
    assert_eq!(id_token["iss"], format!("{}/{}/v2.0", w.base, w.tid));

    // The code is single use.
    assert_aad(
        redeem(&w, "organizations", &code, None).await,
        400,
        "invalid_grant",
        54005,
        Some("OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."),
    )
    .await;

    // Refresh twice: each use returns a new refresh token; by default the old one keeps working.
    let id = w.desktop.client_id.to_string();
    let rt1 = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        let id = id.clone();
        let w = &w;
        async move {
            token(
                w,
                "organizations",
                &[
                    ("client_id", &id),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    (
                        "scope",
                        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
                    ),
                ],
            )
            .await
        }
    };
    let r2: Value = refresh(rt1.clone()).await.json().await.unwrap();
    let rt2 = r2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt2, rt1);
    let r3: Value = refresh(rt2.clone()).await.json().await.unwrap();
    let rt3 = r3["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt3, rt2);
    assert_eq!(
        refresh(rt1.clone()).await.status(),
        200,
        "old token still valid by default"
    );

    // With the knob, a rotated refresh token stops working.
    w.emulator()
        .update_knobs(|k| k.revoke_rotated_refresh_tokens = true);
    let r4: Value = refresh(rt3.clone()).await.json().await.unwrap();
    assert!(r4["refresh_token"].is_string());
    assert_aad(refresh(rt3).await, 400, "invalid_grant", 70000, None).await;

    // A scope for another resource yields a token for that resource.
    let rt4 = r4["refresh_token"].as_str().unwrap().to_owned();
    let graph: Value = token(
        &w,
        "organizations",
        &[
            ("client_id", &id),
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt4),
            ("scope", "https://graph.microsoft.com/IMAP.AccessAsUser.All"),
        ],
    )
    .await
    .json()
    .await
    .unwrap();
    let claims = verified_claims(&w, graph["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
}

#[tokio::test]
async fn tokens_follow_the_requested_oidc_scopes() {
    let w = world().await;
    let client = browser();
    let back = authorize_code(
        &w,
        &client,
        &w.tid,
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "alice@contoso.example",
        None,
    )
    .await;
    let body: Value = redeem(&w, &w.tid, &query(&back, "code").unwrap(), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(body["access_token"].is_string());
    assert!(body.get("id_token").is_none(), "no openid, no id_token");
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_access, no refresh_token"
    );

    // Signed in already: single sign-on, consent given, straight back with a code.
    let (s, h, _) = get(
        &client,
        &authorize_url(
            &w,
            &w.tid,
            "openid https://outlook.office.com/IMAP.AccessAsUser.All",
            &[("prompt", "none")],
        ),
    )
    .await;
    let back = location(s, &h);
    let code = query(&back, "code").expect("silent sign-in succeeds");
    let resp = reqwest::Client::new()
        .post(w.token_url(&w.tid))
        .form(&[
            ("client_id", w.desktop.client_id.to_string().as_str()),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:53682/"),
            ("code_verifier", super::support::VERIFIER),
            ("client_info", "1"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["id_token"].is_string());
    let info =
        mailbridge_testkit::crypto::b64url_decode(body["client_info"].as_str().unwrap()).unwrap();
    let info: Value = serde_json::from_slice(&info).unwrap();
    assert_eq!(info["utid"], w.tid);
}

#[tokio::test]
async fn graph_scope_string_is_bare_and_form_post_posts_the_code() {
    let w = world().await;
    let client = browser();
    let (_, _, html) = get(
        &client,
        &authorize_url(
            &w,
            &w.tid,
            "openid profile IMAP.AccessAsUser.All",
            &[
                ("response_mode", "form_post"),
                ("login_hint", "alice@contoso.example"),
            ],
        ),
    )
    .await;
    assert!(
        html.contains("value=\"alice@contoso.example\""),
        "login_hint pre-fills"
    );
    let (_, _, consent) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    assert!(consent.contains("Microsoft Graph"));
    let (s, _, post) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    assert_eq!(s, 200);
    let f = form(&post);
    assert_eq!(f.action, "http://localhost:53682/");
    let code = f
        .fields
        .iter()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .clone();
    assert!(f.fields.iter().any(|(k, v)| k == "state" && v == "12345"));
    let body: Value = redeem(&w, &w.tid, &code, None).await.json().await.unwrap();
    assert_eq!(body["scope"], "IMAP.AccessAsUser.All profile openid");
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
}

#[tokio::test]
async fn redemption_errors_verifier_tenant_redirect_and_expiry() {
    let w = world().await;
    let client = browser();
    let scope = "https://outlook.office.com/IMAP.AccessAsUser.All";
    let code = |back: url::Url| query(&back, "code").unwrap();
    let id = w.desktop.client_id.to_string();

    // Wrong verifier.
    let c = code(authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await);
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &id),
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", "http://localhost:53682/"),
            (
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier",
            ),
        ],
    )
    .await;
    assert_aad(
        resp,
        400,
        "invalid_grant",
        501_481,
        Some("The Code_Verifier does not match the code_challenge supplied in the authorization request."),
    )
    .await;

    // Redeemed at another tenant segment.
    let c = code(authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await);
    assert_aad(
        redeem(&w, "organizations", &c, None).await,
        400,
        "invalid_grant",
        700_005,
        Some("Provided Authorization Code is intended to use against other tenant, thus rejected."),
    )
    .await;

    // Another redirect URI.
    let c = code(authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await);
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &id),
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", "http://localhost:1/"),
            ("code_verifier", super::support::VERIFIER),
        ],
    )
    .await;
    assert_aad(resp, 400, "invalid_grant", 500_112, None).await;

    // A public client presenting a secret.
    let c = code(authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await);
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &id),
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", "http://localhost:53682/"),
            ("code_verifier", super::support::VERIFIER),
            ("client_secret", "anything"),
        ],
    )
    .await;
    assert_aad(resp, 401, "invalid_client", 700_025, None).await;

    // Expired code.
    let c = code(authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await);
    w.advance(601);
    assert_aad(
        redeem(&w, &w.tid, &c, None).await,
        400,
        "invalid_grant",
        70008,
        Some("The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."),
    )
    .await;

    // Unknown code.
    assert_aad(
        redeem(&w, &w.tid, "0.Anonsense", None).await,
        400,
        "invalid_grant",
        70000,
        Some("The provided value for the 'code' parameter is not valid."),
    )
    .await;
}

#[tokio::test]
async fn web_platform_needs_a_secret_at_redemption() {
    let w = world().await;
    let client = browser();
    let id = w.web.client_id.to_string();
    let mut url = url::Url::parse(&w.url(&format!("/{}/oauth2/v2.0/authorize", w.tid))).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "https://web.example/callback")
        .append_pair("scope", "Mail.Read")
        .append_pair("state", "s");
    let (_, _, html) = get(&client, url.as_str()).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    let code = query(&location(s, &h), "code").unwrap();
    let base = [
        ("client_id", id.as_str()),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://web.example/callback"),
    ];
    assert_aad(
        token(&w, &w.tid, &base).await,
        401,
        "invalid_client",
        7_000_218,
        Some("The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    )
    .await;
    // The secret through HTTP Basic.
    let resp = reqwest::Client::new()
        .post(w.token_url(&w.tid))
        .basic_auth(&id, Some("web-secret-value"))
        .form(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["scp"], "Mail.Read");
}

#[tokio::test]
async fn sign_in_page_errors_wrong_password_unknown_user_other_tenant() {
    let w = world().await;
    let client = browser();
    let (_, _, html) = get(&client, &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])).await;
    let (_, _, page) = submit(
        &client,
        &w.base,
        &html,
        &[("login", "alice@contoso.example"), ("passwd", "nope")],
    )
    .await;
    assert_eq!(
        page_error(&page).unwrap(),
        "AADSTS50126: Error validating credentials due to invalid username or password."
    );
    let (_, _, page) = submit(
        &client,
        &w.base,
        &page,
        &[("login", "zed@contoso.example"), ("passwd", "x")],
    )
    .await;
    assert!(page_error(&page).unwrap().starts_with(
        "AADSTS50034: The user account zed@contoso.example does not exist in the Contoso directory."
    ));
    let (_, _, page) = submit(
        &client,
        &w.base,
        &page,
        &[
            ("login", "dave@fabrikam.example"),
            ("passwd", super::support::PASSWORD),
        ],
    )
    .await;
    assert!(
        page_error(&page)
            .unwrap()
            .starts_with("AADSTS50020: User account 'dave@fabrikam.example'")
    );
    let (_, _, page) = submit(
        &client,
        &w.base,
        &page,
        &[
            ("login", "pat@outlook.example"),
            ("passwd", super::support::PASSWORD),
        ],
    )
    .await;
    let err = page_error(&page).unwrap();
    assert!(err.contains("from identity provider 'live.com'"), "{err}");

    // A flow id is single use: replaying the first form fails.
    let (s, _, replay) = submit(
        &client,
        &w.base,
        &html,
        &[
            ("login", "alice@contoso.example"),
            ("passwd", super::support::PASSWORD),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert!(!replay.contains("Permissions requested"));
}

#[tokio::test]
async fn markup_in_parameters_is_escaped() {
    let w = world().await;
    let client = browser();
    let (_, _, html) = get(
        &client,
        &authorize_url(
            &w,
            &w.tid,
            IMAP_SCOPE,
            &[("login_hint", "\"><script>alert(1)</script>")],
        ),
    )
    .await;
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn consent_cancel_and_prompt_none_and_admin_approval() {
    let w = world().await;
    let client = browser();
    // prompt=none without a session.
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, IMAP_SCOPE, &[("prompt", "none")]),
    )
    .await;
    let back = location(s, &h);
    assert_eq!(query(&back, "error").as_deref(), Some("login_required"));
    assert_eq!(query(&back, "state").as_deref(), Some("12345"));
    assert!(
        query(&back, "error_description")
            .unwrap()
            .starts_with("AADSTS50058: ")
    );
    assert!(query(&back, "error_uri").is_some());

    // Cancel on the consent page.
    let (_, _, html) = get(&client, &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "false")]).await;
    let back = location(s, &h);
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    let desc = query(&back, "error_description").unwrap();
    assert!(
        desc.starts_with("AADSTS65004: User declined to consent to access the app.\r\nTrace ID: "),
        "{desc:?}"
    );

    // Signed in but consent missing: prompt=none answers consent_required.
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, IMAP_SCOPE, &[("prompt", "none")]),
    )
    .await;
    assert_eq!(
        query(&location(s, &h), "error").as_deref(),
        Some("consent_required")
    );

    // User consent disabled in the tenant: "Need admin approval".
    let w = world_with(|m| m.tenants[0].user_consent_allowed = false).await;
    let client = browser();
    let (_, _, html) = get(&client, &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])).await;
    let (s, _, page) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    assert_eq!(s, 200);
    assert!(page.contains("Need admin approval"));
    assert!(page_error(&page).unwrap().starts_with("AADSTS90094"));
}

#[tokio::test]
async fn authorize_parameter_errors_are_redirected() {
    let w = world().await;
    let client = browser();
    // Missing PKCE for a public client (knob require_pkce, on by default).
    let mut url = url::Url::parse(&w.url(&format!("/{}/oauth2/v2.0/authorize", w.tid))).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &w.desktop.client_id.to_string())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "http://localhost:1/")
        .append_pair("scope", IMAP_SCOPE)
        .append_pair("state", "st");
    let (s, h, _) = get(&client, url.as_str()).await;
    let back = location(s, &h);
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&back, "state").as_deref(), Some("st"));

    // Unsupported response type.
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])
            .replace("response_type=code", "response_type=token"),
    )
    .await;
    assert_eq!(
        query(&location(s, &h), "error").as_deref(),
        Some("unsupported_response_type")
    );

    // Plain PKCE when the method is omitted: the challenge itself is the verifier.
    w.emulator().update_knobs(|k| k.require_pkce = false);
    let plain =
        authorize_url(&w, &w.tid, IMAP_SCOPE, &[]).replace("&code_challenge_method=S256", "");
    let (_, _, html) = get(&client, &plain).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    let code = query(&location(s, &h), "code").unwrap();
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &w.desktop.client_id.to_string()),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:53682/"),
            ("code_verifier", CHALLENGE),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn app_and_audience_errors_render_pages_not_redirects() {
    let w = world().await;
    let client = browser();
    // Single-tenant app on common.
    let url = authorize_url(&w, "common", IMAP_SCOPE, &[]).replace(
        &w.desktop.client_id.to_string(),
        &w.daemon.client_id.to_string(),
    );
    let (s, h, html) = get(&client, &url).await;
    assert_eq!(s, 400);
    assert!(!h.contains_key("location"));
    assert!(page_error(&html).unwrap().starts_with("AADSTS50194: "));
    // Org-only app on consumers.
    let (_, _, html) = get(&client, &authorize_url(&w, "consumers", IMAP_SCOPE, &[])).await;
    assert!(page_error(&html).unwrap().starts_with("AADSTS9002332: "));
    // Unknown app.
    let url = authorize_url(&w, &w.tid, IMAP_SCOPE, &[]).replace(
        &w.desktop.client_id.to_string(),
        "11111111-2222-3333-4444-555555555555",
    );
    let (s, h, html) = get(&client, &url).await;
    assert_eq!(s, 400);
    assert!(!h.contains_key("location"));
    assert!(page_error(&html).unwrap().starts_with("AADSTS700016: Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'Contoso'."));
    // Disabled app.
    let w = world_with(|m| m.tenants[0].apps[0].disabled = true).await;
    let (_, _, html) = get(&client, &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])).await;
    assert_eq!(
        page_error(&html).unwrap(),
        format!(
            "AADSTS7000112: Application '{}'(Mail connector) is disabled.",
            w.desktop.client_id
        )
    );
}

#[tokio::test]
async fn prompt_login_consent_and_none_with_mfa() {
    let w = world().await;
    let client = browser();
    let scope = "https://outlook.office.com/IMAP.AccessAsUser.All";
    // Bob signs in with MFA and consents.
    let back = authorize_code(
        &w,
        &client,
        &w.tid,
        scope,
        "bob@contoso.example",
        Some("123456"),
    )
    .await;
    assert!(query(&back, "code").is_some());
    // prompt=consent shows the consent page again even though consent exists.
    let (s, _, page) = get(
        &client,
        &authorize_url(&w, &w.tid, scope, &[("prompt", "consent")]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(page.contains("Permissions requested"), "{page}");
    // prompt=login asks for the password again.
    let (_, _, page) = get(
        &client,
        &authorize_url(&w, &w.tid, scope, &[("prompt", "login")]),
    )
    .await;
    assert!(page.contains("name=\"passwd\""));
    // A session without MFA for a user who now needs it: prompt=none -> interaction_required.
    let client = browser();
    let back = authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await;
    assert!(query(&back, "code").is_some());
    w.emulator()
        .update(|m| m.tenants[0].users[0].mfa_required = true);
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, scope, &[("prompt", "none")]),
    )
    .await;
    let back = location(s, &h);
    assert_eq!(
        query(&back, "error").as_deref(),
        Some("interaction_required")
    );
    assert!(
        query(&back, "error_description")
            .unwrap()
            .starts_with("AADSTS50076: ")
    );
    // Without prompt=none the same session is asked for the second factor.
    let (s, _, page) = get(&client, &authorize_url(&w, &w.tid, scope, &[])).await;
    assert_eq!(s, 200);
    assert!(page.contains("action=\"/login/mfa\""), "{page}");
}

#[tokio::test]
async fn personal_only_app_on_a_tenant_endpoint_is_9002331() {
    let w = world_with(|m| {
        m.tenants[0].apps[0].audience = mailbridge_testkit::model::SignInAudience::PersonalOnly;
    })
    .await;
    let (s, _, html) = get(&browser(), &authorize_url(&w, &w.tid, IMAP_SCOPE, &[])).await;
    assert_eq!(s, 400);
    assert_eq!(
        page_error(&html).unwrap(),
        format!(
            "AADSTS9002331: Application '{}'(Mail connector) is configured for use by Microsoft Account users only. Please use the /consumers endpoint to serve this request.",
            w.desktop.client_id
        )
    );
}

#[tokio::test]
async fn redirect_uri_without_path_comes_back_with_a_trailing_slash() {
    let w = world().await;
    let client = browser();
    let url = authorize_url(&w, &w.tid, IMAP_SCOPE, &[])
        .replace("localhost%3A53682%2F", "localhost%3A40000");
    let (_, _, html) = get(&client, &url).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    let back = location(s, &h);
    assert!(
        back.as_str().starts_with("http://localhost:40000/?code="),
        "{back}"
    );
}

#[tokio::test]
async fn logout_ends_single_sign_on() {
    let w = world().await;
    let client = browser();
    let scope = "https://outlook.office.com/IMAP.AccessAsUser.All";
    authorize_code(&w, &client, &w.tid, scope, "alice@contoso.example", None).await;
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, scope, &[("prompt", "none")]),
    )
    .await;
    assert!(query(&location(s, &h), "code").is_some());
    let (s, h, _) = get(
        &client,
        &w.url(&format!(
            "/{}/oauth2/v2.0/logout?client_id={}&post_logout_redirect_uri=http://localhost:53682/bye",
            w.tid, w.desktop.client_id
        )),
    )
    .await;
    assert_eq!(s, 200, "an unregistered logout URI is not followed");
    assert!(!h.contains_key("location"));
    let (s, h, _) = get(
        &client,
        &authorize_url(&w, &w.tid, scope, &[("prompt", "none")]),
    )
    .await;
    assert_eq!(
        query(&location(s, &h), "error").as_deref(),
        Some("login_required")
    );
}
