//! Every row of the admin-mistake matrix (`microsoft-protocols.md` §8.2) that shows a
//! token-endpoint answer, one test each, plus the other token-endpoint errors.

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use super::support::{
    IMAP_SCOPE, SECRET, assert_aad, assertion, authorize_code, authorize_url, browser,
    client_credentials, get, now, page_error, query, redeem, token, verified_claims, world,
    world_with,
};

const EXO_DEFAULT: &str = "https://outlook.office365.com/.default";

#[tokio::test]
async fn wrong_client_id_is_700016() {
    let w = world().await;
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", "0b5c1e1a-0000-4000-8000-000000000001"),
            ("scope", EXO_DEFAULT),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_aad(
        resp,
        400,
        "unauthorized_client",
        700_016,
        Some("Application with identifier '0b5c1e1a-0000-4000-8000-000000000001' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
    )
    .await;
}

#[tokio::test]
async fn right_client_id_wrong_tenant_is_700016() {
    let w = world().await;
    let id = w.daemon.client_id.to_string();
    let resp = token(
        &w,
        "fabrikam.example",
        &[
            ("client_id", &id),
            ("scope", EXO_DEFAULT),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    let body = assert_aad(resp, 400, "unauthorized_client", 700_016, None).await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("in the directory 'Fabrikam'")
    );
}

#[tokio::test]
async fn secret_id_instead_of_value_is_7000215() {
    let w = world().await;
    let secret_id = w.daemon.secrets[0].id.to_string();
    assert_aad(
        client_credentials(&w, EXO_DEFAULT, &secret_id).await,
        401,
        "invalid_client",
        7_000_215,
        Some(&format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
            w.daemon.client_id
        )),
    )
    .await;
}

#[tokio::test]
async fn expired_secret_is_7000222() {
    let w = world().await;
    assert_eq!(
        client_credentials(&w, EXO_DEFAULT, SECRET).await.status(),
        200
    );
    w.advance(366 * 86_400);
    assert_aad(
        client_credentials(&w, EXO_DEFAULT, SECRET).await,
        401,
        "invalid_client",
        7_000_222,
        Some(&format!(
            "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
            w.daemon.client_id
        )),
    )
    .await;
}

#[tokio::test]
async fn tenant_typo_is_90002_invalid_request() {
    let w = world().await;
    let resp = token(
        &w,
        "contoso.exmaple",
        &[
            ("client_id", &w.daemon.client_id.to_string()),
            ("scope", EXO_DEFAULT),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_aad(
        resp,
        400,
        "invalid_request",
        90002,
        Some("Tenant 'contoso.exmaple' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
    )
    .await;
}

#[tokio::test]
async fn imap_access_as_app_or_mail_read_scope_in_client_credentials_is_70011() {
    let w = world().await;
    for scope in [
        "https://outlook.office365.com/IMAP.AccessAsApp",
        "Mail.Read",
    ] {
        assert_aad(
            client_credentials(&w, scope, SECRET).await,
            400,
            "invalid_scope",
            70011,
            Some(&format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            )),
        )
        .await;
    }
}

#[tokio::test]
async fn graph_and_outlook_scopes_in_one_request_is_700022() {
    let w = world().await;
    let text = "The provided value for the input parameter scope is not valid because it contains more than one resource.";
    assert_aad(
        client_credentials(
            &w,
            "https://graph.microsoft.com/.default https://outlook.office365.com/.default",
            SECRET,
        )
        .await,
        400,
        "invalid_scope",
        700_022,
        Some(text),
    )
    .await;
    // The same for a delegated code redemption naming two resources.
    let client = browser();
    let back = authorize_code(
        &w,
        &client,
        &w.tid,
        "offline_access https://outlook.office.com/IMAP.AccessAsUser.All Mail.Read",
        "alice@contoso.example",
        None,
    )
    .await;
    assert_aad(
        redeem(
            &w,
            &w.tid,
            &query(&back, "code").unwrap(),
            Some("https://outlook.office.com/IMAP.AccessAsUser.All Mail.Read"),
        )
        .await,
        400,
        "invalid_scope",
        700_022,
        Some(text),
    )
    .await;
}

/// Signs alice in through the pages and returns a refresh token.
async fn alice_refresh_token(w: &super::support::World) -> String {
    let client = browser();
    let back = authorize_code(
        w,
        &client,
        &w.tid,
        IMAP_SCOPE,
        "alice@contoso.example",
        None,
    )
    .await;
    let body: Value = redeem(w, &w.tid, &query(&back, "code").unwrap(), None)
        .await
        .json()
        .await
        .unwrap();
    body["refresh_token"].as_str().unwrap().to_owned()
}

async fn refresh(w: &super::support::World, rt: &str) -> reqwest::Response {
    token(
        w,
        &w.tid,
        &[
            ("client_id", &w.desktop.client_id.to_string()),
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            (
                "scope",
                "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
            ),
        ],
    )
    .await
}

#[tokio::test]
async fn delegated_consent_missing_is_65001_consent_required() {
    let w = world().await;
    let rt = alice_refresh_token(&w).await;
    assert_eq!(refresh(&w, &rt).await.status(), 200);
    // The user's consent is removed (portal: My Apps -> revoke, or an admin deletes the grant).
    w.emulator().update(|m| m.tenants[0].user_consents.clear());
    let body = assert_aad(
        refresh(&w, &rt).await,
        400,
        "invalid_grant",
        65001,
        Some(&format!(
            "The user or administrator has not consented to use the application with ID '{}' named 'Mail connector'. Send an interactive authorization request for this user and resource.",
            w.desktop.client_id
        )),
    )
    .await;
    assert_eq!(body["suberror"], "consent_required");
}

#[tokio::test]
async fn admin_consent_not_granted_gives_200_without_roles() {
    let w = world_with(|m| m.tenants[0].apps[1].admin_consent_granted = false).await;
    let resp = client_credentials(&w, EXO_DEFAULT, SECRET).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "https://outlook.office365.com");
    assert!(claims.get("roles").is_none(), "{claims}");
}

#[tokio::test]
async fn permission_under_wrong_api_gives_exchange_token_without_imap_role() {
    // Graph Mail.ReadWrite granted, but the Exchange IMAP.AccessAsApp never added.
    let w = world_with(|m| {
        m.tenants[0].apps[1]
            .permissions
            .retain(|p| p.api == mailbridge_testkit::model::Api::Graph);
    })
    .await;
    let resp = client_credentials(&w, EXO_DEFAULT, SECRET).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let claims = verified_claims(&w, body["access_token"].as_str().unwrap()).await;
    assert!(
        !claims["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "IMAP.AccessAsApp")),
        "{claims}"
    );
}

#[tokio::test]
async fn conditional_access_block_is_53003_message_only() {
    let w = world().await;
    let id = w.daemon.client_id.to_string();
    w.emulator()
        .update(|m| m.tenants[0].conditional_access_blocked_apps.push(id));
    let body = assert_aad(
        client_credentials(&w, EXO_DEFAULT, SECRET).await,
        400,
        "interaction_required",
        53003,
        Some("Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."),
    )
    .await;
    assert_eq!(body["suberror"], "message_only");
}

#[tokio::test]
async fn conditional_access_block_applies_to_delegated_refresh_too() {
    let w = world().await;
    let rt = alice_refresh_token(&w).await;
    let id = w.desktop.client_id.to_string();
    w.emulator()
        .update(|m| m.tenants[0].conditional_access_blocked_apps.push(id));
    let body = assert_aad(
        refresh(&w, &rt).await,
        400,
        "interaction_required",
        53003,
        None,
    )
    .await;
    assert_eq!(body["suberror"], "message_only");
}

#[tokio::test]
async fn mfa_newly_required_on_refresh_is_50076_with_claims() {
    let w = world().await;
    let rt = alice_refresh_token(&w).await;
    w.emulator()
        .update(|m| m.tenants[0].users[0].mfa_required = true);
    let body = assert_aad(
        refresh(&w, &rt).await,
        400,
        "invalid_grant",
        50076,
        Some("Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'."),
    )
    .await;
    assert_eq!(body["suberror"], "basic_action");
    let claims: Value = serde_json::from_str(body["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_token"]["capolids"]["essential"], true);
}

#[tokio::test]
async fn redirect_uri_not_registered_is_an_error_page_without_redirect() {
    let w = world().await;
    let client = browser();
    // Registered as http://localhost; 127.0.0.1 is another host.
    let url = authorize_url(&w, &w.tid, IMAP_SCOPE, &[])
        .replace("localhost%3A53682", "127.0.0.1%3A53682");
    let (s, h, html) = get(&client, &url).await;
    assert_eq!(s, 400);
    assert!(!h.contains_key("location"));
    assert_eq!(
        page_error(&html).unwrap(),
        format!(
            "AADSTS50011: The redirect URI 'http://127.0.0.1:53682/' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
            w.desktop.client_id
        )
    );
}

#[tokio::test]
async fn public_client_flows_disabled_device_code_is_7000218() {
    let w = world_with(|m| m.tenants[0].apps[0].public_client = false).await;
    let id = w.desktop.client_id.to_string();
    let started: Value = reqwest::Client::new()
        .post(w.url(&format!("/{}/oauth2/v2.0/devicecode", w.tid)))
        .form(&[("client_id", id.as_str()), ("scope", IMAP_SCOPE)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &id),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", started["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_aad(
        resp,
        401,
        "invalid_client",
        7_000_218,
        Some("The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    )
    .await;
}

fn dotnet(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
        ))
        .unwrap()
}

#[tokio::test]
async fn client_assertion_clock_skew_is_700024() {
    let w = world().await;
    let t = now(&w) - 2 * 3600;
    let a = assertion(&w, true, &w.token_url(&w.tid), t, t + 600, "skewed");
    let resp = token(
        &w,
        &w.tid,
        &[
            ("client_id", &w.daemon.client_id.to_string()),
            ("scope", EXO_DEFAULT),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    let body = assert_aad(resp, 401, "invalid_client", 700_024, None).await;
    let headline = body["error_description"]
        .as_str()
        .unwrap()
        .split("\r\n")
        .next()
        .unwrap()
        .to_owned();
    let prefix =
        "AADSTS700024: Client assertion is not within its valid time range. Current time: ";
    assert!(headline.starts_with(prefix), "{headline}");
    let suffix = format!(
        ", assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        dotnet(t),
        dotnet(t + 600)
    );
    assert!(headline.ends_with(&suffix), "{headline}");
    let current = &headline[prefix.len()..headline.len() - suffix.len()];
    assert_eq!(
        current.len(),
        "2023-03-17T12:00:00.0000000Z".len(),
        "{current}"
    );
}

#[tokio::test]
async fn idle_refresh_token_is_700082() {
    let w = world().await;
    let rt = alice_refresh_token(&w).await;
    w.advance(91 * 86_400);
    let body = assert_aad(refresh(&w, &rt).await, 400, "invalid_grant", 700_082, None).await;
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with(
        "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on "
    ));
    assert!(d.contains(" and was inactive for 90.00:00:00."), "{d}");
}

#[tokio::test]
async fn other_token_endpoint_errors() {
    let w = world().await;
    let id = w.daemon.client_id.to_string();
    // Missing grant_type and client_id.
    assert_aad(
        token(&w, &w.tid, &[("client_id", &id)]).await,
        400,
        "invalid_request",
        900_144,
        Some("The request body must contain the following parameter: 'grant_type'."),
    )
    .await;
    assert_aad(
        token(&w, &w.tid, &[("grant_type", "client_credentials")]).await,
        400,
        "invalid_request",
        900_144,
        Some("The request body must contain the following parameter: 'client_id'."),
    )
    .await;
    // Unknown grant type.
    assert_aad(
        token(
            &w,
            &w.tid,
            &[("client_id", &id), ("grant_type", "password")],
        )
        .await,
        400,
        "unsupported_grant_type",
        70003,
        Some("The app requested an unsupported grant type."),
    )
    .await;
    // No credential at all.
    assert_aad(
        token(
            &w,
            &w.tid,
            &[
                ("client_id", &id),
                ("grant_type", "client_credentials"),
                ("scope", EXO_DEFAULT),
            ],
        )
        .await,
        401,
        "invalid_client",
        7_000_218,
        None,
    )
    .await;
    // Unknown resource.
    assert_aad(
        client_credentials(&w, "https://outlook.office365.example/.default", SECRET).await,
        400,
        "invalid_resource",
        500_011,
        None,
    )
    .await;
    // Single-tenant app on common with a delegated grant.
    assert_aad(
        token(
            &w,
            "common",
            &[
                ("client_id", &id),
                ("grant_type", "refresh_token"),
                ("refresh_token", "x"),
            ],
        )
        .await,
        400,
        "invalid_request",
        50194,
        None,
    )
    .await;
}

#[tokio::test]
async fn refresh_token_of_a_work_account_is_refused_on_consumers_and_another_tenant() {
    let w = world().await;
    let rt = alice_refresh_token(&w).await;
    for (seg, code) in [("consumers", 9_002_332), ("fabrikam.example", 9_002_313)] {
        let resp = token(
            &w,
            seg,
            &[
                ("client_id", &w.desktop.client_id.to_string()),
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
            ],
        )
        .await;
        // The desktop app is multi-tenant, so the request reaches the grant on fabrikam;
        // on consumers an org-only app is refused first (AADSTS9002332).
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error_codes"][0], code, "{seg}: {body}");
    }
    // Through organizations and common it works.
    for seg in ["organizations", "common"] {
        let resp = token(
            &w,
            seg,
            &[
                ("client_id", &w.desktop.client_id.to_string()),
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
            ],
        )
        .await;
        assert_eq!(resp.status(), 200, "{seg}");
    }
}
