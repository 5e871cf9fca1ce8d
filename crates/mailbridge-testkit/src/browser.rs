//! A real browser for the web UI's tests: Debian's Chromium driven through its
//! chromedriver (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `scripts/install-deps`
//! installs both) with thirtyfour. Nothing is downloaded.
//!
//! [`Browser::start`] starts chromedriver on a free loopback port, waits until it
//! says it is ready (within a deadline), and opens a headless Chromium session with
//! a fresh profile and the browser's languages (`Accept-Language`) set as asked.
//! [`Browser::quit`] ends the session and stops chromedriver; dropping a
//! [`Browser`] without it still kills chromedriver (and with it Chromium).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use thirtyfour::{ChromiumLikeCapabilities as _, DesiredCapabilities, WebDriver};
use tokio::process::{Child, Command};

/// Where Debian's packages put the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver and Chromium may take to start on a busy machine.
const START_DEADLINE: Duration = Duration::from_mins(1);

/// Why the browser did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    #[error(
        "{path} is missing: the browser tests need Debian's chromium and chromium-driver (run scripts/install-deps)"
    )]
    Missing { path: &'static str },
    #[error("failed to start chromedriver")]
    Spawn(#[source] std::io::Error),
    #[error("chromedriver on port {port} was not ready within {secs} s")]
    NotReady { port: u16, secs: u64 },
    #[error("failed to open a Chromium session through chromedriver")]
    Session(#[source] thirtyfour::error::WebDriverError),
    #[error("failed to make a temporary profile directory")]
    Profile(#[source] std::io::Error),
}

/// Chromium under test, with its chromedriver.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub driver: WebDriver,
    chromedriver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose `Accept-Language` is
    /// `languages` (such as `"pl"` or `"en-US,en"`), with a window of `width` x
    /// `height` pixels.
    pub async fn start(languages: &str, width: u32, height: u32) -> Result<Self, BrowserError> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).exists() {
                return Err(BrowserError::Missing { path });
            }
        }
        let port = free_port().map_err(BrowserError::Spawn)?;
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(BrowserError::Spawn)?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, port).await?;

        let profile = tempfile::tempdir().map_err(BrowserError::Profile)?;
        let mut caps = DesiredCapabilities::chrome();
        let options: [String; 13] = [
            "--headless=new".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--hide-scrollbars".into(),
            format!("--lang={}", languages.split(',').next().unwrap_or("en")),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        caps.set_binary(CHROMIUM).map_err(BrowserError::Session)?;
        for option in &options {
            caps.add_arg(option).map_err(BrowserError::Session)?;
        }
        caps.add_experimental_option(
            "prefs",
            serde_json::json!({ "intl.accept_languages": languages }),
        )
        .map_err(BrowserError::Session)?;
        let driver = WebDriver::new(url, caps)
            .await
            .map_err(BrowserError::Session)?;
        Ok(Self {
            driver,
            chromedriver,
            _profile: profile,
        })
    }

    /// Ends the session and stops chromedriver.
    pub async fn quit(self) {
        let Self {
            driver,
            mut chromedriver,
            _profile,
        } = self;
        let _ = driver.quit().await;
        let _ = chromedriver.kill().await;
    }
}

/// A port free on the loopback interface now.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until chromedriver's `/status` says ready.
async fn wait_ready(url: &str, port: u16) -> Result<(), BrowserError> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = client
            .get(format!("{url}/status"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        if let Some(r) = ready
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["value"]["ready"] == serde_json::Value::Bool(true)
        {
            return Ok(());
        }
        if started.elapsed() > START_DEADLINE {
            return Err(BrowserError::NotReady {
                port,
                secs: START_DEADLINE.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The workspace's `docs/screenshots` directory (made when missing), for tests that
/// save what a page looks like.
pub fn screenshots_dir() -> std::io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
