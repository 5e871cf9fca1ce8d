//! A real browser for the web UI's tests: Debian's Chromium and its chromedriver
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `scripts/install-deps` installs
//! both). Nothing is downloaded.
//!
//! [`ChromeDriver::start`] starts chromedriver on a free loopback port and waits until
//! it says it is ready (within a deadline); [`ChromeDriver::stop`] stops it, and
//! dropping it kills it too (and with it the browsers it started). [`chromium_args`]
//! are the arguments of a headless Chromium with a fresh profile, for the test's
//! WebDriver client (fantoccini, a dev-dependency of the tests that drive a browser).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Where Debian's packages put the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to start on a busy machine.
const START_DEADLINE: Duration = Duration::from_mins(1);

/// Why chromedriver did not start.
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
}

/// A running chromedriver.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port; ready when this returns.
    pub async fn start() -> Result<Self, BrowserError> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).exists() {
                return Err(BrowserError::Missing { path });
            }
        }
        let port = free_port().map_err(BrowserError::Spawn)?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(BrowserError::Spawn)?;
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&url, port).await?;
        Ok(Self { child, url })
    }

    /// The WebDriver endpoint (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops chromedriver.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The arguments of a headless Chromium: no sandbox (containers), none of the
/// background networking that fails without internet, a window of `width` x `height`
/// pixels, the first of `languages` as its UI language, and the profile `profile`.
pub fn chromium_args(languages: &str, width: u32, height: u32, profile: &Path) -> Vec<String> {
    vec![
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
        format!("--user-data-dir={}", profile.display()),
    ]
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
pub fn screenshots_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
