//! The Authorize page in a real browser against the real `mailbridge serve` and the
//! emulated tenant: Microsoft's sign-in in a new tab back to the daemon's
//! `/oauth/callback` ("Signed in as alice@..."), the refresh token kept sealed; a
//! redirect URI the app does not have (AADSTS50011) explained with the fix; a device
//! code completed by a person elsewhere while the page updates itself; and a pasted
//! address, with its wrong-state and no-code refusals. Saves the page's screenshot to
//! `docs/screenshots/authorize.png`. Then `serve --tls-cert/--tls-key` over HTTPS
//! (a test CA) with `Secure` cookies, and `X-Forwarded-*` believed from a
//! `--trusted-proxy` only.

use std::path::Path;
use std::time::Instant;

use fantoccini::Client;
use mailbridge_testkit::browser::screenshots_dir;
use mailbridge_testkit::model::{
    Api, AppRegistration, PermissionKind, Platform, Tenant, TenantModel, User,
};
use mailbridge_testkit::robot::Person;
use mailbridge_testkit::{Emulator, EmulatorServer};
use serde_json::Value;

use super::web_world::{
    Browser, DEADLINE, PASSWORD, Serve, assert_accessible, click, element, fill, serve_with,
    serve_with_args, set_up_administrator, text,
};

const USER_PASSWORD: &str = "Correct-Horse-7";
const SECRET: &str = "Qx~8Q~web.authorize.secret-0123456789";

struct Tenant365 {
    server: EmulatorServer,
}

/// The tenant: alice and bob; app "web" with the daemon's callback under "Web" (the
/// port of a loopback redirect is not compared) and `http://localhost` under "Mobile
/// and desktop applications"; app "elsewhere" whose Web redirect is another host's.
/// Accounts `alice` (app web) and `bob` (app elsewhere), both delegated IMAP.
async fn tenant_and_config(dir: &Path) -> (Tenant365, std::path::PathBuf) {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = |name: &str| {
        AppRegistration::new(name)
            .with_secret(SECRET, expires)
            .with_redirect(Platform::MobileDesktop, "http://localhost")
            .with_permission(
                Api::ExchangeOnline,
                PermissionKind::Delegated,
                "IMAP.AccessAsUser.All",
            )
            .with_permission(Api::Graph, PermissionKind::Delegated, "offline_access")
            .consented()
    };
    let web = app("Mail web").with_redirect(Platform::Web, "http://127.0.0.1/oauth/callback");
    let elsewhere =
        app("Mail elsewhere").with_redirect(Platform::Web, "https://elsewhere.example/callback");
    let model = TenantModel::builder()
        .tenant(
            Tenant::new("Contoso", "contoso.example")
                .with_user(User::new("alice@contoso.example", "Alice", USER_PASSWORD))
                .with_user(User::new("bob@contoso.example", "Bob", USER_PASSWORD))
                .with_app(web.clone())
                .with_app(elsewhere.clone()),
        )
        .build()
        .unwrap();
    let server = EmulatorServer::start(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let base = server.base_url();
    let config = dir.join("mailbridge.toml");
    let app_block = |name: &str, id: String| {
        format!(
            r#"
[[app]]
name = "{name}"
tenant = "contoso.example"
client_id = "{id}"
authority_host = "{base}"
credential = {{ type = "secret" }}
"#
        )
    };
    let mut text = app_block("web", web.client_id.to_string());
    text.push_str(&app_block("elsewhere", elsewhere.client_id.to_string()));
    text.push_str(
        r#"
[[account]]
name = "alice"
address = "alice@contoso.example"
sign_in = "delegated"
app = "web"
transports = ["imap"]

[[account]]
name = "bob"
address = "bob@contoso.example"
sign_in = "delegated"
app = "elsewhere"
transports = ["imap"]
"#,
    );
    std::fs::write(&config, text).unwrap();
    for app in ["web", "elsewhere"] {
        let (ok, _, err) = mailbridge(dir, &config, &["secrets", "set-app-secret", app], SECRET);
        assert!(ok, "{err}");
    }
    (Tenant365 { server }, config)
}

/// Runs `mailbridge ARGS` on the test's data directory with `stdin`.
fn mailbridge(dir: &Path, config: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailbridge"))
        .args(args)
        .env("MAILBRIDGE_CONFIG", config)
        .env("MAILBRIDGE_DATA_DIR", dir.join("data"))
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
        .env_remove("MAILBRIDGE_DATABASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{stdin}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The account's id, from the API.
async fn account_id(serve: &Serve, name: &str) -> String {
    let accounts = serve
        .call(reqwest::Method::GET, "/api/v1/accounts", None)
        .await;
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

/// Clicks `css`, which opens a new tab, and switches to that tab; the handle of the
/// tab it came from.
async fn click_into_new_tab(driver: &Client, css: &str) -> fantoccini::wd::WindowHandle {
    let before = driver.windows().await.unwrap();
    let origin = driver.window().await.unwrap();
    click(driver, css).await;
    let started = Instant::now();
    loop {
        let now = driver.windows().await.unwrap();
        if let Some(new) = now.into_iter().find(|w| !before.contains(w)) {
            driver.switch_to_window(new).await.unwrap();
            return origin;
        }
        assert!(started.elapsed() < DEADLINE, "no new tab opened");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The text of `css` once it satisfies `ok` (after a form is sent, the page before it
/// may still be shown for a moment), within the deadline.
async fn text_when(driver: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(e) = driver.find(fantoccini::Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && ok(&t)
        {
            return t;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{css} never satisfied the test: {:?}",
            driver.source().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn db_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("data")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file()
            && p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mailbridge.db")
        {
            out.extend(std::fs::read(p).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn authorize_in_a_new_tab_and_an_unregistered_redirect_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, config) = tenant_and_config(dir.path()).await;
    let serve = serve_with(dir.path(), &config).await;
    let browser = Browser::start("en-US,en", 1280, 900).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    let alice = account_id(&serve, "alice").await;

    // The page says which redirect URI to register, and under which platform.
    driver
        .goto(&format!("{}/accounts/{alice}/authorize", serve.base))
        .await
        .unwrap();
    let callback = format!("{}/oauth/callback", serve.base);
    assert_eq!(text(driver, "#redirect-uri").await, callback);
    assert_eq!(
        text(driver, "#authorize-register").await,
        format!(
            "Register this redirect URI for the app in App registrations → Authentication, under the platform “Web”: {callback}"
        )
    );
    assert_eq!(text(driver, "#authorize-state").await, "Not signed in yet.");

    // Authorize opens Microsoft's sign-in in a new tab; alice signs in there.
    let origin = click_into_new_tab(driver, "#authorize-start").await;
    fill(driver, "login", "alice@contoso.example").await;
    fill(driver, "passwd", USER_PASSWORD).await;
    click(driver, "button[type=submit]").await;
    assert_eq!(
        text(driver, "#authorize-done").await,
        "Signed in as alice@contoso.example. You can close this tab."
    );
    assert!(
        driver
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&callback)
    );
    // The answer is used up: the same address again is refused.
    driver.refresh().await.unwrap();
    assert!(
        text(driver, "#authorize-error")
            .await
            .contains("used already or has expired"),
    );
    driver.close_window().await.unwrap();
    driver.switch_to_window(origin).await.unwrap();

    // The account page says who signed in.
    driver.refresh().await.unwrap();
    assert_eq!(
        text(driver, "#authorize-state").await,
        "Signed in as alice@contoso.example"
    );
    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("authorize.png"), png).unwrap();
    assert_accessible(driver, "the Authorize page, signed in").await;
    // So does the account's own page, with its link to Authorize.
    driver
        .goto(&format!("{}/accounts/{alice}", serve.base))
        .await
        .unwrap();
    assert_eq!(
        text(driver, "#signin-state").await,
        "Signed in as alice@contoso.example"
    );
    driver
        .goto(&format!("{}/accounts/{alice}/authorize", serve.base))
        .await
        .unwrap();

    // The refresh token is in the store, sealed: status says signed in, a token can be
    // had without a person, and no issued refresh token is in the database's bytes.
    let (ok, out, err) = mailbridge(dir.path(), &config, &["auth", "status", "--json"], "");
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    let row = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alice")
        .unwrap();
    assert_eq!(row["state"], "signed-in", "{row}");
    let issued = tenant
        .server
        .emulator
        .identity_state()
        .refresh_token_values();
    assert!(!issued.is_empty());
    let bytes = db_bytes(dir.path());
    for rt in &issued {
        assert!(
            !bytes.windows(rt.len()).any(|w| w == rt.as_bytes()),
            "a refresh token is stored in clear"
        );
    }

    // An app without the daemon's callback: Microsoft would show AADSTS50011 on its
    // own page; mailbridge shows it, with the fix, before sending anyone there.
    let bob = account_id(&serve, "bob").await;
    driver
        .goto(&format!("{}/accounts/{bob}/authorize", serve.base))
        .await
        .unwrap();
    let origin = click_into_new_tab(driver, "#authorize-start").await;
    let error = text(driver, "#authorize-error").await;
    assert!(error.contains("AADSTS50011"), "{error}");
    assert!(
        error.contains(&format!(
            "In the Azure portal open App registrations → the app → Authentication → Add a platform → “Web” and add exactly {callback}, then start again."
        )),
        "{error}"
    );
    driver.close_window().await.unwrap();
    driver.switch_to_window(origin).await.unwrap();

    browser.quit().await;
    serve.stop().await;
    tenant.server.stop().await;
}

#[tokio::test]
async fn device_code_updates_the_page_and_a_pasted_address_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, config) = tenant_and_config(dir.path()).await;
    let serve = serve_with(dir.path(), &config).await;
    let browser = Browser::start("en-US,en", 390, 844).await;
    let driver = &browser.driver;
    set_up_administrator(driver, &serve).await;
    let alice = account_id(&serve, "alice").await;
    let page = format!("{}/accounts/{alice}/authorize", serve.base);

    // Device code: the page shows the code and the link; alice signs in elsewhere;
    // the page, left alone, turns to "Signed in".
    driver.goto(&page).await.unwrap();
    click(driver, "#device-start").await;
    let code = text(driver, "#device-code").await;
    let link = element(driver, "#device-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(link.ends_with("/devicelogin"), "{link}");
    Person::new("alice@contoso.example", USER_PASSWORD)
        .device_login(&link, &code)
        .await
        .unwrap();
    assert_eq!(
        text(driver, "#device-done").await,
        "Signed in as alice@contoso.example"
    );
    assert!(
        driver
            .find(fantoccini::Locator::Css("#device-other-user"))
            .await
            .is_err(),
        "alice signed in as herself"
    );
    assert_eq!(
        text(driver, "#authorize-state").await,
        "Signed in as alice@contoso.example"
    );

    // Paste the address: a link to open elsewhere; an address of another sign-in and
    // one without a code are refused next to the field; the real one signs in.
    let bob = account_id(&serve, "bob").await;
    driver
        .goto(&format!("{}/accounts/{bob}/authorize", serve.base))
        .await
        .unwrap();
    click(driver, "#paste-start").await;
    let url = element(driver, "#paste-url")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let query: std::collections::HashMap<String, String> = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["redirect_uri"], "http://localhost/");
    assert_eq!(query["code_challenge_method"], "S256");

    fill(
        driver,
        "paste-address",
        "http://localhost/?code=abc&state=forged",
    )
    .await;
    click(driver, "#paste-submit").await;
    text_when(driver, "#paste-error", |t| {
        t.contains("belongs to another or an older sign-in")
    })
    .await;
    fill(
        driver,
        "paste-address",
        &format!("http://localhost/?state={}", query["state"]),
    )
    .await;
    click(driver, "#paste-submit").await;
    text_when(driver, "#paste-error", |t| t.contains("carries no code")).await;

    // Alice signs bob's account in: it works, and the page says what that means.
    let end = Person::new("alice@contoso.example", USER_PASSWORD)
        .authorize(&url)
        .await
        .unwrap();
    assert!(
        end.url.starts_with("http://localhost/?code="),
        "{}",
        end.url
    );
    fill(driver, "paste-address", &end.url).await;
    click(driver, "#paste-submit").await;
    assert_eq!(
        text(driver, "#paste-done").await,
        "Signed in as alice@contoso.example"
    );
    assert!(text(driver, "#paste-other-user").await.starts_with(
        "alice@contoso.example signed in, but this account is the mailbox bob@contoso.example"
    ));
    assert_eq!(
        text(driver, "#authorize-state").await,
        "Signed in as alice@contoso.example"
    );
    // The used link is gone: pasting its address again is refused.
    click(driver, "#paste-start").await;
    fill(driver, "paste-address", &end.url).await;
    click(driver, "#paste-submit").await;
    text_when(driver, "#paste-error", |t| {
        t.contains("belongs to another or an older sign-in")
    })
    .await;

    browser.quit().await;
    serve.stop().await;
    tenant.server.stop().await;
}

/// The `csrf` field of a page's form.
fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with its token")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The `Set-Cookie` values of an answer.
fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Signs `root` in through the setup link, with `headers` on every request; the
/// client keeps the session cookie.
async fn set_up_over_http(
    client: &reqwest::Client,
    serve: &Serve,
    headers: &reqwest::header::HeaderMap,
) {
    let html = client
        .get(&serve.setup_link)
        .headers(headers.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = serve.setup_link.split("token=").nth(1).unwrap();
    let res = client
        .post(format!("{}/setup", serve.base))
        .headers(headers.clone())
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("token", token),
            ("name", "root"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);
}

/// Sends a wrong password for `nobody` with `headers`; waits for the daemon's log to
/// name the address the refusal came from, and returns it.
async fn refused_sign_in_address(
    client: &reqwest::Client,
    serve: &Serve,
    headers: &reqwest::header::HeaderMap,
) -> String {
    let res = client
        .get(format!("{}/signin", serve.base))
        .headers(headers.clone())
        .send()
        .await
        .unwrap();
    // The form's cookie, sent back by hand (a client keeps a `Secure` one off HTTP).
    let form_cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("mb_form="))
        .unwrap();
    let form_cookie = form_cookie.split(';').next().unwrap().to_owned();
    let html = res.text().await.unwrap();
    let res = client
        .post(format!("{}/signin", serve.base))
        .headers(headers.clone())
        .header("cookie", form_cookie)
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("name", "nobody"),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&serve.log).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("web sign-in refused")) {
            return line
                .split("addr=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_owned();
        }
        assert!(started.elapsed() < DEADLINE, "no refusal logged: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What a request through a proxy at 127.0.0.1 carries.
fn forwarded_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        "198.51.100.1, 203.0.113.5".parse().unwrap(),
    );
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "mb.example.com".parse().unwrap());
    h
}

#[tokio::test]
async fn https_with_a_certificate_and_forwarded_headers_only_from_trusted_proxies() {
    // HTTPS with a certificate of a test CA: the client trusting that CA gets the
    // pages, and every cookie is Secure.
    let dir = tempfile::tempdir().unwrap();
    let ca = mailbridge_testkit::crypto::TestCa::generate().unwrap();
    let issued = ca.issue(&["127.0.0.1", "localhost"]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &issued.certificate_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let config = dir.path().join("mailbridge.toml");
    std::fs::write(&config, "").unwrap();
    let serve = serve_with_args(
        dir.path(),
        &config,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        serve.base.starts_with("https://127.0.0.1:"),
        "{}",
        serve.base
    );
    assert!(
        serve.setup_link.starts_with("https://"),
        "{}",
        serve.setup_link
    );
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca.certificate_pem.as_bytes()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = https
        .get(format!("{}/signin", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let cookies = set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("mb_form=") && c.contains("; Secure") && c.contains("HttpOnly")),
        "{cookies:?}"
    );
    // A client that does not trust the CA is refused by its own TLS check.
    assert!(
        reqwest::get(format!("{}/signin", serve.base))
            .await
            .is_err()
    );
    serve.stop().await;

    // Behind a trusted proxy (127.0.0.1): the client's address, HTTPS and the public
    // host come from the forwarded headers.
    let dir = tempfile::tempdir().unwrap();
    let (tenant, config) = tenant_and_config(dir.path()).await;
    let serve = serve_with_args(
        dir.path(),
        &config,
        &["--trusted-proxy", "10.0.0.0/8,127.0.0.1"],
    )
    .await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let through_proxy = forwarded_headers();
    let res = client
        .get(format!("{}/signin", serve.base))
        .headers(through_proxy.clone())
        .send()
        .await
        .unwrap();
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("mb_form=") && c.contains("; Secure")),
        "{:?}",
        set_cookies(&res)
    );
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        refused_sign_in_address(&plain, &serve, &through_proxy).await,
        "203.0.113.5"
    );
    // The forwarded headers say the cookie went over HTTPS: the client keeps sending it
    // only if it believes so too, so this session is set up without them.
    set_up_over_http(&client, &serve, &reqwest::header::HeaderMap::new()).await;
    let alice = account_id(&serve, "alice").await;
    let page = client
        .get(format!("{}/accounts/{alice}/authorize", serve.base))
        .headers(through_proxy.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<code id="redirect-uri">https://mb.example.com/oauth/callback</code>"#),
        "{page}"
    );
    serve.stop().await;

    // From an address that is not a trusted proxy the same headers are ignored.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::copy(&config, dir2.path().join("mailbridge.toml")).unwrap();
    let config2 = dir2.path().join("mailbridge.toml");
    let serve = serve_with_args(dir2.path(), &config2, &["--trusted-proxy", "10.0.0.0/8"]).await;
    let res = plain
        .get(format!("{}/signin", serve.base))
        .headers(through_proxy.clone())
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&res);
    assert!(
        cookies.iter().all(|c| !c.contains("Secure")) && !cookies.is_empty(),
        "{cookies:?}"
    );
    assert_eq!(
        refused_sign_in_address(&plain, &serve, &through_proxy).await,
        "127.0.0.1"
    );
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    set_up_over_http(&client, &serve, &reqwest::header::HeaderMap::new()).await;
    let alice = account_id(&serve, "alice").await;
    let page = client
        .get(format!("{}/accounts/{alice}/authorize", serve.base))
        .headers(through_proxy)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!(
            r#"<code id="redirect-uri">{}/oauth/callback</code>"#,
            serve.base
        )),
        "{page}"
    );
    serve.stop().await;
    tenant.server.stop().await;
}

/// A client signed in to the web UI as `name` (cookies kept).
async fn signed_in_client(serve: &Serve, name: &str, password: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = client
        .get(format!("{}/signin", serve.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = client
        .post(format!("{}/signin", serve.base))
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("name", name),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER, "{name}");
    client
}

#[tokio::test]
async fn a_user_authorizes_only_their_own_accounts_and_an_auditor_none() {
    let dir = tempfile::tempdir().unwrap();
    let (tenant, config) = tenant_and_config(dir.path()).await;
    let serve = serve_with(dir.path(), &config).await;
    for (name, role) in [("carol", "user"), ("dave", "auditor")] {
        let (ok, _, err) = mailbridge(
            dir.path(),
            &config,
            &["user", "add", name, "--role", role, "--password-file", "-"],
            PASSWORD,
        );
        assert!(ok, "{err}");
    }
    let (alice, bob) = (
        account_id(&serve, "alice").await,
        account_id(&serve, "bob").await,
    );
    serve
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{bob}/owner"),
            Some(serde_json::json!({"owner": "carol"})),
        )
        .await;

    let carol = signed_in_client(&serve, "carol", PASSWORD).await;
    let res = carol
        .get(format!("{}/accounts/{alice}/authorize", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("There is no such account, or it is not one of yours.")
    );
    let page = carol
        .get(format!("{}/accounts/{bob}/authorize", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let csrf = csrf_of(&page.text().await.unwrap());
    // A form without its token starts nothing.
    let res = carol
        .post(format!(
            "{}/accounts/{bob}/authorize/paste/start",
            serve.base
        ))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    // Someone else's account: refused whatever the token.
    let res = carol
        .post(format!(
            "{}/accounts/{alice}/authorize/paste/start",
            serve.base
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    let res = carol
        .post(format!(
            "{}/accounts/{bob}/authorize/paste/start",
            serve.base
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::SEE_OTHER);

    let dave = signed_in_client(&serve, "dave", PASSWORD).await;
    let res = dave
        .get(format!("{}/accounts/{bob}/authorize", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Your role reads accounts only")
    );

    serve.stop().await;
    tenant.server.stop().await;
}
