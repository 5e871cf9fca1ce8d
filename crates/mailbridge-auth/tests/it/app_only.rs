//! Client credentials with a secret and with a certificate; errors with their fix; the
//! cache's single flight and early expiry.

use std::sync::Arc;

use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::App;
use mailbridge_auth::credential::{AssertionAlgorithm, CertificateCredential, ClientCredential};
use mailbridge_auth::scopes::{Grant, Transport, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions};
use mailbridge_types::{Clock as _, ErrorClass};
use secrecy::ExposeSecret;

use crate::support::{MemoryStore, SECRET, claims, world};

fn exchange_scopes() -> Vec<String> {
    scopes_for(
        Transport::Imap,
        Grant::AppOnly,
        "https://graph.microsoft.com",
    )
}

#[tokio::test]
async fn client_secret_gets_an_exchange_token_with_roles() {
    let w = world().await;
    let set = w
        .client()
        .client_credentials(
            &w.daemon_app(SECRET),
            &w.authority("contoso.example"),
            &exchange_scopes(),
        )
        .await
        .unwrap();
    let c = claims(set.access_token.expose_secret());
    assert_eq!(c["aud"], "https://outlook.office365.com");
    assert_eq!(c["roles"], serde_json::json!(["IMAP.AccessAsApp"]));
    assert_eq!(c["oid"], w.daemon.service_principal_id.to_string());
    assert!(set.refresh_token.is_none());
    assert!(set.expires_at > w.clock.now() + time::Duration::minutes(50));
}

#[tokio::test]
async fn certificate_assertions_ps256_and_rs256_are_accepted() {
    let w = world().await;
    for alg in [AssertionAlgorithm::Ps256, AssertionAlgorithm::Rs256] {
        let mut cred = CertificateCredential::from_pem(
            &w.certificate.certificate_pem,
            &w.certificate.key_pem,
            "cert.pem",
            "key.pem",
        )
        .unwrap();
        cred.algorithm = alg;
        assert_eq!(cred.x5t_s256(), w.certificate.x5t_s256());
        let app = App {
            client_id: w.daemon.client_id.to_string(),
            credential: ClientCredential::Certificate(cred),
        };
        let set = w
            .client()
            .client_credentials(&app, &w.authority(&w.tenant_id), &exchange_scopes())
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(claims(set.access_token.expose_secret())["appidacr"], "2");
    }
    let assertion = &w.emulator().requests_to("/oauth2/v2.0/token")[0];
    assert_eq!(
        assertion.param("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
}

#[tokio::test]
async fn secret_id_instead_of_value_names_the_portal_fix() {
    let w = world().await;
    let secret_id = w.daemon.secrets[0].id.to_string();
    let err = w
        .client()
        .client_credentials(
            &w.daemon_app(&secret_id),
            &w.authority("contoso.example"),
            &exchange_scopes(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    let text = err.to_string();
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(
        text.contains("copy the secret's Value, not its Secret ID"),
        "{text}"
    );
}

#[tokio::test]
async fn app_only_against_common_is_refused_before_any_request() {
    let w = world().await;
    let err = w
        .client()
        .client_credentials(
            &w.daemon_app(SECRET),
            &w.authority("common"),
            &exchange_scopes(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured);
    assert!(err.to_string().contains("Directory (tenant) ID"), "{err}");
    assert_eq!(w.token_requests(), 0);
}

fn daemon_sign_in(w: &crate::support::World) -> AccountSignIn {
    AccountSignIn {
        account: "helpdesk".into(),
        app: w.daemon_app(SECRET),
        authority: w.authority("contoso.example"),
        scopes: exchange_scopes(),
        delegated: false,
    }
}

#[tokio::test]
async fn hundred_concurrent_callers_cost_one_token_request() {
    let w = world().await;
    let sessions = Arc::new(Sessions::new(
        w.client(),
        Arc::new(MemoryStore::default()),
        RetryPolicy::default(),
    ));
    let sign_in = Arc::new(daemon_sign_in(&w));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (s, i) = (sessions.clone(), sign_in.clone());
        tasks.push(tokio::spawn(async move {
            s.access_token(&i).await.unwrap().expose_secret().to_owned()
        }));
    }
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(w.token_requests(), 1);
}

#[tokio::test]
async fn token_counts_as_expired_five_minutes_early() {
    let w = world().await;
    let sessions = Sessions::new(
        w.client(),
        Arc::new(MemoryStore::default()),
        RetryPolicy::default(),
    );
    let sign_in = daemon_sign_in(&w);
    let first = sessions.access_token(&sign_in).await.unwrap();
    // The emulator issues 3599 s tokens: at +54 min the cached one is still used...
    w.clock.advance(time::Duration::minutes(54));
    let same = sessions.access_token(&sign_in).await.unwrap();
    assert_eq!(first.expose_secret(), same.expose_secret());
    assert_eq!(w.token_requests(), 1);
    // ...and at +55 min 1 s (less than 5 minutes left) a new one is fetched.
    w.clock.advance(time::Duration::seconds(61));
    let fresh = sessions.access_token(&sign_in).await.unwrap();
    assert_ne!(first.expose_secret(), fresh.expose_secret());
    assert_eq!(w.token_requests(), 2);
}

#[tokio::test]
async fn throttled_token_endpoint_is_retried_after_retry_after() {
    let w = world().await;
    w.emulator().update_knobs(|k| {
        k.faults.token_429 = 2;
        k.faults.token_retry_after_secs = 1;
    });
    let sessions = Sessions::new(
        w.client(),
        Arc::new(MemoryStore::default()),
        RetryPolicy {
            attempts: 3,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_secs(2),
        },
    );
    sessions.access_token(&daemon_sign_in(&w)).await.unwrap();
    let statuses: Vec<u16> = w
        .emulator()
        .requests_to("/oauth2/v2.0/token")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    let times: Vec<_> = w
        .emulator()
        .requests_to("/oauth2/v2.0/token")
        .iter()
        .map(|r| r.at)
        .collect();
    assert!(
        times[1] - times[0] >= time::Duration::seconds(1),
        "waited Retry-After"
    );
}

#[tokio::test]
async fn https_authority_is_trusted_through_an_extra_ca_and_not_otherwise() {
    use mailbridge_auth::authority::{Authority, TenantSegment};
    use mailbridge_auth::client::{HttpOptions, TokenClient};
    use mailbridge_testkit::crypto::TestCa;
    use mailbridge_testkit::{Emulator, EmulatorServer};

    let w = world().await;
    let model = w.emulator().read(Clone::clone);
    let ca = TestCa::generate().unwrap();
    let server = EmulatorServer::start_https(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        &ca,
    )
    .await
    .unwrap();
    assert!(server.base_url().starts_with("https://localhost:"));
    let authority = Authority::new(
        &server.base_url(),
        TenantSegment::parse("contoso.example").unwrap(),
    )
    .unwrap();
    let trusting = TokenClient::new(&HttpOptions {
        extra_ca_pem: Some(ca.certificate_pem.clone()),
        timeout: None,
    })
    .unwrap();
    trusting
        .client_credentials(&w.daemon_app(SECRET), &authority, &exchange_scopes())
        .await
        .unwrap();
    let plain = TokenClient::new(&HttpOptions::default()).unwrap();
    let err = plain
        .client_credentials(&w.daemon_app(SECRET), &authority, &exchange_scopes())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Misconfigured, "{err}");
    assert!(err.to_string().contains("extra_ca_file"), "{err}");
}

#[tokio::test]
async fn token_without_roles_is_explained_as_missing_admin_consent() {
    use mailbridge_auth::claims::TokenClaims;
    let w = crate::support::world_with(|m| {
        m.tenants[0].apps[1].admin_consent_granted = false;
    })
    .await;
    let set = w
        .client()
        .client_credentials(
            &w.daemon_app(SECRET),
            &w.authority("contoso.example"),
            &exchange_scopes(),
        )
        .await
        .unwrap();
    let claims = TokenClaims::decode(set.access_token.expose_secret()).unwrap();
    let problems = claims.problems(Transport::Imap, Grant::AppOnly);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(text.contains("carries no roles"), "{text}");
    assert!(text.contains("Grant admin consent"), "{text}");
    assert!(text.contains("Office 365 Exchange Online"), "{text}");
    // With consent the same request yields a token without problems.
    w.emulator()
        .update(|m| m.tenants[0].apps[1].admin_consent_granted = true);
    let set = w
        .client()
        .client_credentials(
            &w.daemon_app(SECRET),
            &w.authority("contoso.example"),
            &exchange_scopes(),
        )
        .await
        .unwrap();
    assert!(
        TokenClaims::decode(set.access_token.expose_secret())
            .unwrap()
            .problems(Transport::Imap, Grant::AppOnly)
            .is_empty()
    );
}

#[tokio::test]
async fn debug_output_of_credentials_and_tokens_shows_no_secret() {
    use mailbridge_auth::interactive::Pkce;
    let w = world().await;
    let set = w
        .client()
        .client_credentials(
            &w.daemon_app(SECRET),
            &w.authority("contoso.example"),
            &exchange_scopes(),
        )
        .await
        .unwrap();
    let token = set.access_token.expose_secret().to_owned();
    let cert = CertificateCredential::from_pem(
        &w.certificate.certificate_pem,
        &w.certificate.key_pem,
        "c",
        "k",
    )
    .unwrap();
    let pkce = Pkce::from_verifier("M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag");
    let outputs = [
        format!("{set:?}"),
        format!("{:?}", w.daemon_app(SECRET)),
        format!("{:?}", ClientCredential::Certificate(cert)),
        format!("{pkce:?}"),
    ];
    for out in &outputs {
        assert!(!out.contains(SECRET), "{out}");
        assert!(!out.contains(&token[..40]), "{out}");
        assert!(!out.contains("BEGIN PRIVATE KEY"), "{out}");
        assert!(!out.contains("M25iVXpKU3pu"), "{out}");
    }
}

/// A "token endpoint" that answers with far more than any token set (a wrong authority
/// host, a captive portal): refused at the bound, not read into memory whole, whether
/// it announces its length or streams without one.
#[tokio::test]
async fn an_oversized_token_answer_is_refused_at_the_bound() {
    use mailbridge_auth::authority::{Authority, TenantSegment};
    use mailbridge_auth::client::{HttpOptions, TokenClient};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let w = world().await;
    for announced in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let head = if announced {
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 8388608\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
            };
            socket.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0usize;
            while sent < 8 * 1024 * 1024 {
                if socket.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let authority =
            Authority::new(&base, TenantSegment::parse("contoso.example").unwrap()).unwrap();
        let err = TokenClient::new(&HttpOptions::default())
            .unwrap()
            .client_credentials(&w.daemon_app(SECRET), &authority, &exchange_scopes())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("more than 1048576 bytes")
                && err.to_string().contains("authority host"),
            "announced {announced}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::Misconfigured, "{err}");
        server.abort();
    }
}
