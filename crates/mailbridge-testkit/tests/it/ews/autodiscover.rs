//! Autodiscover v2 (`/autodiscover/autodiscover.json`).

use super::support::{ALICE, CAROL, World};

async fn get(world: &World, path_and_query: &str) -> reqwest::Response {
    world
        .http
        .get(format!("{}{path_and_query}", world.server.base_url()))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn known_mailbox_gets_the_ews_url() {
    let world = World::start().await;
    let base = world.server.base_url();
    let response = get(
        &world,
        &format!("/autodiscover/autodiscover.json/v1.0/{ALICE}?Protocol=EWS"),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        format!(r#"{{"Protocol":"EWS","Url":"{base}/EWS/Exchange.asmx"}}"#)
    );
}

#[tokio::test]
async fn protocol_is_matched_case_insensitively_and_echoed_as_sent() {
    let world = World::start().await;
    let base = world.server.base_url();
    let response = get(
        &world,
        &format!("/autodiscover/autodiscover.json/v1.0/{ALICE}?Protocol=Autodiscoverv1"),
    )
    .await;
    assert_eq!(
        response.text().await.unwrap(),
        format!(r#"{{"Protocol":"Autodiscoverv1","Url":"{base}/autodiscover/autodiscover.xml"}}"#)
    );
    let response = get(
        &world,
        "/autodiscover/autodiscover.json?Email=alice%40contoso.example&Protocol=activesync",
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!(r#"{{"Protocol":"activesync","Url":"{base}/Microsoft-Server-ActiveSync"}}"#)
    );
}

#[tokio::test]
async fn unknown_addresses_are_redirected_to_the_query_form_with_a_count() {
    let world = World::start().await;
    let base = world.server.base_url();
    for address in [
        "nonexistent@contoso.example",
        "someone@unknown.example",
        CAROL,
    ] {
        let response = get(
            &world,
            &format!("/autodiscover/autodiscover.json/v1.0/{address}?Protocol=Autodiscoverv1"),
        )
        .await;
        assert_eq!(response.status().as_u16(), 302, "{address}");
        let encoded = address.replace('@', "%40");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(
            location,
            format!(
                "{base}/autodiscover/autodiscover.json?Email={encoded}&Protocol=Autodiscoverv1&RedirectCount=1"
            )
        );
        assert!(response.text().await.unwrap().contains("Object moved"));
        // Following it only redirects again, one count higher.
        let again = world.http.get(&location).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 302);
        assert!(
            again.headers()["location"]
                .to_str()
                .unwrap()
                .ends_with("&RedirectCount=2")
        );
    }
}

#[tokio::test]
async fn imap_is_not_a_discoverable_protocol() {
    let world = World::start().await;
    let response = get(
        &world,
        &format!("/autodiscover/autodiscover.json/v1.0/{ALICE}?Protocol=Imap"),
    )
    .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ErrorCode"], "InvalidProtocol");
    assert!(
        body["ErrorMessage"]
            .as_str()
            .unwrap()
            .starts_with("The given protocol value 'Imap' is invalid. Supported values are '")
    );
}
