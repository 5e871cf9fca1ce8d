//! Who may call EWS: the 401 answers with `x-ms-diagnostics`, impersonation, access
//! policies, licences and EWS switches (the EWS column of the admin-mistake matrix).
//! These requests are refused before any mail is touched, so no mail servers run.

use base64::Engine as _;
use mailbridge_testkit::model::{AccessPolicyMode, Api, AppRegistration, PermissionKind};

use super::support::{
    ALICE, BOB, CAROL, ERIN, FRANK, FRANK_PASSWORD, World, envelope, find_item, impersonation,
    model,
};

const CHALLENGE_START: &str = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri=""#;

async fn find_inbox_with(world: &World, authorization: Option<&str>) -> super::support::Answer {
    world
        .post(
            authorization,
            &[("X-AnchorMailbox", ALICE)],
            envelope(&impersonation(ALICE), &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await
}

fn assert_401(answer: &super::support::Answer, diagnostics: Option<&str>) {
    assert_eq!(answer.status.as_u16(), 401, "{}", answer.body);
    let challenge = answer.header("www-authenticate").unwrap();
    assert!(challenge.starts_with(CHALLENGE_START), "{challenge}");
    assert_eq!(answer.header("x-ms-diagnostics"), diagnostics);
    assert_eq!(
        challenge.ends_with(r#", error="invalid_token""#),
        diagnostics.is_some(),
        "{challenge}"
    );
    assert!(
        answer.body.is_empty(),
        "401 has no SOAP body: {}",
        answer.body
    );
}

#[tokio::test]
async fn no_token_is_challenged_without_diagnostics() {
    let world = World::start().await;
    let answer = find_inbox_with(&world, None).await;
    assert_401(&answer, None);
}

#[tokio::test]
async fn garbage_token_is_2000001() {
    let world = World::start().await;
    let answer = find_inbox_with(&world, Some("Bearer eyJhbGciOi.not-a-token.x")).await;
    assert_401(
        &answer,
        Some(
            r#"2000001;reason="The token has invalid signature.";error_category="invalid_signature""#,
        ),
    );
}

#[tokio::test]
async fn graph_token_is_wrong_audience_2000003() {
    let world = World::start().await;
    let token = world.graph_token();
    let answer = find_inbox_with(&world, Some(&format!("Bearer {token}"))).await;
    assert_401(
        &answer,
        Some(
            r#"2000003;reason="The audience claim value is invalid 'https://graph.microsoft.com'.";error_category="invalid_resource""#,
        ),
    );
}

#[tokio::test]
async fn expired_token_is_refused() {
    let world = World::start().await;
    let token = world.expired_token();
    let answer = find_inbox_with(&world, Some(&format!("Bearer {token}"))).await;
    assert_401(
        &answer,
        Some(r#"2000005;reason="The token has expired";error_category="invalid_token""#),
    );
}

#[tokio::test]
async fn admin_consent_not_granted_gives_token_without_roles_2000008() {
    let world = World::start().await;
    // What /token issues when the permission is listed but not consented: no roles.
    let token = world.app_token(&[]);
    let answer = find_inbox_with(&world, Some(&format!("Bearer {token}"))).await;
    assert_401(
        &answer,
        Some(
            r#"2000008;reason="The token contains no permissions, or permissions can not be understood.";error_category="invalid_grant""#,
        ),
    );
}

#[tokio::test]
async fn permission_under_the_wrong_api_is_refused() {
    let world = World::start().await;
    // An Exchange token carrying only IMAP.AccessAsApp (no full_access_as_app).
    let token = world.app_token(&["IMAP.AccessAsApp"]);
    let answer = find_inbox_with(&world, Some(&format!("Bearer {token}"))).await;
    assert_401(
        &answer,
        Some(
            r#"2000008;reason="The token contains no permissions, or permissions can not be understood.";error_category="invalid_grant""#,
        ),
    );
}

#[tokio::test]
async fn delegated_token_without_ews_scope_is_refused() {
    let world = World::start().await;
    let token = world.user_token(ALICE, &["IMAP.AccessAsUser.All"]);
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 401);
    assert!(
        answer
            .header("x-ms-diagnostics")
            .unwrap()
            .starts_with("2000008;")
    );
}

#[tokio::test]
async fn app_only_without_impersonation_is_a_fault() {
    let world = World::start().await;
    let token = world.daemon_token();
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    answer.assert_fault(500, "ErrorInvalidExchangeImpersonationHeaderData");
    assert!(answer.body.contains(
        r#"<faultstring xml:lang="en-US">ExchangeImpersonation SOAP header must be present for this type of OAuth token.</faultstring>"#
    ));
}

#[tokio::test]
async fn delegated_token_with_impersonation_is_a_fault() {
    let world = World::start().await;
    let token = world.user_token(ALICE, &["EWS.AccessAsUser.All"]);
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope(&impersonation(BOB), &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    answer.assert_fault(500, "ErrorInvalidExchangeImpersonationHeaderData");
    assert!(answer.body.contains("must not exist"), "{}", answer.body);
}

#[tokio::test]
async fn unlicensed_or_unknown_mailbox_is_error_non_existent_mailbox() {
    let world = World::start().await;
    for mailbox in [CAROL, "nobody@contoso.example"] {
        let answer = world
            .as_app(mailbox, &find_item("inbox", "IdOnly", 10, 0))
            .await;
        answer.assert_fault(500, "ErrorNonExistentMailbox");
        assert!(answer.body.contains(
            r#"<faultstring xml:lang="en-US">The SMTP address has no mailbox associated with it.</faultstring>"#
        ));
    }
}

#[tokio::test]
async fn ews_disabled_mailbox_is_access_denied() {
    let world = World::start().await;
    let answer = world
        .as_app(ERIN, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(403, "ErrorAccessDenied");
}

#[tokio::test]
async fn access_policy_that_excludes_the_mailbox_is_access_denied() {
    let world = World::start().await;
    world.add_policy(AccessPolicyMode::RestrictAccess, &[BOB], false);
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(500, "ErrorAccessDenied");
    assert!(
        answer
            .body
            .contains("Access is denied. Check credentials and try again.")
    );

    let world = World::start().await;
    world.add_policy(AccessPolicyMode::DenyAccess, &[ALICE], false);
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    answer.assert_fault(500, "ErrorAccessDenied");
}

#[tokio::test]
async fn access_policy_of_another_app_does_not_apply() {
    let (mut model, app) = model();
    let other = AppRegistration::new("Other").with_permission(
        Api::ExchangeOnline,
        PermissionKind::Application,
        "full_access_as_app",
    );
    model.tenants[0]
        .access_policies
        .push(mailbridge_testkit::model::ApplicationAccessPolicy {
            app_id: other.client_id,
            mode: AccessPolicyMode::DenyAccess,
            mailboxes: vec![ALICE.to_owned()],
            added_at: None,
        });
    let world = World::with(model, app).await;
    let answer = world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await;
    // Past the policy; without mail servers the operation itself cannot run.
    answer.assert_fault(500, "ErrorInternalServerError");
}

#[tokio::test]
async fn anchor_mailbox_can_be_required_by_knob() {
    let world = World::start().await;
    world
        .emulator
        .update_knobs(|k| k.ews_require_anchor_mailbox = true);
    let token = world.daemon_token();
    let answer = world
        .post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope(&impersonation(ALICE), &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    answer.assert_fault(500, "ErrorNoRespondingCASInDestinationSite");
}

#[tokio::test]
async fn basic_auth_is_refused_by_exchange_online() {
    let world = World::start().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ALICE}:pw"));
    let answer = world
        .post(
            Some(&format!("Basic {basic}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 401);
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer ")
    );
}

#[tokio::test]
async fn basic_auth_with_a_wrong_password_is_refused_on_premises() {
    let world = World::start().await;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let wrong = b64(format!("{FRANK}:not-{FRANK_PASSWORD}"));
    let answer = world
        .post(
            Some(&format!("Basic {wrong}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    assert_eq!(answer.status.as_u16(), 401);
    let right = b64(format!("{FRANK}:{FRANK_PASSWORD}"));
    let answer = world
        .post(
            Some(&format!("Basic {right}")),
            &[],
            envelope("", &find_item("inbox", "IdOnly", 10, 0)),
        )
        .await;
    // Authenticated; without mail servers the operation itself cannot run.
    answer.assert_fault(500, "ErrorInternalServerError");
}

#[tokio::test]
async fn token_of_an_unknown_tenant_is_2000004() {
    let world = World::start().await;
    let token = world.daemon_token();
    let old = world.tenant_id;
    // The tenant is gone by the time the token is presented.
    world
        .emulator
        .update(|m| m.tenants[0].id = uuid::Uuid::new_v4());
    let answer = find_inbox_with(&world, Some(&format!("Bearer {token}"))).await;
    assert_401(
        &answer,
        Some(&format!(
            r#"2000004;reason="The tenant for tenant guid '{old}' does not exist.";error_category="invalid_tenant""#
        )),
    );
}

async fn find_alice_inbox(world: &World) -> super::support::Answer {
    world
        .as_app(ALICE, &find_item("inbox", "IdOnly", 10, 0))
        .await
}

#[tokio::test]
async fn organization_ews_switches_block_apps() {
    use mailbridge_testkit::model::EwsAppPolicy;
    let world = World::start().await;
    let app_id = world.app.client_id;
    // Off for the organisation.
    world
        .emulator
        .update(|m| m.tenants[0].ews.enabled = Some(false));
    find_alice_inbox(&world)
        .await
        .assert_fault(403, "ErrorAccessDenied");
    // On, but the app is not on the allow list (what Microsoft's retirement enforces).
    world.emulator.update(|m| {
        m.tenants[0].ews.enabled = Some(true);
        m.tenants[0].ews.app_policy = Some(EwsAppPolicy::EnforceAllowList);
    });
    find_alice_inbox(&world)
        .await
        .assert_fault(403, "ErrorAccessDenied");
    // On the allow list: past the check (no mail servers here, so the operation fails).
    world
        .emulator
        .update(|m| m.tenants[0].ews.allowed_app_ids.push(app_id));
    find_alice_inbox(&world)
        .await
        .assert_fault(500, "ErrorInternalServerError");
    // A block list naming the app.
    world.emulator.update(|m| {
        m.tenants[0].ews.app_policy = Some(EwsAppPolicy::EnforceBlockList);
        m.tenants[0].ews.blocked_app_ids.push(app_id);
    });
    find_alice_inbox(&world)
        .await
        .assert_fault(403, "ErrorAccessDenied");
}
