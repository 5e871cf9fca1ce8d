//! `mailbridge user` against a real store, and `mailbridge serve`'s one-time setup
//! link: printed while no one exists, not once someone does.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_mins(1);

fn mailbridge(data: &Path, args: &[&str]) -> Command {
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
    c
}

/// Runs a command with `stdin`; (success, stdout, stderr).
async fn run(data: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = mailbridge(data, args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn users_are_added_listed_changed_and_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (ok, out, err) = run(data, &["user", "list"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("no users yet"), "{out}");

    let pw = "correct horse battery\n";
    let (ok, out, err) = run(
        data,
        &["user", "add", "root", "--admin", "--password-file", "-"],
        pw,
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("added user \"root\" (administrator)"), "{out}");
    let (ok, out, err) = run(
        data,
        &[
            "user",
            "add",
            "carol",
            "--role",
            "auditor",
            "--language",
            "pl-PL",
            "--password-file",
            "-",
            "--json",
        ],
        pw,
    )
    .await;
    assert!(ok, "{err}");
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["role"], "auditor");
    assert_eq!(added["language"], "pl");
    assert!(!out.contains("argon2"), "{out}");

    // Refusals say what to do.
    let (ok, _, err) = run(data, &["user", "add", "root", "--password-file", "-"], pw).await;
    assert!(!ok);
    assert!(
        err.contains("exists already") && err.contains("mailbridge user passwd root"),
        "{err}"
    );
    let (ok, _, err) = run(
        data,
        &["user", "add", "dave", "--password-file", "-"],
        "short\n",
    )
    .await;
    assert!(!ok);
    assert!(err.contains("shorter than 10 characters"), "{err}");
    let (ok, _, err) = run(data, &["user", "add", "eve"], "").await;
    assert!(!ok);
    assert!(err.contains("--password-file"), "{err}");
    let (ok, _, err) = run(
        data,
        &["user", "add", "bad name", "--password-file", "-"],
        pw,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("not a valid user name"), "{err}");
    let (ok, _, err) = run(
        data,
        &[
            "user",
            "add",
            "frank",
            "--language",
            "es",
            "--password-file",
            "-",
        ],
        pw,
    )
    .await;
    assert!(!ok);
    assert!(err.contains("en, pl, de, fr or ru"), "{err}");

    // Listed by name, without passwords; disabled and enabled again.
    let (ok, _, err) = run(data, &["user", "disable", "carol"], "").await;
    assert!(ok, "{err}");
    let (_, out, _) = run(data, &["user", "list", "--json"], "").await;
    let users: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let summary: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap(),
                u["role"].as_str().unwrap(),
                u["disabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("carol", "auditor", true), ("root", "administrator", false)]
    );
    assert!(!out.contains("argon2"), "{out}");
    let (ok, _, err) = run(data, &["user", "enable", "carol"], "").await;
    assert!(ok, "{err}");
    let (_, out, _) = run(data, &["user", "list"], "").await;
    assert!(!out.contains("disabled"), "{out}");

    let (ok, out, err) = run(
        data,
        &["user", "passwd", "carol", "--password-file", "-"],
        "another long password\n",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("changed the password"), "{out}");
    let (ok, _, err) = run(data, &["user", "disable", "nobody"], "").await;
    assert!(!ok);
    assert!(err.contains("no user named \"nobody\""), "{err}");
}

/// Starts `mailbridge serve`, reads standard output up to `listening on`; a setup
/// link printed opens the setup page on the running daemon (the web UI is served
/// beside the API, with its Content-Security-Policy). Stops it; the lines before.
async fn serve_says(data: &Path) -> Vec<String> {
    let mut child = mailbridge(data, &["serve", "--listen", "127.0.0.1:0"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = tokio::time::timeout(DEADLINE, async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("listening on ") {
                return seen;
            }
            seen.push(line);
        }
        panic!("serve ended before listening: {seen:?}");
    })
    .await
    .expect("serve did not print its address in time");
    if let Some(link) = seen
        .iter()
        .find_map(|l| l.split_whitespace().find(|w| w.contains("/setup?token=")))
    {
        let res = reqwest::get(link).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("Create the first administrator"), "{html}");
    }
    child.kill().await.unwrap();
    seen
}

#[tokio::test]
async fn serve_prints_a_setup_link_until_someone_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let said = serve_says(data).await;
    let link: Vec<_> = said
        .iter()
        .filter(|l| l.contains("/setup?token="))
        .collect();
    assert_eq!(link.len(), 1, "{said:?}");
    assert!(link[0].contains("http://127.0.0.1:"), "{said:?}");
    assert!(link[0].contains("works once"), "{said:?}");

    let (ok, _, err) = run(
        data,
        &["user", "add", "root", "--admin", "--password-file", "-"],
        "correct horse battery\n",
    )
    .await;
    assert!(ok, "{err}");
    let said = serve_says(data).await;
    assert!(!said.iter().any(|l| l.contains("/setup")), "{said:?}");
}
