//! `mailbridge serve` as a process, on SQLite and on PostgreSQL: the first start
//! prints one administrator token, the API takes it, SIGTERM stops the daemon with
//! exit code 0, a restart prints no token and keeps the old one, `mailbridge token`
//! adds and revokes tokens the running daemon honours.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Generous: a debug build on a busy machine. Only failures wait this long.
const DEADLINE: Duration = Duration::from_mins(1);

fn mailbridge(data: &Path, database: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailbridge"));
    c.args(args)
        .env("MAILBRIDGE_DATA_DIR", data)
        .env("MAILBRIDGE_CONFIG", data.join("absent.toml"))
        .env_remove("MAILBRIDGE_MASTER_KEY")
        .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
        .env_remove("MAILBRIDGE_LISTEN")
        .env_remove("MAILBRIDGE_DATABASE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = database {
        c.env("MAILBRIDGE_DATABASE", url);
    }
    c
}

struct Daemon {
    child: Child,
    base: String,
    /// The token printed on this start, if any.
    token: Option<String>,
    _stdout: Lines<BufReader<ChildStdout>>,
}

async fn start(data: &Path, database: Option<&str>) -> Daemon {
    let mut child = mailbridge(
        data,
        database,
        &["serve", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let mut seen = Vec::new();
    let base = tokio::time::timeout(DEADLINE, async {
        loop {
            let Some(line) = lines.next_line().await.unwrap() else {
                panic!("serve ended before listening; stdout: {seen:?}");
            };
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
            if let Some(found) = line.split_whitespace().find(|w| w.starts_with("mbt_")) {
                assert!(token.is_none(), "two tokens printed: {seen:?}");
                token = Some(found.to_owned());
            }
            seen.push(line);
        }
    })
    .await
    .expect("serve did not print its address in time");
    if token.is_some() {
        let said = seen.join("\n");
        assert!(said.contains("first-admin"), "{said}");
        assert!(said.contains("only this once"), "{said}");
        assert!(said.contains("mailbridge token add"), "{said}");
    }
    Daemon {
        child,
        base,
        token,
        _stdout: lines,
    }
}

impl Daemon {
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// SIGTERM, then the exit status (within the deadline) and the log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("serve did not stop after SIGTERM")
            .unwrap();
        let mut log = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut self.child.stderr.take().unwrap(), &mut log)
            .await
            .unwrap();
        assert!(status.success(), "{status:?}; log: {log}");
        log
    }
}

async fn run(data: &Path, database: Option<&str>, args: &[&str]) -> String {
    let out = mailbridge(data, database, args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn serve_lifecycle(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // First start: one administrator token, printed once.
    let daemon = start(&data, database).await;
    let token = daemon
        .token
        .clone()
        .expect("the first start prints a token");
    assert!(data.join("master.key").exists(), "master key made");
    if database.is_none() {
        assert!(
            data.join("mailbridge.db").exists(),
            "SQLite in the data dir"
        );
    }
    let (status, body) = daemon.get("/api/v1/whoami", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["token"], "first-admin");
    assert_eq!(me["role"], "administrator");
    assert_eq!(daemon.get("/api/v1/whoami", None).await.0, 401);
    assert_eq!(
        daemon
            .get("/api/v1/whoami", Some("mbt_not-a-token-it-knows"))
            .await
            .0,
        401
    );
    assert_eq!(daemon.get("/healthz", None).await.0, 200);
    assert_eq!(daemon.get("/readyz", None).await.0, 200);

    // A token made with the CLI while the daemon runs works at once; revoked, refused.
    let added = run(
        &data,
        database,
        &["token", "add", "reports", "--role", "auditor", "--json"],
    )
    .await;
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let auditor = added["token"].as_str().unwrap().to_owned();
    assert_eq!(added["role"], "auditor");
    let (status, body) = daemon.get("/api/v1/whoami", Some(&auditor)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"auditor\""), "{body}");
    let listed = run(&data, database, &["token", "list", "--json"]).await;
    assert!(
        !listed.contains(&auditor) && !listed.contains(&token),
        "no token listed"
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    run(&data, database, &["token", "revoke", "reports"]).await;
    assert_eq!(daemon.get("/api/v1/whoami", Some(&auditor)).await.0, 401);

    // SIGTERM: exit 0; the log is JSON and carries no token.
    let log = daemon.stop().await;
    assert!(!log.contains(&token) && !log.contains(&auditor), "{log}");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(log.contains("SIGTERM"), "{log}");

    // Again on the same data: no new token; the old one still works.
    let daemon = start(&data, database).await;
    assert_eq!(daemon.token, None, "a later start prints no token");
    let (status, body) = daemon.get("/api/v1/whoami", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(daemon.get("/api/v1/whoami", Some(&auditor)).await.0, 401);
    daemon.stop().await;
}

#[tokio::test]
async fn serve_on_sqlite_with_nothing_set_up() {
    serve_lifecycle(None).await;
}

#[tokio::test]
async fn serve_on_postgresql() {
    let url = mailbridge_testkit::postgres::fresh_database()
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (scripts/install-deps): {e}"));
    serve_lifecycle(Some(&url)).await;
}

#[tokio::test]
async fn token_commands_explain_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(
        &data,
        None,
        &["token", "add", "ci", "--role", "user", "--user", "bob"],
    )
    .await;
    let out = mailbridge(&data, None, &["token", "add", "ci"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exists already") && err.contains("token revoke ci"),
        "{err}"
    );
    let out = mailbridge(&data, None, &["token", "revoke", "nobody"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token list"), "{err}");
    let listed = run(&data, None, &["token", "list"]).await;
    assert!(listed.contains("ci  user  bob"), "{listed}");
    // A database URL of another kind is refused, naming it without its password.
    let out = mailbridge(
        &data,
        None,
        &["serve", "--database", "mysql://root:pw-x9@db/x"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("pw-x9"), "{err}");
    assert!(err.contains("postgres://"), "{err}");
}

#[tokio::test]
async fn a_stop_is_bounded_by_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = mailbridge(
        &data,
        None,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shutdown-timeout",
            "1",
            "--log-format",
            "json",
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("serve ended early");
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return addr.to_owned();
            }
        }
    })
    .await
    .unwrap();
    // A request that never finishes arriving keeps its connection busy: the graceful
    // stop would wait for it without the bound.
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stuck, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Accepted in order: once a later connection is answered, this one is being read.
    let daemon = Daemon {
        child,
        base: format!("http://{addr}"),
        token: None,
        _stdout: lines,
    };
    assert_eq!(daemon.get("/healthz", None).await.0, 200);
    let log = daemon.stop().await;
    assert!(log.contains("cut off"), "{log}");
    drop(stuck);
}
