//! `Retry-After` on every refusal (429 and 5xx), bounded, and retries within each
//! flow's own deadline: the cache's policy, the device code's lifetime, the code
//! redemption's few tries.

use std::sync::Arc;
use std::time::Duration;

use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::interactive::AuthorizationRequest;
use mailbridge_auth::scopes::{Grant, Transport, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions};
use mailbridge_testkit::robot::Person;
use mailbridge_types::ErrorClass;
use secrecy::SecretString;

use crate::scripted::{Answer, TOKENS, UNAVAILABLE, serve};
use crate::support::{MemoryStore, PASSWORD, world};

fn imap_scopes(grant: Grant) -> Vec<String> {
    scopes_for(Transport::Imap, grant, "https://graph.microsoft.com")
}

fn scripted_sign_in(base_url: &str) -> AccountSignIn {
    AccountSignIn {
        account: "helpdesk".into(),
        app: App {
            client_id: "6731de76-14a6-49ae-97bc-6eba6914391e".into(),
            credential: ClientCredential::Secret(SecretString::from("s3cr3t")),
        },
        authority: Authority::new(base_url, TenantSegment::parse("contoso.example").unwrap())
            .unwrap(),
        scopes: imap_scopes(Grant::AppOnly),
        delegated: false,
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
    }
}

fn sessions() -> Sessions<MemoryStore> {
    Sessions::new(
        TokenClient::new(&HttpOptions::default()).unwrap(),
        Arc::new(MemoryStore::default()),
        policy(),
    )
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_no_sooner_than_asked() {
    let server = serve(
        vec![
            Answer::new(503, UNAVAILABLE).header("retry-after", "1"),
            Answer::new(200, TOKENS),
        ],
        vec![],
    )
    .await;
    sessions()
        .access_token(&scripted_sign_in(&server.base_url))
        .await
        .unwrap();
    let times = server.hits_to("/token");
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "retried after {:?}, before the Retry-After of 1 s",
        times[1] - times[0]
    );
}

#[tokio::test]
async fn a_503_with_retry_after_as_an_http_date_is_throttled_for_that_long() {
    let in_a_minute = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
    let date = in_a_minute
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap()
        .replace("+0000", "GMT");
    let server = serve(
        vec![Answer::new(503, "<html>busy</html>").header("retry-after", &date)],
        vec![],
    )
    .await;
    let err = sessions()
        .access_token(&scripted_sign_in(&server.base_url))
        .await
        .unwrap_err();
    let ErrorClass::Throttled {
        retry_after: Some(wait),
    } = err.class()
    else {
        panic!("{:?}", err.class());
    };
    assert!(wait > Duration::from_secs(50) && wait <= Duration::from_mins(1));
    // Longer than the policy's longest wait: handed back, not retried early.
    assert_eq!(server.hits_to("/token").len(), 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_is_not_cut_short() {
    let server = serve(
        vec![Answer::new(429, UNAVAILABLE).header("retry-after", "120")],
        vec![],
    )
    .await;
    let err = sessions()
        .access_token(&scripted_sign_in(&server.base_url))
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Throttled {
            retry_after: Some(Duration::from_mins(2))
        }
    );
    assert_eq!(server.hits_to("/token").len(), 1);
}

#[tokio::test]
async fn device_code_polling_goes_on_through_a_503_and_a_429() {
    let w = world().await;
    w.emulator()
        .update_knobs(|k| k.device_code_interval_secs = 1);
    let client = w.client();
    let app = w.desktop_app();
    let authority = w.authority("contoso.example");
    let code = client
        .start_device_code(&app, &authority, &imap_scopes(Grant::Delegated))
        .await
        .unwrap();
    w.emulator().update_knobs(|k| {
        k.faults.token_5xx = 1;
        k.faults.token_429 = 1;
        k.faults.token_retry_after_secs = 1;
    });
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
    let statuses: Vec<u16> = polls.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [503, 429], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(polls[2].at - polls[1].at >= time::Duration::seconds(1));
}

#[tokio::test]
async fn device_code_polling_stops_when_the_wait_outlives_the_code() {
    let server = serve(
        vec![Answer::new(503, UNAVAILABLE).header("retry-after", "3600")],
        vec![Answer::new(
            200,
            r#"{"user_code":"ABCD-EFGH","device_code":"dc","verification_uri":"https://microsoft.com/devicelogin","expires_in":30,"interval":1,"message":"enter ABCD-EFGH"}"#,
        )],
    )
    .await;
    let sign_in = scripted_sign_in(&server.base_url);
    let client = TokenClient::new(&HttpOptions::default()).unwrap();
    let code = client
        .start_device_code(&sign_in.app, &sign_in.authority, &sign_in.scopes)
        .await
        .unwrap();
    let err = client
        .poll_device_code(&sign_in.app, &sign_in.authority, &code)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        ErrorClass::Throttled {
            retry_after: Some(Duration::from_hours(1))
        }
    );
    assert_eq!(server.hits_to("/token").len(), 1);
}

#[tokio::test]
async fn device_code_lifetime_from_the_server_is_bounded() {
    // An expires_in of 2^64-1 s: no overflow (it panicked), and polling goes on.
    let server = serve(
        vec![Answer::new(400, UNAVAILABLE)],
        vec![Answer::new(
            200,
            r#"{"user_code":"A","device_code":"dc","verification_uri":"https://microsoft.com/devicelogin","expires_in":18446744073709551615,"interval":1,"message":"m"}"#,
        )],
    )
    .await;
    let sign_in = scripted_sign_in(&server.base_url);
    let client = TokenClient::new(&HttpOptions::default()).unwrap();
    let code = client
        .start_device_code(&sign_in.app, &sign_in.authority, &sign_in.scopes)
        .await
        .unwrap();
    let err = client
        .poll_device_code(&sign_in.app, &sign_in.authority, &code)
        .await
        .unwrap_err();
    assert_eq!(err.oauth_error(), Some("temporarily_unavailable"));
}

async fn redeem_with_faults(
    faults: impl FnOnce(&mut mailbridge_testkit::Knobs),
) -> (Result<(), String>, Vec<u16>) {
    let w = world().await;
    let request = AuthorizationRequest::new(
        &w.desktop.client_id.to_string(),
        &w.authority("contoso.example"),
        &imap_scopes(Grant::Delegated),
        "http://localhost/",
        None,
    );
    let page = Person::new("alice@contoso.example", PASSWORD)
        .authorize(&request.url)
        .await
        .unwrap();
    let code = request.code_from_redirect(&page.url).unwrap();
    w.emulator().update_knobs(faults);
    let result = request
        .redeem(
            &w.client(),
            &w.desktop_app(),
            &w.authority("contoso.example"),
            &code,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let statuses = w
        .emulator()
        .requests_to("/oauth2/v2.0/token")
        .iter()
        .map(|r| r.status)
        .collect();
    (result, statuses)
}

#[tokio::test]
async fn code_redemption_goes_on_through_a_503_and_a_429() {
    let (result, statuses) = redeem_with_faults(|k| {
        k.faults.token_5xx = 1;
        k.faults.token_429 = 1;
        k.faults.token_retry_after_secs = 1;
    })
    .await;
    result.unwrap();
    assert_eq!(statuses, [503, 429, 200]);
}

#[tokio::test]
async fn code_redemption_gives_up_after_three_tries() {
    let (result, statuses) = redeem_with_faults(|k| k.faults.token_5xx = 10).await;
    let err = result.unwrap_err();
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(statuses, [503, 503, 503]);
}
