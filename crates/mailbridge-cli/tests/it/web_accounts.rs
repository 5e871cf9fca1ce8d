//! The account pages and the add-account wizard in a real browser (Debian's Chromium)
//! against the real `mailbridge serve`, real Dovecot and Postfix
//! ([`MailServers`]) and the testkit's emulated tenant judging their credentials:
//! - an administrator adds an IMAP password account through the wizard: a bad port
//!   is refused next to its field, Test receive and Test send pass every step, Save
//!   shows the account in the list and on its page, and its page tests it again;
//! - an app-only IMAP account whose Exchange registration used the App registration's
//!   Object ID (the classic mistake) fails Test receive with the fix, in Polish;
//! - a `user` sees only their own accounts, and another's page is refused.
//!
//! Saves the wizard's screenshot to `docs/screenshots/wizard.png`.

use mailbridge_testkit::browser::screenshots_dir;
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, ExchangeServicePrincipal, MailboxRight, PermissionKind, Tenant,
    TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use serde_json::json;

use super::web_world::{
    Browser, PASSWORD, Serve, add_person, assert_accessible, choose, click, click_through, element,
    fill, path, serve, serve_with, sign_in, text,
};

const SECRET: &str = "wizard-app-secret-value-0123456789";
const BOB: &str = "bob@contoso.example";
const BOB_PASSWORD: &str = "Bob-mail-pw-1";

struct World {
    server: EmulatorServer,
    mail: MailServers,
    app: AppRegistration,
    dir: tempfile::TempDir,
}

/// The emulated tenant (passwords allowed, as a plain mail server does), an app with
/// IMAP.AccessAsApp consented, and Dovecot/Postfix judging credentials through it.
async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Connector")
        .with_secret(SECRET, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.Send")
        .consented();
    let sp = app.service_principal_id.to_string();
    let mut tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(BOB, "Bob", BOB_PASSWORD))
        .with_user(User::new(
            "helpdesk@contoso.example",
            "Helpdesk",
            "x-unused-1",
        ))
        .with_app(app.clone())
        .with_mailbox_permission("helpdesk@contoso.example", &sp, MailboxRight::FullAccess);
    tenant.basic_auth_enabled = true;
    // Exchange registration made with the App registration's Object ID instead of the
    // Enterprise application's: the classic mistake (§8.2).
    tenant
        .exchange_service_principals
        .push(ExchangeServicePrincipal {
            app_id: app.client_id,
            object_id: app.object_id,
            added_at: None,
        });
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), mail.ca_pem()).unwrap();
    std::fs::write(dir.path().join("mailbridge.toml"), "").unwrap();
    World {
        server,
        mail,
        app,
        dir,
    }
}

/// Creates the first administrator through the setup link (the dashboard then says
/// there are no accounts yet).
async fn set_up_administrator(driver: &fantoccini::Client, serve: &Serve) {
    driver.goto(&serve.setup_link).await.unwrap();
    fill(driver, "name", "root").await;
    fill(driver, "password", PASSWORD).await;
    fill(driver, "password2", PASSWORD).await;
    click_through(driver, "#setup-submit").await;
    element(driver, "#accounts-empty").await;
}

/// From the accounts page through the address and the client type to the fields.
async fn wizard_to_fields(driver: &fantoccini::Client, base: &str, address: &str, kind: &str) {
    driver.goto(&format!("{base}/accounts")).await.unwrap();
    assert_accessible(driver, "the accounts page").await;
    click_through(driver, "#add-account").await;
    assert_accessible(driver, "the wizard's address step").await;
    fill(driver, "address", address).await;
    click_through(driver, "#wizard-next").await;
    // Autodetection ran and said what it found (or that it found nothing).
    element(driver, "#detected").await;
    assert_accessible(driver, "the wizard's client type step").await;
    click(driver, &format!("#kind-{kind}")).await;
    click_through(driver, "#wizard-next").await;
    element(driver, "#wizard-save").await;
}

#[tokio::test]
async fn an_administrator_adds_an_imap_account_through_the_wizard_tests_and_saves_it() {
    let w = world().await;
    let serve = serve_with(w.dir.path(), &w.dir.path().join("mailbridge.toml")).await;
    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    driver.goto(&serve.setup_link).await.unwrap();
    assert_accessible(driver, "the setup page").await;
    set_up_administrator(driver, &serve).await;
    assert_accessible(driver, "the dashboard").await;

    // Not an address: refused at the field, before anything is looked up.
    driver
        .goto(&format!("{}/accounts/new", serve.base))
        .await
        .unwrap();
    fill(driver, "address", "bob at contoso").await;
    click_through(driver, "#wizard-next").await;
    assert_eq!(
        text(driver, "#address-error").await,
        "Give a mail address such as name@example.com."
    );
    assert_accessible(driver, "the address step with an error").await;

    wizard_to_fields(driver, &serve.base, BOB, "password").await;
    assert_eq!(
        text(driver, "#kind-chosen").await,
        "IMAP/POP and SMTP with a password"
    );
    assert_accessible(driver, "the wizard's fields").await;
    let port = w.mail.imap().port().to_string();
    fill(driver, "in_host", "127.0.0.1").await;
    fill(driver, "in_port", "99999").await;
    choose(driver, "in_tls", "starttls").await;
    fill(driver, "out_host", "127.0.0.1").await;
    fill(driver, "out_port", &w.mail.submission().port().to_string()).await;
    choose(driver, "out_tls", "starttls").await;
    fill(driver, "tls_name", w.mail.tls_name()).await;
    let ca = w.dir.path().join("ca.pem").display().to_string();
    fill(driver, "extra_ca", &ca).await;
    fill(driver, "password", BOB_PASSWORD).await;

    // A bad port: refused next to its field, in the page's words and the API's.
    click_through(driver, "#wizard-test-receive").await;
    let error = text(driver, "#in_port-error").await;
    assert!(error.starts_with("Give a port from 1 to 65535."), "{error}");
    assert!(error.contains("incoming.port"), "{error}");
    let invalid = element(driver, "#in_port")
        .await
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));
    // The password was not written back into the page.
    let typed = element(driver, "#password")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(typed.as_deref(), Some(""));
    assert_accessible(driver, "the wizard with a field error").await;

    // The right port: Test receive passes every step against Dovecot.
    fill(driver, "in_port", &port).await;
    fill(driver, "password", BOB_PASSWORD).await;
    click_through(driver, "#wizard-test-receive").await;
    assert_eq!(text(driver, "#test-summary").await, "Every step passed.");
    let page = driver.source().await.unwrap();
    assert!(!page.contains("step bad"), "{page}");
    assert!(page.contains("✓"), "{page}");
    assert_eq!(
        text(driver, "#password-note").await,
        "The password is not sent back to the page: type it again before you save."
    );
    driver
        .execute("window.scrollTo(0, 0);", Vec::new())
        .await
        .unwrap();
    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("wizard.png"), png).unwrap();

    // Test send through Postfix passes too.
    fill(driver, "password", BOB_PASSWORD).await;
    click_through(driver, "#wizard-test-send").await;
    assert_eq!(text(driver, "#test-summary").await, "Every step passed.");

    // Save: the account's page.
    fill(driver, "password", BOB_PASSWORD).await;
    click_through(driver, "#wizard-save").await;
    assert_eq!(text(driver, "#account-address").await, BOB);
    assert!(path(driver).await.starts_with("/accounts/"));
    assert_accessible(driver, "an account's page").await;
    let detail = path(driver).await;

    // The list shows it, linked to its page.
    driver
        .goto(&format!("{}/accounts", serve.base))
        .await
        .unwrap();
    click_through(driver, &format!(r#"tr[data-account="{BOB}"] a"#)).await;
    assert_eq!(path(driver).await, detail);
    // Edit: the last step again, filled from the account; an empty password keeps
    // the stored one.
    click_through(driver, "#edit-account").await;
    assert_eq!(text(driver, "h1").await, "Edit the account");
    let port_shown = element(driver, "#in_port")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(port_shown.as_deref(), Some(port.as_str()));
    assert_accessible(driver, "the edit page").await;
    fill(driver, "name", "bob-mail").await;
    click_through(driver, "#wizard-save").await;
    assert_eq!(text(driver, "h1").await, "bob-mail");
    assert_eq!(path(driver).await, detail, "a renamed account keeps its id");
    // Its page tests the saved account (the password sealed in the store).
    click_through(driver, "#test-receive").await;
    element(driver, "#live-test[data-done]").await;
    assert_eq!(text(driver, "#test-summary").await, "Every step passed.");
    assert_accessible(driver, "a test's result").await;

    // A message queued through the API shows among its recent messages once sent.
    let id = detail.trim_start_matches("/accounts/");
    serve
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/accounts/{id}/outbox"),
            Some(json!({"to": [BOB], "subject": "From the outbox", "text": "Hello."})),
        )
        .await;
    driver
        .goto(&format!("{}{detail}", serve.base))
        .await
        .unwrap();
    let page = super::web_world::until_page(driver, "the sent message shows", |p| {
        p.contains("to the recipients in its header") && p.contains(">sent<")
    })
    .await;
    assert!(page.contains("Sent through the outbox"), "{page}");

    // The API sees the same account; its password is never shown.
    let accounts = serve
        .call(reqwest::Method::GET, "/api/v1/accounts", None)
        .await;
    assert!(accounts.to_string().contains("bob-mail"), "{accounts}");
    assert!(!accounts.to_string().contains(BOB_PASSWORD));
    browser.quit().await;
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(!log.contains(BOB_PASSWORD), "{log}");
    serve.stop().await;
    w.mail.stop().await;
}

/// Defines the app `connector` through the API (its secret sealed).
async fn add_app(w: &World, serve: &Serve) {
    serve
        .call(
            reqwest::Method::POST,
            "/api/v1/apps",
            Some(json!({
                "name": "connector",
                "tenant": "contoso.example",
                "client_id": w.app.client_id.to_string(),
                "authority_host": w.server.base_url(),
                "credential": {"type": "secret"},
                "secret": SECRET,
            })),
        )
        .await;
}

#[tokio::test]
async fn a_graph_app_only_account_passes_test_receive_and_send_and_is_saved() {
    let w = world().await;
    let serve = serve_with(w.dir.path(), &w.dir.path().join("mailbridge.toml")).await;
    add_app(&w, &serve).await;
    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    wizard_to_fields(
        driver,
        &serve.base,
        "helpdesk@contoso.example",
        "graph-app-only",
    )
    .await;
    assert_eq!(
        text(driver, "#kind-chosen").await,
        "Microsoft 365 Graph, app-only (Exchange (Confidential))"
    );
    // Only what Graph app-only needs: no server, port or password fields.
    let page = driver.source().await.unwrap();
    assert!(!page.contains(r#"id="in_port""#) && !page.contains(r#"id="password""#));
    choose(driver, "app", "connector").await;
    fill(driver, "graph_url", "ftp://nowhere").await;
    click_through(driver, "#wizard-test-receive").await;
    let error = text(driver, "#graph_url-error").await;
    assert!(
        error.starts_with("Give a URL starting with https://."),
        "{error}"
    );
    fill(driver, "graph_url", &w.server.base_url()).await;
    click_through(driver, "#wizard-test-receive").await;
    assert_eq!(text(driver, "#test-summary").await, "Every step passed.");
    click_through(driver, "#wizard-test-send").await;
    assert_eq!(text(driver, "#test-summary").await, "Every step passed.");
    click_through(driver, "#wizard-save").await;
    assert_eq!(
        text(driver, "#account-address").await,
        "helpdesk@contoso.example"
    );

    // A delegated account's page says nobody signed in yet and links to Authorize.
    let made = serve
        .call(
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(
                json!({"name": "bob-delegated", "address": BOB, "sign_in": "delegated",
                        "app": "connector", "incoming": {"transport": "imap", "host": "127.0.0.1",
                        "port": w.mail.imaps().port(), "tls": "implicit"}}),
            ),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    driver
        .goto(&format!("{}/accounts/{id}", serve.base))
        .await
        .unwrap();
    assert_eq!(
        text(driver, "#signin-state").await,
        "Nobody has signed in for this account yet."
    );
    let link = element(driver, "#authorize")
        .await
        .attr("href")
        .await
        .unwrap();
    assert_eq!(link, Some(format!("/accounts/{id}/authorize")));
    assert_accessible(driver, "a delegated account's page").await;
    browser.quit().await;
    serve.stop().await;
    w.mail.stop().await;
}

#[tokio::test]
async fn an_app_only_account_with_the_wrong_exchange_registration_shows_the_fix_in_polish() {
    let w = world().await;
    let serve = serve_with(w.dir.path(), &w.dir.path().join("mailbridge.toml")).await;
    add_app(&w, &serve).await;
    let browser = Browser::start("pl", 390, 844).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;

    wizard_to_fields(
        driver,
        &serve.base,
        "helpdesk@contoso.example",
        "mailbox-app-only",
    )
    .await;
    assert_eq!(text(driver, "h1").await, "Dodaj konto");
    assert_accessible(driver, "the wizard in Polish at 390 px").await;
    choose(driver, "app", "connector").await;
    choose(driver, "protocol", "imap").await;
    fill(driver, "in_host", "127.0.0.1").await;
    fill(driver, "in_port", &w.mail.imaps().port().to_string()).await;
    choose(driver, "in_tls", "implicit").await;
    element(driver, "#out_host").await.clear().await.unwrap();
    fill(driver, "tls_name", w.mail.tls_name()).await;
    let ca = w.dir.path().join("ca.pem").display().to_string();
    fill(driver, "extra_ca", &ca).await;
    click_through(driver, "#wizard-test-receive").await;
    assert_eq!(
        text(driver, "#test-summary").await,
        "Jeden z kroków się nie powiódł: obok widać przyczynę i sposób naprawy."
    );
    // The token came; Exchange refused the app: the fix names the Enterprise
    // application's Object ID.
    let mut passed = Vec::new();
    for step in driver
        .find_all(fantoccini::Locator::Css(".step.ok .step-name"))
        .await
        .unwrap()
    {
        passed.push(step.text().await.unwrap());
    }
    assert!(passed.iter().any(|s| s == "get token"), "{passed:?}");
    assert_eq!(text(driver, ".step.bad .step-name").await, "authenticate");
    let fix = text(driver, ".step.bad .fix").await;
    assert!(fix.starts_with("Naprawa:"), "{fix}");
    // In Polish, with the portal's Polish names; the cmdlet stays as written.
    assert!(
        fix.contains(
            "to Identyfikator obiektu z Aplikacje dla przedsiębiorstw, nie z Rejestracje aplikacji"
        ),
        "{fix}"
    );
    assert!(fix.contains("`New-ServicePrincipal -AppId "), "{fix}");
    assert!(
        !fix.contains("Enterprise applications, not from App registrations"),
        "{fix}"
    );
    assert_accessible(driver, "a failed test in Polish at 390 px").await;
    browser.quit().await;
    serve.stop().await;
    w.mail.stop().await;
}

#[tokio::test]
async fn a_user_sees_only_their_own_accounts_and_an_auditor_changes_none() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;
    // Alice, a user, and an account of hers; `ops` is nobody's. Ann, an auditor.
    add_person(dir.path(), "alice", "user").await;
    add_person(dir.path(), "ann", "auditor").await;
    let made = serve
        .call(
            reqwest::Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "alice-mail", "address": "alice@example.org", "sign_in": "password",
                        "incoming": {"transport": "imap", "host": "127.0.0.1", "port": 1, "tls": "none"}})),
        )
        .await;
    let alice_id = made["id"].as_str().unwrap().to_owned();
    serve
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{alice_id}/owner"),
            Some(json!({"owner": "alice"})),
        )
        .await;
    let accounts = serve
        .call(reqwest::Method::GET, "/api/v1/accounts", None)
        .await;
    let ops_id = accounts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ops")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let browser = Browser::start("en-US,en", 1280, 800).await;
    let driver = &browser.driver;
    driver
        .goto(&format!("{}/signin", serve.base))
        .await
        .unwrap();
    assert_accessible(driver, "the sign-in page").await;
    fill(driver, "name", "alice").await;
    fill(driver, "password", PASSWORD).await;
    click_through(driver, "#signin-submit").await;
    element(driver, "#accounts").await;
    assert_accessible(driver, "a user's dashboard").await;
    driver
        .goto(&format!("{}/accounts", serve.base))
        .await
        .unwrap();
    element(driver, "#account-list").await;
    let page = driver.source().await.unwrap();
    assert!(page.contains("alice-mail"), "{page}");
    assert!(!page.contains("ops@example.org"), "{page}");
    assert_accessible(driver, "a user's accounts").await;
    // Her own account opens; another's is refused.
    driver
        .goto(&format!("{}/accounts/{alice_id}", serve.base))
        .await
        .unwrap();
    assert_eq!(text(driver, "#account-address").await, "alice@example.org");
    driver
        .goto(&format!("{}/accounts/{ops_id}", serve.base))
        .await
        .unwrap();
    assert!(
        text(driver, "#message")
            .await
            .contains("a user reaches only their own accounts"),
    );
    let page = driver.source().await.unwrap();
    assert!(!page.contains("ops@example.org"), "{page}");
    // An account she adds through the wizard is hers.
    wizard_to_fields(driver, &serve.base, "alice.two@example.org", "password").await;
    fill(driver, "in_host", "127.0.0.1").await;
    fill(driver, "in_port", "1").await;
    choose(driver, "in_tls", "none").await;
    click_through(driver, "#wizard-save").await;
    assert_eq!(text(driver, "#account-owner").await, "alice");
    driver
        .goto(&format!("{}/accounts", serve.base))
        .await
        .unwrap();
    let page = driver.source().await.unwrap();
    assert!(page.contains("alice.two@example.org"), "{page}");

    // An auditor reads every account but is offered no change, and the wizard
    // refuses them.
    driver.goto(&serve.base).await.unwrap();
    click_through(driver, ".signout button").await;
    sign_in(driver, &serve.base, "ann").await;
    driver
        .goto(&format!("{}/accounts/{ops_id}", serve.base))
        .await
        .unwrap();
    assert_eq!(text(driver, "#account-address").await, "ops@example.org");
    let page = driver.source().await.unwrap();
    assert!(!page.contains(r#"id="test-receive""#), "{page}");
    assert!(!page.contains(r#"id="add-account""#), "{page}");
    driver
        .goto(&format!("{}/accounts/new", serve.base))
        .await
        .unwrap();
    assert_eq!(text(driver, "h1").await, "Refused");
    browser.quit().await;
    serve.stop().await;
}

#[tokio::test]
async fn an_accounts_page_shows_its_watcher_with_the_last_error_in_the_viewers_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;
    serve.watch_ops(dir.path()).await;
    let browser = Browser::start("en-US,en", 1280, 800).await;
    let driver = &browser.driver;
    super::web_world::set_up_administrator(driver, &serve).await;
    // The dashboard's row leads to the account's page.
    click_through(driver, r#"tr[data-account="ops"] a"#).await;
    assert_eq!(text(driver, "#account-address").await, "ops@example.org");
    // Its watcher cannot connect: its state, the last error and the history show,
    // with their times in the viewer's zone (UTC kept as the tooltip).
    let page = super::web_world::until_page(driver, "the watcher's error shows", |p| {
        p.contains(r#"id="last-error""#)
    })
    .await;
    assert!(page.contains(r#"id="history""#), "{page}");
    assert!(page.contains("archive"), "the route's sink: {page}");
    let time = element(driver, "time.local").await;
    let utc = time.attr("title").await.unwrap().unwrap();
    assert!(utc.ends_with(" UTC"), "{utc}");
    let shown = time.text().await.unwrap();
    assert!(!shown.is_empty() && shown != utc, "{shown}");
    assert_accessible(driver, "an account's page with its watcher's history").await;
    browser.quit().await;
    serve.stop().await;
}
