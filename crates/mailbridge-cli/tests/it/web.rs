//! The web UI in a real browser (Debian's Chromium through chromedriver) against the
//! real `mailbridge serve`: the printed setup link creates the administrator, the
//! dashboard shows an account with its watcher's state from the daemon, the session
//! cookie's flags, sign-out, a wrong password refused with a message, a form without
//! its CSRF token refused, and the pages in Polish for a browser that asks for `pl`.
//! (The dashboard's screenshot is saved by `web_dashboard.rs`.)

use super::web_world::{
    Browser, PASSWORD, click, element, fill, path, serve, set_up_administrator, text, until_page,
};

#[tokio::test]
async fn an_administrator_sets_up_signs_in_sees_the_dashboard_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;
    serve.watch_ops(dir.path()).await;
    let browser = Browser::start("en-US,en", 1280, 800).await;
    let driver = &browser.driver;

    // The printed link opens the setup page; it creates the administrator and
    // signs them in.
    driver.goto(&serve.setup_link).await.unwrap();
    assert_eq!(text(driver, "h1").await, "Create the first administrator");
    set_up_administrator(driver, &serve).await;
    assert_eq!(path(driver).await, "/");
    assert_eq!(
        text(driver, ".who").await,
        "Signed in as root (administrator)"
    );
    // The account, with its watcher's state from the daemon (its server refuses
    // connections: it waits before trying again).
    let page = until_page(driver, "the watcher's state shows", |p| {
        p.contains("Waiting until") || p.contains("Needs sign-in")
    })
    .await;
    assert!(page.contains("ops@example.org"), "{page}");
    let badge = text(driver, r#"tr[data-account="ops"] .badge"#).await;
    assert!(
        badge.starts_with("Waiting until") || badge == "Needs sign-in",
        "{badge}"
    );

    // The session cookie: HttpOnly, SameSite=Strict (no Secure over plain HTTP).
    let cookies = driver.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "mb_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true), "{session}");
    assert!(session.to_string().contains("SameSite=Strict"), "{session}");
    assert_eq!(session.path(), Some("/"), "{session}");

    // The link worked once.
    driver.goto(&serve.setup_link).await.unwrap();
    assert!(
        text(driver, "#message")
            .await
            .contains("used already or has expired")
    );

    // Sign out: back to the sign-in page; the dashboard asks to sign in again.
    driver.goto(&serve.base).await.unwrap();
    click(driver, ".signout button").await;
    element(driver, "#signin-submit").await;
    assert_eq!(path(driver).await, "/signin");
    driver.goto(&serve.base).await.unwrap();
    assert_eq!(path(driver).await, "/signin");

    // A wrong password is refused with a message; the right one signs in.
    fill(driver, "name", "root").await;
    fill(driver, "password", "not the password").await;
    click(driver, "#signin-submit").await;
    assert_eq!(
        text(driver, "#signin-error").await,
        "Wrong name or password."
    );
    fill(driver, "password", PASSWORD).await;
    click(driver, "#signin-submit").await;
    element(driver, "#accounts").await;

    browser.quit().await;
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(!log.contains(PASSWORD), "{log}");
    let setup_token = serve.setup_link.split("token=").nth(1).unwrap();
    assert!(!log.contains(setup_token), "{log}");
    serve.stop().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_polish_is_spoken() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path()).await;

    let browser = Browser::start("pl", 390, 844).await;
    let driver = &browser.driver;
    driver
        .goto(&format!("{}/signin", serve.base))
        .await
        .unwrap();
    assert_eq!(text(driver, "h1").await, "Logowanie");
    let lang = element(driver, "html").await.attr("lang").await.unwrap();
    assert_eq!(lang.as_deref(), Some("pl"));
    assert!(
        text(driver, "#no-users")
            .await
            .contains("jednorazowy link konfiguracyjny")
    );

    // The same form with its hidden token removed: refused with a 403 page.
    driver
        .execute(
            r#"document.querySelector('input[name="csrf"]').remove();"#,
            Vec::new(),
        )
        .await
        .unwrap();
    fill(driver, "name", "root").await;
    fill(driver, "password", PASSWORD).await;
    click(driver, "#signin-submit").await;
    let refused = text(driver, "#message").await;
    assert!(refused.contains("tokenu bezpieczeństwa"), "{refused}");
    assert_eq!(text(driver, "h1").await, "Odrzucono");

    browser.quit().await;
    serve.stop().await;
}
