//! The administration pages in a real browser (Debian's Chromium) against the real
//! `mailbridge serve`: an administrator adds a person and gives an app a new client
//! secret, retries and drops a parked delivery (a webhook that refuses parks a
//! message received over real Postfix and Dovecot), sees a provider in use refuse
//! deletion naming its account, and reads the audit log with who, what and from
//! where (changes made through the API and through the pages); a `user` gets the
//! refusal page for the administration pages and sees no link to them; an auditor
//! sees the lists without forms. Saves the apps page's screenshot to
//! `docs/screenshots/admin.png`.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use mailbridge_testkit::browser::screenshots_dir;
use reqwest::Method;
use serde_json::{Value, json};

use super::daemon_world::{BOB, world};
use super::web_world::{
    Browser, DEADLINE, PASSWORD, Serve, assert_accessible, click, element, fill, path, serve,
    serve_with, set_up_administrator, text, until_page,
};

const APP_SECRET: &str = "Qx~8Q~web.admin.first-secret-0123456789";
const NEW_SECRET: &str = "Qx~8Q~web.admin.second-secret-9876543210";
const HOOK_SECRET: &str = "whsec-web-admin-0123456789";

/// A webhook receiver answering `status` and counting the requests it got.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    requests: Arc<Mutex<usize>>,
}

async fn receiver(status: u16) -> Receiver {
    let status = Arc::new(AtomicU16::new(status));
    let requests = Arc::new(Mutex::new(0));
    let (s, r) = (status.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (s, r) = (s.clone(), r.clone());
            async move {
                *r.lock().unwrap() += 1;
                axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://{addr}/hook"),
        status,
        requests,
    }
}

async fn account_id(serve: &Serve, name: &str) -> String {
    let accounts = serve.call(Method::GET, "/api/v1/accounts", None).await;
    accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no account {name}: {accounts}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs in as `name` with [`PASSWORD`] (signing out first when someone is).
async fn sign_in_as(driver: &Client, serve: &Serve, name: &str) {
    driver
        .goto(&format!("{}/signin", serve.base))
        .await
        .unwrap();
    if path(driver).await != "/signin" {
        click(driver, ".signout button").await;
        element(driver, "#signin-submit").await;
    }
    fill(driver, "name", name).await;
    fill(driver, "password", PASSWORD).await;
    click(driver, "#signin-submit").await;
    element(driver, ".site-nav").await;
}

async fn goto(driver: &Client, serve: &Serve, page: &str) {
    driver.goto(&format!("{}{page}", serve.base)).await.unwrap();
}

/// The `href`s of the navigation's links.
async fn nav_links(driver: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for link in driver.find_all(Locator::Css(".site-nav a")).await.unwrap() {
        out.push(link.attr("href").await.unwrap().unwrap_or_default());
    }
    out
}

/// How many elements `css` matches now (without waiting).
async fn count(driver: &Client, css: &str) -> usize {
    driver.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Adds a person on `/users` (the browser is signed in as an administrator).
async fn add_person(driver: &Client, serve: &Serve, name: &str, role: &str) {
    goto(driver, serve, "/users").await;
    fill(driver, "new-name", name).await;
    element(driver, &format!("#new-role option[value=\"{role}\"]"))
        .await
        .click()
        .await
        .unwrap();
    fill(driver, "new-password", PASSWORD).await;
    click(driver, "#add-user-submit").await;
    assert!(
        text(driver, "#users-done").await.contains("was added"),
        "adding {name}"
    );
    assert!(
        text(driver, &format!("tr[data-user=\"{name}\"] .role"))
            .await
            .len()
            > 1
    );
}

#[tokio::test]
async fn an_administrator_manages_people_apps_parked_deliveries_and_providers_and_reads_the_audit_log()
 {
    let w = world().await;
    let serve = serve_with(w.dir.path(), &w.dir.path().join("mailbridge.toml")).await;
    let api_name = serve.call(Method::GET, "/api/v1/whoami", None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Through the API: an app kept in the store, a provider an account is made from,
    // and a webhook that refuses every message bob-imap receives.
    let app = serve
        .call(
            Method::POST,
            "/api/v1/apps",
            Some(json!({
                "name": "docs-app",
                "tenant": "contoso.example",
                "client_id": "11111111-2222-3333-4444-555555555555",
                "credential": {"type": "secret"},
                "secret": APP_SECRET,
            })),
        )
        .await;
    let app_id = app["id"].as_str().unwrap().to_owned();
    serve
        .call(
            Method::POST,
            "/api/v1/providers",
            Some(json!({
                "id": "example-mail",
                "name": "Example Mail",
                "incoming": {"transport": "imap", "host": "imap.example.org", "port": 993, "tls": "implicit"},
                "outgoing": {"transport": "smtp", "host": "smtp.example.org", "port": 587, "tls": "starttls"},
                "domains": ["example.org"],
            })),
        )
        .await;
    serve
        .call(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"address": "carol@example.org", "provider": "example-mail", "password": "Carol-pw-1"})),
        )
        .await;
    let hook = receiver(404).await;
    serve
        .call(
            Method::POST,
            "/api/v1/sinks",
            Some(json!({
                "name": "helpdesk",
                "settings": {"kind": "webhook", "url": hook.url, "allow_private_addresses": true},
                "secret": HOOK_SECRET,
            })),
        )
        .await;
    let bob = account_id(&serve, "bob-imap").await;
    let alice = account_id(&serve, "alice-smtp").await;
    serve
        .call(
            Method::PUT,
            &format!("/api/v1/accounts/{bob}/watch"),
            Some(json!({"routes": [{"name": "tickets", "sinks": ["helpdesk"]}]})),
        )
        .await;
    serve
        .call(
            Method::POST,
            &format!("/api/v1/accounts/{alice}/outbox"),
            Some(json!({"to": [BOB], "subject": "Printer on fire", "text": "Parked by a refusing webhook."})),
        )
        .await;

    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    assert_eq!(
        nav_links(driver).await,
        [
            "/",
            "/accounts",
            "/apps",
            "/providers",
            "/outbox",
            "/parked",
            "/users",
            "/settings",
            "/audit"
        ]
    );

    // A person added on /users.
    add_person(driver, &serve, "carol", "user").await;

    // A new client secret for the app: write-only, never shown back.
    click(driver, ".site-nav a[href=\"/apps\"]").await;
    let row = "tr[data-app=\"docs-app\"]";
    assert!(
        text(driver, &format!("{row} .credential"))
            .await
            .contains("Client secret")
    );
    // Empty: refused next to the field.
    fill(driver, &format!("expires-{app_id}"), "").await;
    driver
        .execute(
            &format!("document.getElementById('secret-{app_id}').removeAttribute('required');"),
            Vec::new(),
        )
        .await
        .unwrap();
    click(driver, &format!("{row} .save-secret")).await;
    assert!(
        text(driver, &format!("#secret-{app_id}-error"))
            .await
            .contains("Certificates & secrets")
    );
    fill(driver, &format!("secret-{app_id}"), NEW_SECRET).await;
    element(driver, &format!("#expires-{app_id}"))
        .await
        .send_keys("01022027")
        .await
        .unwrap();
    click(driver, &format!("{row} .save-secret")).await;
    assert!(
        text(driver, "#apps-done")
            .await
            .contains("never shown again")
    );
    let credential = text(driver, &format!("{row} .credential")).await;
    assert!(credential.contains("Expires"), "{credential}");
    assert!(!driver.source().await.unwrap().contains(NEW_SECRET));
    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("admin.png"), png).unwrap();

    // Or a certificate instead: a paste that is not one is refused next to its
    // field; the real one is kept 0600 and its expiry read from it.
    let cert = mailbridge_testkit::crypto::CertificateCredential::generate("docs-app").unwrap();
    click(driver, &format!("{row} summary")).await;
    fill(
        driver,
        &format!("certificate-{app_id}"),
        "not a certificate",
    )
    .await;
    fill(driver, &format!("key-{app_id}"), &cert.key_pem).await;
    click(driver, &format!("{row} .save-certificate")).await;
    assert!(
        text(driver, &format!("#certificate-{app_id}-error"))
            .await
            .contains("PEM")
    );
    fill(
        driver,
        &format!("certificate-{app_id}"),
        &cert.certificate_pem,
    )
    .await;
    fill(driver, &format!("key-{app_id}"), &cert.key_pem).await;
    click(driver, &format!("{row} .save-certificate")).await;
    assert!(text(driver, "#apps-done").await.contains("new certificate"));
    let credential = text(driver, &format!("{row} .credential")).await;
    assert!(
        credential.contains("Certificate") && credential.contains("Expires"),
        "{credential}"
    );
    let keys: Vec<_> = std::fs::read_dir(w.data().join("certificates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&keys[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The parked delivery: retried (the webhook refuses again: asked once more),
    // then dropped.
    goto(driver, &serve, "/parked").await;
    until_page(driver, "a delivery is parked", |p| {
        p.contains("data-id=") && p.contains("bob-imap")
    })
    .await;
    let asked = *hook.requests.lock().unwrap();
    assert!(asked >= 1);
    assert!(text(driver, "#parked td").await.contains("bob-imap"));
    click(driver, "#parked .retry").await;
    assert!(text(driver, "#parked-done").await.contains("due now"));
    let started = Instant::now();
    while *hook.requests.lock().unwrap() == asked {
        assert!(
            started.elapsed() < DEADLINE,
            "the retry never reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    goto(driver, &serve, "/parked").await;
    click(driver, "#parked .drop").await;
    assert!(text(driver, "#parked-done").await.contains("dropped"));
    element(driver, "#parked-empty").await;
    hook.status.store(200, Ordering::SeqCst);

    // The outbox shows the message alice-smtp sent, newest first.
    click(driver, ".site-nav a[href=\"/outbox\"]").await;
    until_page(driver, "the sent message is in the outbox", |p| {
        p.contains("<td>alice-smtp</td>") && p.contains("<td>sent</td>")
    })
    .await;

    // A provider in use refuses deletion and names the account using it.
    goto(driver, &serve, "/providers").await;
    let provider_row = "tr[data-provider=\"example-mail\"]";
    assert_eq!(
        text(driver, &format!("{provider_row} .used-by")).await,
        "carol@example.org"
    );
    assert_eq!(
        count(driver, "tr[data-provider=\"gmail\"] .delete").await,
        0
    );
    click(driver, &format!("{provider_row} .delete")).await;
    let refusal = text(driver, "#provider-error").await;
    assert!(refusal.contains("carol@example.org"), "{refusal}");
    element(driver, provider_row).await;

    // The audit log: the pages' changes by the person, the API's by its token, each
    // from the client's address; no secret anywhere.
    click(driver, ".site-nav a[href=\"/audit\"]").await;
    let rows = driver
        .find_all(Locator::Css("#audit tbody tr"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for row in rows {
        seen.push(row.text().await.unwrap());
    }
    let has = |who: &str, action: &str, object: &str| {
        seen.iter().any(|r| {
            r.contains(who) && r.contains(action) && r.contains(object) && r.contains("127.0.0.1")
        })
    };
    assert!(
        has("root", "dropped", "parked delivery bob-imap"),
        "{seen:#?}"
    );
    assert!(
        has("root", "retried", "parked delivery bob-imap"),
        "{seen:#?}"
    );
    assert!(
        has("root", "new client secret", "app docs-app"),
        "{seen:#?}"
    );
    assert!(has("root", "new certificate", "app docs-app"), "{seen:#?}");
    assert!(has("root", "created", "person carol"), "{seen:#?}");
    assert!(has(&api_name, "created", "app docs-app"), "{seen:#?}");
    assert!(has(&api_name, "changed", "watch bob-imap"), "{seen:#?}");
    assert!(has(&api_name, "created", "sink helpdesk"), "{seen:#?}");
    assert!(seen[0].contains("dropped"), "newest first: {seen:#?}");
    assert!(
        seen.iter()
            .filter(|r| r.contains("root"))
            .all(|r| r.contains("person"))
    );
    let page = driver.source().await.unwrap();
    for secret in [APP_SECRET, NEW_SECRET, HOOK_SECRET, &cert.key_pem] {
        assert!(!page.contains(secret));
    }
    // The API reads the same log.
    let log: Value = serve.call(Method::GET, "/api/v1/audit", None).await;
    assert_eq!(log[0]["action"], "drop");
    assert_eq!(log[0]["actor"], "root");
    assert_eq!(log[0]["actor_kind"], "person");
    assert_eq!(log[0]["client"], "127.0.0.1");

    // Every administration page, with its forms, passes axe-core at both widths.
    for page in [
        "/apps",
        "/providers",
        "/outbox",
        "/parked",
        "/users",
        "/settings",
        "/audit",
    ] {
        goto(driver, &serve, page).await;
        assert_accessible(driver, page).await;
    }

    browser.quit().await;
    let log = std::fs::read_to_string(&serve.log).unwrap();
    for secret in [APP_SECRET, NEW_SECRET, HOOK_SECRET, PASSWORD] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    serve.stop().await;
}

#[tokio::test]
async fn a_user_is_refused_the_administration_pages_and_an_auditor_reads_without_forms() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;
    let browser = Browser::start("en-US,en", 390, 844).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    add_person(driver, &serve, "carol", "user").await;
    add_person(driver, &serve, "dave", "auditor").await;

    // A token made on the page is shown once, never listed with its value.
    fill(driver, "token-name", "portal").await;
    fill(driver, "token-user", "carol").await;
    click(driver, "#add-token-submit").await;
    let token = text(driver, "#new-token").await;
    assert!(token.starts_with("mbt_"), "{token}");
    goto(driver, &serve, "/users").await;
    assert!(!driver.source().await.unwrap().contains(&token));
    element(driver, "tr[data-token=\"portal\"]").await;
    let whoami = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", serve.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(whoami["user"], "carol");

    // A provider defined on its page: each mistake named next to its field.
    goto(driver, &serve, "/providers").await;
    fill(driver, "provider-id", "example-mail").await;
    fill(driver, "provider-name", "Example Mail").await;
    fill(driver, "incoming-host", "imap.example.org").await;
    fill(driver, "incoming-port", "99999").await;
    fill(driver, "provider-domains", "example.org").await;
    click(driver, "#add-provider-submit").await;
    assert!(
        text(driver, "#incoming-port-error")
            .await
            .contains("1 to 65535")
    );
    fill(driver, "incoming-port", "993").await;
    fill(driver, "provider-domains", "example.org, not-a-domain").await;
    click(driver, "#add-provider-submit").await;
    assert!(
        text(driver, "#provider-domains-error")
            .await
            .contains("a domain name")
    );
    fill(driver, "provider-domains", "example.org").await;
    fill(driver, "outgoing-host", "smtp.example.org").await;
    fill(driver, "outgoing-port", "587").await;
    element(driver, "#outgoing-tls option[value=\"starttls\"]")
        .await
        .click()
        .await
        .unwrap();
    click(driver, "#add-provider-submit").await;
    assert!(text(driver, "#providers-done").await.contains("saved"));
    assert!(
        text(driver, "tr[data-provider=\"example-mail\"]")
            .await
            .contains("IMAP imap.example.org:993")
    );
    let domains = serve.call(Method::GET, "/api/v1/domains", None).await;
    assert!(
        domains
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["domain"] == "example.org" && d["provider"] == "example-mail"),
        "{domains}"
    );

    // carol (user): the navigation has no administration link; the pages refuse.
    sign_in_as(driver, &serve, "carol").await;
    assert_eq!(
        nav_links(driver).await,
        ["/", "/accounts", "/outbox", "/parked"]
    );
    // On a phone-sized window the navigation wraps: nothing wider than the window.
    let widths = driver
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            Vec::new(),
        )
        .await
        .unwrap();
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(inner <= 500 && scroll <= inner, "{widths}");
    for page in ["/apps", "/providers", "/users", "/settings", "/audit"] {
        goto(driver, &serve, page).await;
        assert_eq!(text(driver, "h1").await, "Refused", "{page}");
        assert!(
            text(driver, "#message")
                .await
                .contains("may not open this page"),
            "{page}"
        );
    }
    for page in ["/outbox", "/parked"] {
        goto(driver, &serve, page).await;
        assert_ne!(text(driver, "h1").await, "Refused", "{page}");
    }
    // The API refuses the same person's role the same way.
    let refused = reqwest::Client::new()
        .get(format!("{}/api/v1/audit", serve.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // dave (auditor): every list, no form.
    sign_in_as(driver, &serve, "dave").await;
    assert_eq!(nav_links(driver).await.len(), 9);
    for (page, list) in [
        ("/users", "#users"),
        ("/providers", "#providers"),
        ("/audit", "#audit"),
        ("/settings", "#settings"),
        ("/parked", "main h1"),
        ("/apps", "main h1"),
    ] {
        goto(driver, &serve, page).await;
        element(driver, list).await;
        assert_eq!(
            count(driver, "main form").await,
            0,
            "an auditor sees no form on {page}"
        );
    }
    goto(driver, &serve, "/audit").await;
    let audit = text(driver, "#audit").await;
    assert!(audit.contains("carol"), "{audit}");
    assert!(audit.contains("portal"), "{audit}");

    browser.quit().await;
    serve.stop().await;
}
