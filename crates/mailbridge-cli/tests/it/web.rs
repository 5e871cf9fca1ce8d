//! The web UI in a real browser (Debian's Chromium through chromedriver) against the
//! real `mailbridge serve`: the printed setup link creates the administrator, the
//! dashboard shows an account with its watcher's state from the daemon, the session
//! cookie's flags, sign-out, a wrong password refused with a message, a form without
//! its CSRF token refused, and the pages in Polish for a browser that asks for `pl`.
//! Saves the dashboard's screenshot to `docs/screenshots/dashboard.png`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mailbridge_testkit::browser::{CHROMIUM, ChromeDriver, chromium_args, screenshots_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_mins(1);
const PASSWORD: &str = "correct horse battery";

struct Serve {
    child: Child,
    base: String,
    setup_link: String,
    token: String,
    log: std::path::PathBuf,
}

/// `mailbridge serve` on a free port in `dir`, with one IMAP account whose server
/// refuses connections (its watcher, once on, shows a real state).
async fn serve(dir: &Path) -> Serve {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("mailbridge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[account]]
name = "ops"
address = "ops@example.org"
sign_in = "password"
incoming = {{ transport = "imap", host = "127.0.0.1", port = {closed}, tls = "none" }}
"#
        ),
    )
    .unwrap();
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailbridge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MAILBRIDGE_DATA_DIR", dir.join("data"))
        .env("MAILBRIDGE_CONFIG", &config)
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
        .env_remove("MAILBRIDGE_LISTEN")
        .env_remove("MAILBRIDGE_DATABASE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut setup_link, mut token) = (None, None);
    let base = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
            for word in line.split_whitespace() {
                if word.contains("/setup?token=") {
                    setup_link = Some(word.to_owned());
                }
                if word.starts_with("mbt_") {
                    token = Some(word.to_owned());
                }
            }
        }
        panic!(
            "serve ended early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    })
    .await
    .expect("serve did not print its address in time");
    // Standard output is not read further: nothing more is printed on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Serve {
        child,
        base,
        setup_link: setup_link.expect("a first start prints a setup link"),
        token: token.expect("a first start prints an API token"),
        log,
    }
}

impl Serve {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// Turns on the watch of account `ops` (into a folder sink).
    async fn watch_ops(&self, dir: &Path) {
        let accounts = self
            .call(reqwest::Method::GET, "/api/v1/accounts", None)
            .await;
        let id = accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "ops")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let archive = dir.join("archive").display().to_string();
        self.call(
            reqwest::Method::POST,
            "/api/v1/sinks",
            Some(json!({"name": "archive", "settings": {"kind": "folder", "path": archive}})),
        )
        .await;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/accounts/{id}/watch"),
            Some(json!({"routes": [{"name": "all", "sinks": ["archive"]}]})),
        )
        .await;
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Headless Chromium through the testkit's chromedriver (driven with fantoccini),
/// with `Accept-Language` `languages` and a window of `width` x `height`.
struct Browser {
    driver: Client,
    chromedriver: ChromeDriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(languages: &str, width: u32, height: u32) -> Self {
        let chromedriver = ChromeDriver::start().await.unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": chromium_args(languages, width, height, profile.path()),
                "prefs": { "intl.accept_languages": languages },
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let driver = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(chromedriver.url())
            .await
            .unwrap();
        Self {
            driver,
            chromedriver,
            _profile: profile,
        }
    }

    async fn quit(self) {
        self.driver.close().await.unwrap();
        self.chromedriver.stop().await;
    }
}

/// The first element `css` matches, waiting (within the deadline) for it to appear.
async fn element(driver: &Client, css: &str) -> fantoccini::elements::Element {
    driver
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

/// The text of the first element `css` matches.
async fn text(driver: &Client, css: &str) -> String {
    element(driver, css).await.text().await.unwrap()
}

async fn fill(driver: &Client, id: &str, value: &str) {
    let field = element(driver, &format!("#{id}")).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(driver: &Client, css: &str) {
    element(driver, css).await.click().await.unwrap();
}

/// The current page's path.
async fn path(driver: &Client) -> String {
    driver.current_url().await.unwrap().path().to_owned()
}

/// Waits until the page at the current address, reloaded, satisfies `ok`.
async fn until_page(driver: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let source = driver.source().await.unwrap();
        if ok(&source) {
            return source;
        }
        assert!(started.elapsed() < DEADLINE, "{what}; page: {source}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        driver.refresh().await.unwrap();
    }
}

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
    fill(driver, "name", "root").await;
    fill(driver, "password", PASSWORD).await;
    fill(driver, "password2", PASSWORD).await;
    click(driver, "#setup-submit").await;
    element(driver, "#accounts").await;
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

    let png = driver.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshots_dir().unwrap().join("dashboard.png"), png).unwrap();

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
