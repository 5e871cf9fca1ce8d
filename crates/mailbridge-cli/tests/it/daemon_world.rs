//! The world the daemon tests run `mailbridge serve` in: an emulated tenant (an app
//! with app-only IMAP and SMTP), private Dovecot and Postfix, a configuration file
//! with two accounts (`alice-smtp` sends, `bob-imap` receives), and the running
//! daemon with its API and its JSON log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
pub const SECRET: &str = "Qx~8Q~cli.daemon.secret-value-0123456789";
/// Generous: a debug build on a busy machine. Only failures wait this long.
pub const DEADLINE: Duration = Duration::from_mins(2);

pub struct World {
    _server: EmulatorServer,
    pub mail: MailServers,
    pub dir: tempfile::TempDir,
}

impl World {
    /// `mailbridge ARGS` with the world's configuration and data directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_in(&self.data(), args)
    }

    /// `mailbridge ARGS` with the world's configuration and the data directory `data`
    /// (several instances, each with its own).
    pub fn cmd_in(&self, data: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailbridge"));
        c.args(args)
            .env("MAILBRIDGE_CONFIG", self.dir.path().join("mailbridge.toml"))
            .env("MAILBRIDGE_DATA_DIR", data)
            .env_remove("MAILBRIDGE_MASTER_KEY")
            .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
            .env_remove("MAILBRIDGE_LISTEN")
            .env_remove("MAILBRIDGE_DATABASE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// The data directory of a single instance.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// The `.eml` files of the archive.
    pub fn archived(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.archive()) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
            .collect()
    }
}

/// The world with the app's client secret stored (SQLite in [`World::data`]).
pub async fn world() -> World {
    let w = world_without_secret().await;
    let mut c = w.cmd(&["secrets", "set-app-secret", "connector"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SECRET}\n").as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w
}

/// The world with no store yet: the caller stores the app's client secret
/// (`app:connector:client-secret`) where its daemons' store is.
pub async fn world_without_secret() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Connector")
        .with_secret(SECRET, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &sp, MailboxRight::FullAccess)
        .with_mailbox_permission(BOB, &sp, MailboxRight::FullAccess);
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let submission = mail.submission();
    let config = format!(
        r#"
[[app]]
name = "connector"
tenant = "contoso.example"
client_id = "{client_id}"
authority_host = "{base}"
credential = {{ type = "secret" }}

[[account]]
name = "alice-smtp"
address = "{ALICE}"
sign_in = "app-only"
app = "connector"
transports = ["smtp"]
outgoing = {{ transport = "smtp", host = "{host}", port = {port}, tls = "starttls", tls_name = "{tls_name}", extra_ca_file = "{ca}" }}

[[account]]
name = "bob-imap"
address = "{BOB}"
sign_in = "app-only"
app = "connector"
transports = ["imap"]
incoming = {{ transport = "imap", host = "{host}", port = {imap_port}, tls = "starttls", tls_name = "{tls_name}", extra_ca_file = "{ca}" }}
"#,
        imap_port = mail.imap().port(),
        client_id = app.client_id,
        base = server.base_url(),
        host = submission.ip(),
        port = submission.port(),
        tls_name = mail.tls_name(),
        ca = ca.display(),
    );
    std::fs::write(dir.path().join("mailbridge.toml"), config).unwrap();
    World {
        _server: server,
        mail,
        dir,
    }
}

/// A running `mailbridge serve`. Its log (standard error) is read as it is written,
/// so a busy daemon never blocks on a full pipe.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub token: Option<String>,
    log: Arc<Mutex<String>>,
    log_reader: tokio::task::JoinHandle<()>,
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// `mailbridge serve` on a free port with JSON logs, in the world's data directory.
pub async fn start(w: &World) -> Daemon {
    spawn(w.cmd(&["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])).await
}

/// Starts `serve` (a command made by [`World::cmd`] or [`World::cmd_in`]) and waits
/// for its address.
pub async fn spawn(mut cmd: Command) -> Daemon {
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let log: Arc<Mutex<String>> = Arc::default();
    let log_reader = {
        let log = log.clone();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        tokio::spawn(async move {
            let mut line = Vec::new();
            loop {
                line.clear();
                match stderr.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => log
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
        })
    };
    let mut token = None;
    let started = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap()?;
            if let Some(addr) = line.strip_prefix("listening on ") {
                return Some(addr.to_owned());
            }
            if let Some(found) = line.split_whitespace().find(|w| w.starts_with("mbt_")) {
                token = Some(found.to_owned());
            }
        }
    })
    .await
    .expect("serve did not print its address in time");
    let Some(base) = started else {
        let _ = child.wait().await;
        let _ = log_reader.await;
        panic!(
            "serve ended early; log: {}",
            log.lock().unwrap_or_else(PoisonError::into_inner)
        );
    };
    Daemon {
        child,
        base,
        token,
        log,
        log_reader,
        _stdout: lines,
    }
}

impl Daemon {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The log written so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SIGTERM; waits for a clean exit and returns the whole log.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("serve did not stop after SIGTERM")
            .unwrap();
        let log = self.finish_log().await;
        assert!(status.success(), "{status:?}; log: {log}");
        log
    }

    /// `kill -9`: no chance to finish anything. Returns the whole log up to the kill.
    pub async fn kill(mut self) -> String {
        let pid = self.child.id().unwrap();
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("serve did not end after SIGKILL")
            .unwrap();
        assert!(!status.success(), "{status:?}");
        self.finish_log().await
    }

    async fn finish_log(&mut self) -> String {
        tokio::time::timeout(DEADLINE, &mut self.log_reader)
            .await
            .expect("the log did not end with the process")
            .unwrap();
        self.log()
    }
}

/// Waits until `done` holds, polling; panics with `what` after `deadline`.
pub async fn eventually_within(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `done` holds, polling; panics with `what` after the [`DEADLINE`].
pub async fn eventually(what: &str, done: impl FnMut() -> bool) {
    eventually_within(what, DEADLINE, done).await;
}

pub async fn account_id(d: &Daemon, token: &str, name: &str) -> String {
    let (status, accounts) = d
        .call(reqwest::Method::GET, "/api/v1/accounts", Some(token), None)
        .await;
    assert_eq!(status, 200, "{accounts}");
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
