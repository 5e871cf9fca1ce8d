//! The dashboard in a real browser against the real `mailbridge serve`: an IMAP
//! account watched on private Dovecot gets a message sent through the daemon's own
//! outbox (Postfix delivers it into Dovecot); the dashboard then shows it in the
//! account's chart and totals, its last sync, the outbox and parked counts, the app's
//! client secret expiring in 10 days under "What expires", and passes axe-core. A
//! user sees only the accounts they own. Saves `docs/screenshots/dashboard.png`.

use mailbridge_testkit::browser::screenshots_dir;
use serde_json::json;

use super::daemon_world::{BOB, world};
use super::web_world::{
    Browser, PASSWORD, add_person, assert_accessible, click_through, element, fill, serve_with,
    set_up_administrator, text, until_page,
};

fn account_id(accounts: &serde_json::Value, name: &str) -> String {
    accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_dashboard_shows_delivered_mail_queues_and_what_expires_and_a_user_only_their_own() {
    let w = world().await;
    // The app's client secret expires in 10 days, as the portal showed.
    let config = w.dir.path().join("mailbridge.toml");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let text_config = std::fs::read_to_string(&config).unwrap().replace(
        r#"credential = { type = "secret" }"#,
        &format!(r#"credential = {{ type = "secret", expires = "{expires}" }}"#),
    );
    assert!(text_config.contains(&expires));
    std::fs::write(&config, text_config).unwrap();
    let serve = serve_with(w.dir.path(), &config).await;
    let accounts = serve
        .call(reqwest::Method::GET, "/api/v1/accounts", None)
        .await;
    let bob = account_id(&accounts, "bob-imap");
    let alice = account_id(&accounts, "alice-smtp");
    let archive = w.archive().display().to_string();
    serve
        .call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(json!({"name": "archive", "settings": {"kind": "folder", "path": archive}})),
        )
        .await;
    serve
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(json!({"routes": [{"name": "all", "sinks": ["archive"]}]})),
        )
        .await;

    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    driver.goto(&serve.setup_link).await.unwrap();
    set_up_administrator(driver, &serve).await;
    until_page(driver, "bob's watcher is idle", |p| p.contains("Idle")).await;

    // One message through alice's outbox, Postfix and Dovecot to bob's watcher.
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/accounts/{alice}/outbox", serve.base))
        .bearer_auth(&serve.token)
        .header("Idempotency-Key", "dashboard-1")
        .json(&json!({"to": [BOB], "subject": "For the chart", "text": "Counted per hour."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    let row = r#"tr[data-account="bob-imap"]"#;
    until_page(driver, "the delivered message is counted", |p| {
        p.contains(r#"data-messages="1""#) && p.contains("1 in all")
    })
    .await;
    let chart = element(driver, &format!("{row} svg.dashboard-chart"))
        .await
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap();
    assert!(chart.contains("oldest first"), "{chart}");
    assert!(chart.ends_with("1 in all."), "{chart}");
    assert_eq!(
        driver
            .find_all(fantoccini::Locator::Css(&format!(
                "{row} svg.dashboard-chart rect"
            )))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(text(driver, "#total-messages").await, "1");
    assert_eq!(text(driver, "#total-accounts").await, "2");
    // The message left the outbox; nothing parked.
    until_page(driver, "the outbox is empty again", |p| {
        p.contains(r#"data-due="0" data-sending="0""#) && !p.contains(r#"data-sending="1""#)
    })
    .await;
    assert_eq!(
        text(driver, &format!("{row} .queue")).await,
        "0 due, 0 sending"
    );
    assert_eq!(text(driver, &format!("{row} .parked")).await, "0");
    assert_eq!(text(driver, "#total-parked").await, "0");
    // The last sync is a time; the latency a number.
    let last = element(driver, &format!("{row} .last-sync time"))
        .await
        .attr("datetime")
        .await
        .unwrap()
        .unwrap();
    assert!(last.ends_with('Z'), "{last}");
    let latency = text(driver, &format!("{row} .latency")).await;
    assert!(
        latency.ends_with(" ms") || latency.ends_with(" s"),
        "{latency}"
    );

    // A message for a relay that refuses connections waits in its account's outbox.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let made = serve
        .call(
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "dave-out", "address": "dave@example.org", "sign_in": "password",
                        "password": "pw",
                        "outgoing": {"transport": "smtp", "host": "127.0.0.1", "port": closed, "tls": "none"}})),
        )
        .await;
    let dave = made["id"].as_str().unwrap().to_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/accounts/{dave}/outbox", serve.base))
        .bearer_auth(&serve.token)
        .header("Idempotency-Key", "dashboard-2")
        .json(&json!({"to": [BOB], "subject": "Waits", "text": "The relay is down."}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    until_page(driver, "dave's message is due", |p| {
        p.contains(r#"data-due="1" data-sending="0""#)
    })
    .await;
    let dave_row = r#"tr[data-account="dave-out"]"#;
    assert_eq!(
        text(driver, &format!("{dave_row} .queue")).await,
        "1 due, 0 sending"
    );
    assert_eq!(text(driver, "#total-due").await, "1");
    assert_eq!(text(driver, "#total-accounts").await, "3");

    // What expires: the app's client secret, in 10 days (9 once a moment passed).
    let expiring = text(driver, "#expires").await;
    assert!(
        expiring.contains("Client secret of app “connector”"),
        "{expiring}"
    );
    assert!(
        expiring.contains("expires in 9 days") || expiring.contains("expires in 10 days"),
        "{expiring}"
    );
    assert_accessible(driver, "the dashboard with activity and what expires").await;
    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("dashboard.png"), png).unwrap();

    // A user sees only their own account (and no one else's counts or apps).
    add_person(w.dir.path(), "carol", "user").await;
    let made = serve
        .call(
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "carol-mail", "address": "carol@example.org", "sign_in": "password",
                        "incoming": {"transport": "imap", "host": "127.0.0.1", "port": 1, "tls": "none"}})),
        )
        .await;
    let carol = made["id"].as_str().unwrap().to_owned();
    serve
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{carol}/owner"),
            Some(json!({"owner": "carol"})),
        )
        .await;
    click_through(driver, ".signout button").await;
    fill(driver, "name", "carol").await;
    fill(driver, "password", PASSWORD).await;
    click_through(driver, "#signin-submit").await;
    element(driver, r#"tr[data-account="carol-mail"]"#).await;
    let page = driver.source().await.unwrap();
    assert!(!page.contains("bob-imap"), "{page}");
    assert!(!page.contains("alice-smtp"), "{page}");
    assert!(!page.contains("connector"), "{page}");
    assert_eq!(text(driver, "#total-accounts").await, "1");
    assert_eq!(text(driver, "#total-messages").await, "0");
    assert_accessible(driver, "a user's dashboard").await;
    browser.quit().await;
    serve.stop().await;
}
