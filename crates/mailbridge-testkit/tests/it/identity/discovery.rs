//! Discovery documents, JWKS and instance discovery (microsoft-protocols.md §1.1).

use serde_json::Value;

use super::support::{assert_aad, world};

#[tokio::test]
async fn discovery_for_tenant_guid_and_domain_names_the_tenant_and_the_base_url() {
    let w = world().await;
    for seg in [w.tid.clone(), "contoso.example".to_owned()] {
        let resp = reqwest::get(w.url(&format!("/{seg}/v2.0/.well-known/openid-configuration")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "max-age=86400, private");
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert!(resp.headers().contains_key("x-ms-request-id"));
        assert!(resp.headers().contains_key("x-ms-ests-server"));
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["issuer"], format!("{}/{}/v2.0", w.base, w.tid));
        assert_eq!(
            doc["token_endpoint"],
            format!("{}/{}/oauth2/v2.0/token", w.base, w.tid)
        );
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/{}/oauth2/v2.0/authorize", w.base, w.tid)
        );
        assert_eq!(
            doc["device_authorization_endpoint"],
            format!("{}/{}/oauth2/v2.0/devicecode", w.base, w.tid)
        );
        assert_eq!(
            doc["jwks_uri"],
            format!("{}/{}/discovery/v2.0/keys", w.base, w.tid)
        );
        assert_eq!(doc["msgraph_host"], "graph.microsoft.com");
        assert_eq!(doc["cloud_instance_name"], "microsoftonline.com");
        assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
        assert_eq!(doc["tenant_region_scope"], "NA");
    }
}

#[tokio::test]
async fn discovery_for_common_organizations_and_consumers() {
    let w = world().await;
    for seg in ["common", "organizations"] {
        let doc: Value =
            reqwest::get(w.url(&format!("/{seg}/v2.0/.well-known/openid-configuration")))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(doc["issuer"], format!("{}/{{tenantid}}/v2.0", w.base));
        assert_eq!(
            doc["token_endpoint"],
            format!("{}/{seg}/oauth2/v2.0/token", w.base)
        );
    }
    let doc: Value = reqwest::get(w.url("/consumers/v2.0/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["issuer"],
        format!("{}/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0", w.base)
    );
}

#[tokio::test]
async fn discovery_follows_the_tenants_cloud() {
    let w = super::support::world_with(|m| {
        m.tenants[0].cloud = mailbridge_testkit::model::Cloud::UsGovHigh;
    })
    .await;
    let doc: Value =
        reqwest::get(w.url(&format!("/{}/v2.0/.well-known/openid-configuration", w.tid)))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(doc["msgraph_host"], "graph.microsoft.us");
    assert_eq!(doc["cloud_instance_name"], "microsoftonline.us");
    assert_eq!(
        doc["userinfo_endpoint"],
        "https://graph.microsoft.us/oidc/userinfo"
    );
}

#[tokio::test]
async fn unknown_tenant_on_discovery_is_invalid_tenant_90002() {
    let w = world().await;
    let resp = reqwest::get(w.url("/contoso.invalid/v2.0/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_aad(
        resp,
        400,
        "invalid_tenant",
        90002,
        Some("Tenant 'contoso.invalid' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
    )
    .await;
}

#[tokio::test]
async fn malformed_tenant_segment_is_900023() {
    let w = world().await;
    let resp = reqwest::get(w.url("/contoso%20corp/v2.0/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_aad(resp, 400, "invalid_request", 900_023, None).await;
}

#[tokio::test]
async fn jwks_publishes_the_signing_key_and_instance_discovery_names_the_host() {
    let w = world().await;
    let jwks: Value = reqwest::get(w.url("/common/discovery/v2.0/keys"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["kid"], w.emulator().signing_key().kid);
    assert!(key["x5c"][0].as_str().is_some_and(|c| !c.is_empty()));

    let inst: Value =
        reqwest::get(w.url("/common/discovery/instance?api-version=1.1&authorization_endpoint=x"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        inst["tenant_discovery_endpoint"],
        format!("{}/common/v2.0/.well-known/openid-configuration", w.base)
    );
    let host = w.base.trim_start_matches("http://");
    assert_eq!(inst["metadata"][0]["aliases"][0], host);
}
