//! `mailbridge app add|list|show|edit|remove`: apps kept in the store, their secret
//! sealed and never printed, checked before they are saved, not removable while
//! accounts use them; and the account-side rough edges a new user hit (host and port
//! syntax, long names, EWS sides, provider defaults, autodetection steps).

use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;

use super::{Fixture, SECRET, db_bytes, fixture};

/// Runs the binary; (exit code, stdout, stderr).
async fn run_code(f: &Fixture, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = f.cmd(args);
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn app_lifecycle_secret_sealed_and_removal_refused_while_used() {
    let f = fixture(365).await;
    let base = f.server.base_url();
    let client_id = f.daemon.client_id.to_string();
    // Validated first: a tenant with a space and a missing client id are named.
    let (code, _, err) = run_code(
        &f,
        &[
            "app",
            "add",
            "mine",
            "--tenant",
            "contoso tenant",
            "--client-id",
            "",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("app mine was not saved"), "{err}");
    assert!(
        err.contains("tenant: \"contoso tenant\" is not a tenant"),
        "{err}"
    );
    assert!(err.contains("client_id: no client id is set"), "{err}");
    // Without a terminal, a secret app needs its secret given.
    let (code, _, err) = run_code(
        &f,
        &[
            "app",
            "add",
            "mine",
            "--tenant",
            "contoso.example",
            "--client-id",
            &client_id,
            "--credential",
            "secret",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--client-secret-file"), "{err}");
    // A usage mistake is exit code 2 (clap).
    let (code, _, _) = run_code(&f, &["app", "add"], None).await;
    assert_eq!(code, 2);

    // Added with the secret from standard input.
    let (code, out, err) = run_code(
        &f,
        &[
            "app",
            "add",
            "mine",
            "--tenant",
            "contoso.example",
            "--client-id",
            &client_id,
            "--authority-host",
            &base,
            "--client-secret-file",
            "-",
            "--secret-expires",
            "2027-06-30",
            "--json",
        ],
        Some(&format!("{SECRET}\n")),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "mine");
    assert_eq!(v["credential"]["type"], "secret");
    assert_eq!(v["secret_stored"], true);
    assert_eq!(v["authority_host_in_force"], base.as_str());
    // The same name twice is refused.
    let (code, _, err) = run_code(
        &f,
        &[
            "app",
            "add",
            "mine",
            "--tenant",
            "contoso.example",
            "--client-id",
            &client_id,
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");

    // An account signs in with it: the sealed secret is the right one.
    let (code, _, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "robot@contoso.example",
            "--name",
            "robot",
            "--provider",
            "microsoft365-imap",
            "--sign-in",
            "app-only",
            "--app",
            "mine",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_code(&f, &["auth", "login", "robot"], None).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("app-only sign-in works"), "{out}");

    // list and show: store and configuration-file apps, never the secret.
    let (code, out, _) = run_code(&f, &["app", "list", "--json"], None).await;
    assert_eq!(code, 0);
    assert!(!out.contains(SECRET));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("mine", "store"), ("daemon", "config"), ("docs", "config")]
    );
    assert_eq!(list[0]["accounts"], serde_json::json!(["robot"]));
    let (code, out, _) = run_code(&f, &["app", "list"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("client secret, stored, expires 2027-06-30"),
        "{out}"
    );
    let (code, out, _) = run_code(&f, &["app", "show", "mine"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("accounts    robot"), "{out}");
    assert!(!out.contains(SECRET));
    assert!(
        !db_bytes(&f.data())
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes())
    );

    // Removal is refused while an account uses it, naming the account.
    let (code, _, err) = run_code(&f, &["app", "remove", "mine"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("app mine is used by the accounts robot"),
        "{err}"
    );
    // Edits are checked; a public client drops the stored secret.
    let (code, _, err) = run_code(
        &f,
        &["app", "edit", "mine", "--graph-root", "graph.example.org"],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("graph_root"), "{err}");
    let (code, out, err) = run_code(
        &f,
        &["app", "edit", "mine", "--credential", "none", "--json"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["credential"]["type"], "none");
    assert_eq!(v["secret_stored"], false);
    // A configuration-file app is edited in its file.
    let (code, _, err) = run_code(&f, &["app", "edit", "daemon", "--cloud", "china"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("configuration file"), "{err}");

    let (code, _, _) = run_code(&f, &["account", "remove", "robot"], None).await;
    assert_eq!(code, 0);
    let (code, out, err) = run_code(&f, &["app", "remove", "mine", "--json"], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({ "removed": "mine" })
    );
    let (code, _, err) = run_code(&f, &["app", "show", "mine"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("no app named"), "{err}");
}

#[tokio::test]
async fn account_hosts_ports_and_names_are_checked_when_saving() {
    let f = fixture(365).await;
    let long_name = "x".repeat(300);
    for (incoming, name, says) in [
        ("imaps://mail example.org", None, "incoming.host"),
        (
            "imaps://mail.example.org:0",
            None,
            "incoming.port: port 0 is not a port",
        ),
        ("imaps://[::1", None, "no closing bracket"),
        (
            "imaps://mail.example.org",
            Some(long_name.as_str()),
            "name: the name has 300 characters",
        ),
    ] {
        let mut args = vec![
            "account",
            "add",
            "ops@example.org",
            "--incoming",
            incoming,
            "--sign-in",
            "password",
            "--send",
            "false",
        ];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        let (code, _, err) = run_code(&f, &args, None).await;
        assert_eq!(code, 1, "{incoming}: {err}");
        assert!(err.contains(says), "{incoming}: {err}");
    }
    // The same checks on edit.
    let (code, _, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "ops@example.org",
            "--incoming",
            "imaps://mail.example.org",
            "--sign-in",
            "password",
            "--send",
            "false",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_code(
        &f,
        &[
            "account",
            "edit",
            "ops@example.org",
            "--tls-name",
            "mail example.org",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("incoming.tls_name"), "{err}");
    // The limits are set from the command line, shown, and checked (0 is refused by
    // the parser; a 0 in a file by validation).
    let (code, out, err) = run_code(
        &f,
        &[
            "account",
            "edit",
            "ops@example.org",
            "--max-message-size",
            "1000",
            "--command-timeout-secs",
            "60",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) =
        run_code(&f, &["account", "show", "ops@example.org", "--json"], None).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let limits = &v["limits"];
    assert_eq!(limits["max_message_size"], 1000, "{v}");
    assert_eq!(limits["command_timeout_secs"], 60, "{v}");
    assert_eq!(limits["max_list_items"], 1_000_000, "{v}");
    let (code, out, _) = run_code(&f, &["account", "show", "ops@example.org"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("max_message_size 1000"), "{out}");
    let (code, _, err) = run_code(
        &f,
        &["account", "edit", "ops@example.org", "--max-pages", "0"],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-pages"), "{err}");
}

#[tokio::test]
async fn ews_sides_choose_their_provider_and_send_through_the_incoming_side() {
    let f = fixture(365).await;
    let (code, out, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "helpdesk2@contoso.example",
            "--incoming",
            "ews+https://outlook.office365.com/EWS/Exchange.asmx",
            "--sign-in",
            "app-only",
            "--app",
            "daemon",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provider"], "microsoft365-ews");
    assert_eq!(v["send"], true);
    assert_eq!(v["outgoing_endpoint"], v["incoming_endpoint"]);
    assert!(err.contains("2027-04-01"), "the retirement notice: {err}");

    let (code, out, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "ops@contoso.example",
            "--incoming",
            "ews+https://mail.contoso.example/EWS/Exchange.asmx",
            "--sign-in",
            "password",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provider"], "exchange-onpremises");
    assert_eq!(
        v["outgoing_endpoint"],
        "ews+https://mail.contoso.example/EWS/Exchange.asmx"
    );
    let (code, out, _) = run_code(&f, &["provider", "list"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("Microsoft 365 (EWS)"), "{out}");
    assert!(out.contains("Exchange on-premises (EWS)"), "{out}");
}

#[tokio::test]
async fn a_provider_s_defaults_go_to_the_accounts_made_from_it() {
    let f = fixture(365).await;
    let ca = f.dir.path().join("acme-ca.pem");
    std::fs::write(&ca, "not checked here").unwrap();
    let pin = format!("sha256:{}", "0f".repeat(32));
    let (code, _, err) = run_code(
        &f,
        &[
            "provider",
            "add",
            "acme",
            "--name",
            "Acme Mail",
            "--incoming",
            "imaps://imap.acme.test",
            "--outgoing",
            "smtps://smtp.acme.test",
            "--sign-in",
            "app-only",
            "--app",
            "nosuchapp",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("app \"nosuchapp\" is not defined"), "{err}");
    let (code, _, err) = run_code(
        &f,
        &[
            "provider",
            "add",
            "acme",
            "--name",
            "Acme Mail",
            "--incoming",
            "imaps://imap.acme.test",
            "--incoming-tls-pin",
            "sha256:nothex",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("incoming.tls_pin"), "{err}");
    let (code, _, err) = run_code(
        &f,
        &[
            "provider",
            "add",
            "acme",
            "--name",
            "Acme Mail",
            "--incoming",
            "imaps://imap.acme.test",
            "--outgoing",
            "smtps://smtp.acme.test",
            "--sign-in",
            "app-only",
            "--app",
            "daemon",
            "--extra-ca-file",
            ca.to_str().unwrap(),
            "--incoming-tls-pin",
            &pin,
            "--domain",
            "acme.test",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "x@acme.test",
            "--provider",
            "acme",
            "--json",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["app"], "daemon");
    assert_eq!(v["sign_in"], "app-only");
    assert_eq!(v["incoming"]["extra_ca_file"], ca.to_str().unwrap());
    assert_eq!(v["outgoing"]["extra_ca_file"], ca.to_str().unwrap());
    assert_eq!(v["incoming"]["tls_pin"], pin.as_str());
    assert!(
        v["outgoing"]
            .get("tls_pin")
            .is_none_or(serde_json::Value::is_null)
    );
}

#[tokio::test]
async fn autodetection_stops_at_the_domain_table_and_prints_only_steps_that_ran() {
    let f = fixture(365).await;
    let base = f.server.base_url();
    let (code, _, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "someone@gmail.com",
            "--sign-in",
            "password",
            "--detect-no-dns",
            "--detect-authority-host",
            &base,
            "--detect-autodiscover-url",
            &format!("{base}/autodiscover/autodiscover.json"),
            "--detect-autoconfig-url",
            &format!("{base}/nothing-here/{{domain}}"),
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("decided by DomainTable"), "{err}");
    let steps: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("->"))
        .collect();
    assert_eq!(steps.len(), 1, "{err}");
    assert!(steps[0].trim_start().starts_with("DomainTable"), "{err}");
    assert!(
        f.server.emulator.requests().is_empty(),
        "nothing asked of the sign-in host or Autodiscover"
    );
    // Without DNS, no MX step is printed.
    let (_, _, err) = run_code(
        &f,
        &[
            "account",
            "add",
            "someone@unknown.invalid",
            "--detect-no-dns",
            "--detect-authority-host",
            &base,
            "--detect-autodiscover-url",
            &format!("{base}/autodiscover/autodiscover.json"),
            "--detect-autoconfig-url",
            &format!("{base}/nothing-here/{{domain}}"),
        ],
        None,
    )
    .await;
    assert!(err.contains("OpenIdConfiguration"), "{err}");
    assert!(
        !err.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("Mx ") || l.starts_with("Srv ")
        }),
        "{err}"
    );
}
