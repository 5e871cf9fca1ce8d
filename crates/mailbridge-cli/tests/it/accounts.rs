//! `mailbridge account ...` and `mailbridge provider ...`: accounts kept in the store,
//! validated, autodetected, imported and exported, and used by `test receive|send`
//! against real Dovecot and Postfix.

use std::os::unix::fs::PermissionsExt as _;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::User;

use super::{PASSWORD, fixture};

#[tokio::test]
async fn account_lifecycle_in_the_store_with_validation_and_export() {
    let f = fixture(365).await;
    // Added from a built-in provider, password read from standard input.
    let (ok, out, err) = f
        .run(
            &[
                "account",
                "add",
                "ops@example.org",
                "--name",
                "ops",
                "--provider",
                "microsoft365-imap",
                "--sign-in",
                "password",
                "--usage",
                "notifications",
                "--password-stdin",
                "--json",
            ],
            Some("pa55-word-in-clear\n"),
        )
        .await;
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["incoming_endpoint"], "imaps://outlook.office365.com:993");
    assert_eq!(
        v["outgoing_endpoint"],
        "smtp+starttls://smtp.office365.com:587"
    );
    assert_eq!(v["password_stored"], true);
    assert_eq!(v["usages"][0], "notifications");
    assert!(!out.contains("pa55-word"), "{out}");

    // The same name twice is refused.
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "add",
                "ops@example.org",
                "--name",
                "ops",
                "--provider",
                "gmail",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("exists already"), "{err}");

    // Precise validation: a port that does not match the TLS mode; both sides off.
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops",
                "--incoming",
                "imaps://outlook.office365.com:143",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("incoming.port"), "{err}");
    assert!(err.contains("use port 993 with tls = implicit"), "{err}");
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops",
                "--download",
                "false",
                "--send",
                "false",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("download and send are both off"), "{err}");
    // App-only with an app on `common` names the Directory (tenant) ID.
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "add",
                "robot@contoso.example",
                "--provider",
                "microsoft365-graph",
                "--sign-in",
                "app-only",
                "--app",
                "nosuchapp",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("app \"nosuchapp\" is not defined"), "{err}");

    // list and show: store and configuration-file accounts, no secret values.
    let (ok, out, _) = f.run(&["account", "list", "--json"], None).await;
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["ops", "helpdesk", "alice"]);
    assert_eq!(list[0]["source"], "store");
    assert_eq!(list[1]["source"], "config");
    let (ok, out, _) = f.run(&["account", "show", "ops@example.org"], None).await;
    assert!(ok);
    assert!(
        out.contains("incoming  imaps://outlook.office365.com:993"),
        "{out}"
    );
    assert!(out.contains("state     password stored"), "{out}");

    // A provider in use cannot be removed; built-ins cannot either.
    let (ok, _, err) = f
        .run(
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
                "--domain",
                "acme.test",
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = f
        .run(&["account", "edit", "ops", "--provider", "acme"], None)
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = f.run(&["provider", "remove", "acme"], None).await;
    assert!(!ok);
    assert!(
        err.contains("provider acme is used by the accounts ops"),
        "{err}"
    );
    let (ok, _, err) = f.run(&["provider", "remove", "gmail"], None).await;
    assert!(!ok);
    assert!(err.contains("built in"), "{err}");

    // Export without secrets, then with; import into a fresh data directory.
    let plain = f.dir.path().join("plain.toml");
    let (ok, _, err) = f
        .run(
            &["account", "export", "--out", plain.to_str().unwrap()],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&plain).unwrap();
    assert!(text.contains("name = \"ops\""), "{text}");
    assert!(
        !text.contains("pa55-word") && !text.contains("[[secret]]"),
        "{text}"
    );
    let full = f.dir.path().join("full.toml");
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "export",
                "--with-secrets",
                "--out",
                full.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&full).unwrap();
    assert!(text.contains("pa55-word-in-clear"), "{text}");
    assert_eq!(
        std::fs::metadata(&full).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let other = tempfile::tempdir().unwrap();
    let import = |args: &[&str]| {
        let mut c = f.cmd(args);
        c.env("MAILBRIDGE_DATA_DIR", other.path())
            .env("MAILBRIDGE_CONFIG", other.path().join("absent.toml"));
        c
    };
    // A named configuration file that does not exist is an error.
    let out = import(&["account", "list"]).output().await.unwrap();
    assert!(!out.status.success());
    let mut c = import(&["account", "import", full.to_str().unwrap()]);
    c.env_remove("MAILBRIDGE_CONFIG").current_dir(other.path());
    let out = c.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = import(&["account", "show", "ops", "--json"]);
    c.env_remove("MAILBRIDGE_CONFIG").current_dir(other.path());
    let out = c.output().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["password_stored"], true);
    assert_eq!(v["provider"], "acme");
    // Importing again refuses, all or nothing, unless --replace.
    let mut c = import(&["account", "import", full.to_str().unwrap()]);
    c.env_remove("MAILBRIDGE_CONFIG").current_dir(other.path());
    let out = c.output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));

    // Remove takes the password with it.
    let (ok, out, _) = f.run(&["account", "remove", "ops", "--json"], None).await;
    assert!(ok, "{out}");
    let (ok, _, err) = f.run(&["account", "show", "ops"], None).await;
    assert!(!ok);
    assert!(err.contains("no account named"), "{err}");
    let (ok, _, err) = f.run(&["account", "remove", "helpdesk"], None).await;
    assert!(!ok);
    assert!(err.contains("configuration file"), "{err}");
}

#[tokio::test]
async fn account_add_autodetects_the_tenant_from_the_address() {
    let f = fixture(365).await;
    let base = f.server.base_url();
    let (ok, out, err) = f
        .run(
            &[
                "account",
                "add",
                "alice@contoso.example",
                "--name",
                "alice2",
                "--sign-in",
                "delegated",
                "--app",
                "docs",
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
    assert!(ok, "{out}{err}");
    assert!(err.contains("decided by OpenIdConfiguration"), "{err}");
    assert!(
        out.contains("incoming: graph+https://graph.microsoft.com"),
        "{out}"
    );
    assert!(out.contains("mailbridge auth login alice2"), "{out}");
    // An unknown domain with nothing to find says what to give instead.
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "add",
                "someone@unknown.invalid",
                "--detect-no-dns",
                "--detect-timeout",
                "2",
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
    assert!(!ok);
    assert!(err.contains("--provider"), "{err}");
}

#[tokio::test]
async fn an_added_password_account_passes_test_receive_and_send_on_real_servers() {
    let f = fixture(365).await;
    f.server.emulator.update(|m| {
        let t = &mut m.tenants[0];
        t.basic_auth_enabled = true;
        t.users
            .push(User::new("ops@contoso.example", "Operations", PASSWORD));
    });
    let mail = MailServers::start(&f.server.emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let incoming = format!("imap+starttls://127.0.0.1:{}", mail.imap().port());
    let outgoing = format!("smtp+starttls://127.0.0.1:{}", mail.submission().port());
    let (ok, out, err) = f
        .run(
            &[
                "account",
                "add",
                "ops@contoso.example",
                "--incoming",
                &incoming,
                "--outgoing",
                &outgoing,
                "--sign-in",
                "password",
                "--tls-name",
                mail.tls_name(),
                "--extra-ca-file",
                ca.to_str().unwrap(),
                "--password-stdin",
                "--test",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("✓ authenticate"), "{out}");
    assert!(out.contains("✓ send"), "{out}");
    // The test message is in the inbox: fetch it into a Maildir, durably, once.
    let maildir = f.dir.path().join("maildir");
    let maildir_text = maildir.to_str().unwrap().to_owned();
    let f = &f;
    let fetch = |since: &'static str| {
        let args = [
            "fetch".to_owned(),
            "--account".to_owned(),
            "ops@contoso.example".to_owned(),
            "--out".to_owned(),
            maildir_text.clone(),
            "--since".to_owned(),
            since.to_owned(),
            "--json".to_owned(),
        ];
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            f.run(&args, None).await
        }
    };
    let (ok, out, err) = fetch("last").await;
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["messages"], 1, "{v}");
    let files: Vec<_> = std::fs::read_dir(maildir.join("new")).unwrap().collect();
    assert_eq!(files.len(), 1);
    let body = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(body.contains("mailbridge test message"), "{body}");
    {
        // The Maildir fetch made is private, its root included.
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [maildir.clone(), maildir.join("new"), maildir.join("tmp")] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
    // Again: nothing new. From the start: nothing fetched twice.
    let (ok, out, _) = fetch("last").await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["messages"],
        0
    );
    let (ok, out, _) = fetch("all").await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["messages"].as_u64(), v["already_present"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 1);

    // By date: only what was received on or after it; then `last` goes on from there.
    let store = mail.mail_store();
    for (subject, received) in [
        ("long ago", time::macros::datetime!(2020-01-01 09:00 UTC)),
        ("this year", time::macros::datetime!(2026-03-01 09:00 UTC)),
    ] {
        let raw = format!("From: bob@example.org\r\nSubject: {subject}\r\n\r\nx\r\n");
        store
            .append_received(
                "ops@contoso.example",
                "INBOX",
                raw.as_bytes(),
                false,
                Some(received),
            )
            .await
            .unwrap();
    }
    let (ok, out, err) = fetch("2021-06-01").await;
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["messages"].as_u64(), v["already_present"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let (ok, out, _) = fetch("last").await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["messages"],
        0,
        "the date run's checkpoint covers the older message too"
    );
    let subjects: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(subjects.len(), 2);
    assert!(subjects.iter().any(|m| m.contains("Subject: this year")));
    assert!(!subjects.iter().any(|m| m.contains("Subject: long ago")));
    let (ok, _, err) = fetch("2021-13-01").await;
    assert!(!ok);
    assert!(err.contains("RFC 3339"), "{err}");

    // A wrong password is named at the authenticate step.
    let (ok, _, err) = f
        .run(
            &["account", "edit", "ops@contoso.example", "--password-stdin"],
            Some("wrong\n"),
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, _) = f
        .run(&["test", "receive", "ops@contoso.example"], None)
        .await;
    assert!(!ok);
    assert!(out.contains("✗ authenticate"), "{out}");
    mail.stop().await;
}

#[tokio::test]
async fn test_receive_signs_in_with_the_login_fetch_uses_and_pins_are_set_by_flag() {
    let f = fixture(365).await;
    f.server.emulator.update(|m| {
        let t = &mut m.tenants[0];
        t.basic_auth_enabled = true;
        t.users
            .push(User::new("ops@contoso.example", "Operations", PASSWORD));
    });
    let mail = MailServers::start(&f.server.emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let incoming = format!("imaps://127.0.0.1:{}", mail.imaps().port());
    // The server knows the user as ops@contoso.example; the login format makes "ops".
    let (ok, out, err) = f
        .run(
            &[
                "account",
                "add",
                "ops@contoso.example",
                "--incoming",
                &incoming,
                "--sign-in",
                "password",
                "--login-format",
                "mailbox-name",
                "--tls-name",
                mail.tls_name(),
                "--extra-ca-file",
                ca.to_str().unwrap(),
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(ok, "{out}{err}");
    let maildir = f.dir.path().join("maildir");
    let (ok, _, _) = f
        .run(
            &[
                "fetch",
                "--account",
                "ops@contoso.example",
                "--out",
                maildir.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(!ok, "fetch signs in as \"ops\", which the server refuses");
    // The check signs in as fetch does, so it fails as fetch does.
    let (ok, out, _) = f
        .run(&["test", "receive", "ops@contoso.example"], None)
        .await;
    assert!(!ok, "{out}");
    assert!(out.contains("✗ authenticate"), "{out}");
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops@contoso.example",
                "--login-format",
                "email",
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = f
        .run(&["test", "receive", "ops@contoso.example"], None)
        .await;
    assert!(ok, "{out}{err}");

    // Pins: checked when given, kept per side, removed with `none`. A pin of another
    // certificate does not stop the usual checks (the CA file still makes it trusted).
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops@contoso.example",
                "--incoming-tls-pin",
                "sha256:12",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("is not a certificate pin"), "{err}");
    let pin = format!("SHA256:{}", vec!["AB"; 32].join(":"));
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops@contoso.example",
                "--incoming-tls-pin",
                &pin,
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, _) = f
        .run(&["account", "show", "ops@contoso.example", "--json"], None)
        .await;
    assert!(ok);
    assert!(
        out.contains(&format!("sha256:{}", "ab".repeat(32))),
        "{out}"
    );
    let (ok, out, err) = f
        .run(&["test", "receive", "ops@contoso.example"], None)
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("certificate pinned"), "{out}");
    let (ok, _, err) = f
        .run(
            &[
                "account",
                "edit",
                "ops@contoso.example",
                "--incoming-tls-pin",
                "none",
            ],
            None,
        )
        .await;
    assert!(ok, "{err}");
    let (_, out, _) = f
        .run(&["account", "show", "ops@contoso.example", "--json"], None)
        .await;
    assert!(!out.contains("sha256:"), "{out}");
    mail.stop().await;
}

#[tokio::test]
async fn a_malformed_pin_in_the_configuration_file_is_reported_when_it_is_loaded() {
    let f = fixture(365).await;
    let good = std::fs::read_to_string(f.config()).unwrap();
    let (ok, out, err) = f.run(&["account", "list"], None).await;
    assert!(ok, "the fixture's file loads: {out}{err}");
    let bad = format!(
        "{good}\n[[account]]\nname = \"relay\"\naddress = \"relay@contoso.example\"\nsign_in = \"password\"\noutgoing = {{ transport = \"smtp\", host = \"smtp.contoso.example\", port = 587, tls = \"starttls\", tls_pin = \"sha256:not-hex\" }}\n"
    );
    std::fs::write(f.config(), bad).unwrap();
    // Any command that reads the file says so before connecting anywhere.
    for args in [&["account", "list"][..], &["account", "show", "relay"][..]] {
        let (ok, out, err) = f.run(args, None).await;
        assert!(!ok, "{args:?}: {out}");
        assert!(
            err.contains(
                "account \"relay\": outgoing.tls_pin: \"sha256:not-hex\" is not a certificate pin"
            ),
            "{args:?}: {err}"
        );
        assert!(err.contains("mailbridge.toml"), "the file is named: {err}");
    }
}
