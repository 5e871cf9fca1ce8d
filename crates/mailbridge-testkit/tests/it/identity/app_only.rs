//! Client credentials (secret and certificate), admin consent, personal accounts,
//! injected faults and the request log.

use serde_json::Value;

use super::support::{
    IMAP_SCOPE, SECRET, assert_aad, assertion, authorize_code, authorize_url, browser,
    client_credentials, get, location, now, page_error, query, redeem, sign_in, submit, token,
    verified_claims, world, world_with,
};

#[tokio::test]
async fn client_credentials_with_secret_gives_an_app_token_with_roles() {
    let w = world().await;
    let resp = client_credentials(&w, "https://outlook.office365.com/.default", SECRET).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(body.get("refresh_token").is_none());
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://outlook.office365.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{}/", w.tid));
    assert_eq!(claims["tid"], w.tid);
    assert_eq!(claims["oid"], w.daemon.service_principal_id.to_string());
    assert_eq!(claims["appid"], w.daemon.client_id.to_string());
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(
        claims["roles"],
        serde_json::json!(["IMAP.AccessAsApp", "SMTP.SendAsApp"])
    );
    assert!(claims.get("scp").is_none());
    // The emulator accepts its own token.
    let validated = w
        .emulator()
        .validate_access_token(body["access_token"].as_str().unwrap())
        .unwrap();
    assert!(validated.is_app_only());

    // Graph roles for a Graph token, the secret through HTTP Basic, `organizations`
    // standing for the app's home tenant.
    let resp = reqwest::Client::new()
        .post(w.token_url("organizations"))
        .basic_auth(w.daemon.client_id.to_string(), Some(SECRET))
        .form(&[
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["roles"], serde_json::json!(["Mail.ReadWrite"]));
}

async fn with_assertion(w: &super::support::World, a: &str) -> reqwest::Response {
    token(
        w,
        &w.tid,
        &[
            ("client_id", &w.daemon.client_id.to_string()),
            ("scope", "https://outlook.office365.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", a),
            ("grant_type", "client_credentials"),
        ],
    )
    .await
}

#[tokio::test]
async fn client_credentials_with_certificate_ps256_and_rs256() {
    let w = world().await;
    let aud = w.token_url(&w.tid);
    let t = now(&w);
    for (pss, jti) in [(true, "a1"), (false, "a2")] {
        let a = assertion(&w, pss, &aud, t, t + 600, jti);
        let resp = with_assertion(&w, &a).await;
        assert_eq!(resp.status(), 200, "pss={pss}");
        let body: Value = resp.json().await.unwrap();
        let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
        assert_eq!(claims["appidacr"], "2");
        assert_eq!(
            claims["roles"],
            serde_json::json!(["IMAP.AccessAsApp", "SMTP.SendAsApp"])
        );
    }
    // The same assertion (same jti) again.
    let a = assertion(&w, true, &aud, t, t + 600, "a3");
    assert_eq!(with_assertion(&w, &a).await.status(), 200);
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        50027,
        None,
    )
    .await;
    // Audience of another tenant's endpoint.
    let a = assertion(&w, true, &w.token_url("fabrikam.example"), t, t + 600, "a4");
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        50027,
        None,
    )
    .await;
    // A certificate the app does not have.
    let other = mailbridge_testkit::crypto::CertificateCredential::generate("other").unwrap();
    let id = w.daemon.client_id.to_string();
    let a = other
        .sign_jwt(
            &serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": other.x5t_s256()}),
            &serde_json::json!({"aud": aud, "iss": id, "sub": id, "jti": "a5", "exp": t + 600}),
            true,
        )
        .unwrap();
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        700_027,
        Some("The certificate with identifier used to sign the client assertion is not registered on application."),
    )
    .await;
    // The app's thumbprint but another key's signature.
    let a = other
        .sign_jwt(
            &serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": w.certificate.x5t_s256()}),
            &serde_json::json!({"aud": aud, "iss": id, "sub": id, "jti": "a6", "exp": t + 600}),
            true,
        )
        .unwrap();
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        700_027,
        Some("Client assertion failed signature validation."),
    )
    .await;
    // sub differs from iss.
    let a = w
        .certificate
        .sign_jwt(
            &serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": w.certificate.x5t_sha1()}),
            &serde_json::json!({"aud": aud, "iss": id, "sub": "someone", "jti": "a7", "exp": t + 600}),
            false,
        )
        .unwrap();
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        50048,
        None,
    )
    .await;
    // The certificate expired.
    w.advance(366 * 86_400);
    let t = now(&w);
    let a = assertion(&w, true, &aud, t, t + 600, "a8");
    assert_aad(
        with_assertion(&w, &a).await,
        401,
        "invalid_client",
        700_027,
        None,
    )
    .await;
}

#[tokio::test]
async fn admin_consent_grants_the_roles() {
    let w = world_with(|m| m.tenants[0].apps[1].admin_consent_granted = false).await;
    // Before: 200, but no roles.
    let body: Value = client_credentials(&w, "https://outlook.office365.com/.default", SECRET)
        .await
        .json()
        .await
        .unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert!(claims.get("roles").is_none());

    let consent_url = |state: &str| {
        format!(
            "{}/{}/v2.0/adminconsent?client_id={}&scope=https://outlook.office365.com/.default&redirect_uri=https://daemon.example/consent&state={state}",
            w.base, w.tid, w.daemon.client_id
        )
    };
    // A user who is not an admin gets an error page.
    let client = browser();
    let (_, _, html) = get(&client, &consent_url("s1")).await;
    let (s, h, page) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    assert_eq!(s, 400);
    assert!(!h.contains_key("location"));
    assert!(page_error(&page).unwrap().starts_with("AADSTS90094"));

    // An admin who cancels.
    let client = browser();
    let (_, _, html) = get(&client, &consent_url("s2")).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "carol@contoso.example", None).await;
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "false")]).await;
    let back = location(s, &h);
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("s2"));

    // An admin who accepts.
    let client = browser();
    let (_, _, html) = get(&client, &consent_url("s3")).await;
    let (_, _, consent) = sign_in(&client, &w, &html, "carol@contoso.example", None).await;
    assert!(consent.contains("Accept for your organization"));
    assert!(consent.contains("Office 365 Exchange Online"));
    assert!(consent.contains("IMAP.AccessAsApp"));
    assert!(consent.contains("Microsoft Graph"));
    assert!(consent.contains("Application"));
    let (s, h, _) = submit(&client, &w.base, &consent, &[("accept", "true")]).await;
    let back = location(s, &h);
    assert_eq!(
        back.as_str().split('?').next().unwrap(),
        "https://daemon.example/consent"
    );
    assert_eq!(query(&back, "admin_consent").as_deref(), Some("True"));
    assert_eq!(query(&back, "tenant").as_deref(), Some(w.tid.as_str()));
    assert_eq!(
        query(&back, "scope").as_deref(),
        Some("https://outlook.office365.com/.default")
    );
    assert_eq!(query(&back, "state").as_deref(), Some("s3"));
    assert!(
        w.emulator()
            .read(|m| m.tenants[0].apps[1].admin_consent_granted)
    );

    let body: Value = client_credentials(&w, "https://outlook.office365.com/.default", SECRET)
        .await
        .json()
        .await
        .unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["roles"],
        serde_json::json!(["IMAP.AccessAsApp", "SMTP.SendAsApp"])
    );
}

#[tokio::test]
async fn personal_account_gets_opaque_tokens_via_consumers() {
    let w = world_with(|m| {
        m.tenants[0].apps[0].audience =
            mailbridge_testkit::model::SignInAudience::MultiTenantAndPersonal;
    })
    .await;
    let client = browser();
    let back = authorize_code(
        &w,
        &client,
        "consumers",
        IMAP_SCOPE,
        "pat@outlook.example",
        None,
    )
    .await;
    let body: Value = redeem(&w, "consumers", &query(&back, "code").unwrap(), None)
        .await
        .json()
        .await
        .unwrap();
    let at = body["access_token"].as_str().unwrap();
    assert!(at.starts_with("EwB"), "{at}");
    assert!(mailbridge_testkit::crypto::Jwt::parse(at).is_none());
    assert!(body["refresh_token"].as_str().unwrap().starts_with("M.C5"));
    let validated = w.emulator().validate_access_token(at).unwrap();
    assert_eq!(validated.upn(), Some("pat@outlook.example"));
    assert_eq!(
        validated.tenant_id.to_string(),
        "9188040d-6c67-4c5b-b112-36a304b66dad"
    );
    assert_eq!(
        body["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send"
    );
    let id_token = verified_claims(&w, body["id_token"].as_str().unwrap()).await;
    assert_eq!(id_token["tid"], "9188040d-6c67-4c5b-b112-36a304b66dad");

    // A work account cannot sign in on consumers.
    let client = browser();
    let (_, _, html) = get(&client, &authorize_url(&w, "consumers", IMAP_SCOPE, &[])).await;
    let (_, _, page) = sign_in(&client, &w, &html, "alice@contoso.example", None).await;
    assert!(page_error(&page).unwrap().starts_with("AADSTS50034"));

    // Personal accounts also sign in through common.
    let client = browser();
    let back = authorize_code(
        &w,
        &client,
        "common",
        IMAP_SCOPE,
        "pat@outlook.example",
        None,
    )
    .await;
    assert!(query(&back, "code").is_some());

    // No client credentials on consumers or common.
    for seg in ["consumers", "common"] {
        let resp = token(
            &w,
            seg,
            &[
                ("client_id", &w.daemon.client_id.to_string()),
                ("scope", "https://outlook.office365.com/.default"),
                ("client_secret", SECRET),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
        assert_aad(
            resp,
            400,
            "invalid_request",
            9_001_023,
            Some("The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint."),
        )
        .await;
    }
}

#[tokio::test]
async fn token_faults_5xx_then_429_with_retry_after_then_recovery() {
    let w = world_with(|m| {
        m.knobs.faults.token_5xx = 1;
        m.knobs.faults.token_429 = 1;
        m.knobs.faults.token_retry_after_secs = 7;
        m.knobs.faults.token_delay_ms = 5;
    })
    .await;
    let scope = "https://outlook.office365.com/.default";
    let resp = client_credentials(&w, scope, SECRET).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let resp = client_credentials(&w, scope, SECRET).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(client_credentials(&w, scope, SECRET).await.status(), 200);

    let posts = w.emulator().requests_to("/oauth2/v2.0/token");
    let statuses: Vec<u16> = posts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 429, 200]);
    assert_eq!(
        posts[2].param("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        posts[2].param("client_id"),
        Some(w.daemon.client_id.to_string())
    );
}
