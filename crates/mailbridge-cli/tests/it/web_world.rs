//! What the web UI's browser tests share: `mailbridge serve` started as a newcomer
//! would (fresh data directory, the setup link and API token read from its output),
//! its API called with that token, and headless Chromium through the testkit's
//! chromedriver with small helpers that wait for what they look for.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mailbridge_testkit::browser::{CHROMIUM, ChromeDriver, chromium_args};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub(crate) const DEADLINE: Duration = Duration::from_mins(1);
pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) setup_link: String,
    pub(crate) token: String,
    pub(crate) log: std::path::PathBuf,
}

/// `mailbridge serve` on a free port in `dir`, with one IMAP account whose server
/// refuses connections (its watcher, once on, shows a real state).
pub(crate) async fn serve(dir: &Path) -> Serve {
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
    serve_with(dir, &config).await
}

/// `mailbridge serve` on a free port in `dir` with the configuration file `config`,
/// started as a newcomer would (no master key given: it makes one).
pub(crate) async fn serve_with(dir: &Path, config: &Path) -> Serve {
    serve_with_args(dir, config, &[]).await
}

impl Serve {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
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
    pub(crate) async fn watch_ops(&self, dir: &Path) {
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

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Headless Chromium through the testkit's chromedriver (driven with fantoccini),
/// with `Accept-Language` `languages` and a window of `width` x `height`.
pub(crate) struct Browser {
    pub(crate) driver: Client,
    chromedriver: ChromeDriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start(languages: &str, width: u32, height: u32) -> Self {
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

    pub(crate) async fn quit(self) {
        self.driver.close().await.unwrap();
        self.chromedriver.stop().await;
    }
}

/// The first element `css` matches, waiting (within the deadline) for it to appear.
pub(crate) async fn element(driver: &Client, css: &str) -> fantoccini::elements::Element {
    driver
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

/// The text of the first element `css` matches.
pub(crate) async fn text(driver: &Client, css: &str) -> String {
    element(driver, css).await.text().await.unwrap()
}

pub(crate) async fn fill(driver: &Client, id: &str, value: &str) {
    let field = element(driver, &format!("#{id}")).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

pub(crate) async fn click(driver: &Client, css: &str) {
    element(driver, css).await.click().await.unwrap();
}

/// The current page's path.
pub(crate) async fn path(driver: &Client) -> String {
    driver.current_url().await.unwrap().path().to_owned()
}

/// Waits until the page at the current address, reloaded, satisfies `ok`.
pub(crate) async fn until_page(driver: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
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

/// Opens the printed setup link and creates the first administrator `root` with
/// [`PASSWORD`]; the browser is then signed in on the dashboard.
pub(crate) async fn set_up_administrator(driver: &Client, serve: &Serve) {
    driver.goto(&serve.setup_link).await.unwrap();
    fill(driver, "name", "root").await;
    fill(driver, "password", PASSWORD).await;
    fill(driver, "password2", PASSWORD).await;
    click(driver, "#setup-submit").await;
    element(driver, "#accounts").await;
}

// ---- accounts and the wizard (area: wizard) ----

/// Chooses `value` in the `<select>` with id `id`.
pub(crate) async fn choose(driver: &Client, id: &str, value: &str) {
    element(driver, &format!("#{id}"))
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("#{id} has no option {value}: {e}"));
}

/// The axe-core script (`axe.min.js` of the npm package `axe-core`, installed by
/// `scripts/install-deps`; `scripts/test` names it in `MAILBRIDGE_AXE_JS`).
fn axe_source() -> String {
    let path = std::env::var("MAILBRIDGE_AXE_JS").unwrap_or_else(|_| {
        panic!(
            "MAILBRIDGE_AXE_JS is not set: run the tests through scripts/test, which installs axe-core (scripts/install-deps) and names its axe.min.js; or set it to `scripts/install-deps --axe-path`"
        )
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("axe-core's script {path} cannot be read ({e}): run scripts/install-deps")
    })
}

/// Runs axe-core on the current page at 1280 px and at 390 px wide (injected through
/// WebDriver, which the page's CSP does not govern) and fails listing every "serious"
/// or "critical" violation; the window's size is put back afterwards.
pub(crate) async fn assert_accessible(driver: &Client, what: &str) {
    let axe = axe_source();
    let (width, height) = driver.get_window_size().await.unwrap();
    for test_width in [1280, 390] {
        driver.set_window_size(test_width, 900).await.unwrap();
        driver.execute(&axe, Vec::new()).await.unwrap();
        let found = driver
            .execute_async(
                r"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(r => done(r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => `${v.impact} ${v.id}: ${v.help}\n` + v.nodes
                      .map(n => `    ${n.target.join(' ')}: ${n.failureSummary}`).join('\n'))))
                  .catch(e => done([`axe-core failed: ${e}`]));",
                Vec::new(),
            )
            .await
            .unwrap();
        let found: Vec<String> = serde_json::from_value(found).unwrap();
        assert!(
            found.is_empty(),
            "axe-core on {what} at {test_width} px:\n{}",
            found.join("\n")
        );
    }
    driver
        .set_window_size(
            u32::try_from(width).unwrap(),
            u32::try_from(height).unwrap(),
        )
        .await
        .unwrap();
}

/// Clicks `css` (a submit button or link) and waits, within the deadline, until the
/// page it was on is gone: what is read next is the new page's.
pub(crate) async fn click_through(driver: &Client, css: &str) {
    let before = element(driver, "html").await;
    click(driver, css).await;
    let started = Instant::now();
    while before.tag_name().await.is_ok() {
        assert!(
            started.elapsed() < DEADLINE,
            "{css} did not lead to a new page"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`serve_with`] with more arguments for `mailbridge serve` (`--tls-cert ...`).
pub(crate) async fn serve_with_args(dir: &Path, config: &Path, extra: &[&str]) -> Serve {
    let log = dir.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailbridge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("MAILBRIDGE_DATA_DIR", dir.join("data"))
        .env("MAILBRIDGE_CONFIG", config)
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
        .env_remove("MAILBRIDGE_LISTEN")
        .env_remove("MAILBRIDGE_DATABASE")
        .env_remove("RUST_LOG")
        .env_remove("MAILBRIDGE_TLS_CERT")
        .env_remove("MAILBRIDGE_TLS_KEY")
        .env_remove("MAILBRIDGE_TRUSTED_PROXIES")
        .env_remove("MAILBRIDGE_PUBLIC_URL")
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

/// `mailbridge user add NAME --role ROLE` with [`PASSWORD`], beside the running serve.
pub(crate) async fn add_person(dir: &std::path::Path, name: &str, role: &str) {
    let mut add = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailbridge"))
        .args(["user", "add", name, "--role", role, "--password-file", "-"])
        .env("MAILBRIDGE_DATA_DIR", dir.join("data"))
        .env("MAILBRIDGE_CONFIG", dir.join("mailbridge.toml"))
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
        .env_remove("MAILBRIDGE_DATABASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        add.stdin.as_mut().unwrap(),
        format!("{PASSWORD}\n").as_bytes(),
    )
    .await
    .unwrap();
    drop(add.stdin.take());
    let out = add.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Signs `name` in (with [`PASSWORD`]) at `base`.
pub(crate) async fn sign_in(driver: &Client, base: &str, name: &str) {
    driver.goto(&format!("{base}/signin")).await.unwrap();
    fill(driver, "name", name).await;
    fill(driver, "password", PASSWORD).await;
    click_through(driver, "#signin-submit").await;
    element(driver, ".signout").await;
}
