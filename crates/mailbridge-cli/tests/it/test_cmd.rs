//! `mailbridge test receive|send <account> [--to ADDR] [--json]` over every transport
//! against the emulated tenant and real Dovecot/Postfix: Graph and POP3 receive, Graph
//! and EWS send, and §8.2 rows as the admin sees them, in text and in `--json`.

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    AccessPolicyMode, Api, ApplicationAccessPolicy, ExchangeServicePrincipal, MailboxPermission,
    MailboxRight, PermissionKind, RequiredPermission, User,
};
use serde_json::Value;

use super::{Fixture, PASSWORD, SECRET, fixture};

const HELPDESK: &str = "helpdesk@contoso.example";

/// The fixture's daemon app set up right for app-only access to the helpdesk mailbox
/// over every transport, its secret stored, and Dovecot/Postfix running.
async fn daemon_ready() -> (Fixture, MailServers, std::path::PathBuf) {
    let f = fixture(365).await;
    let daemon = f.daemon.clone();
    f.server.emulator.update(|m| {
        let t = &mut m.tenants[0];
        for (api, role) in [
            (Api::ExchangeOnline, "POP.AccessAsApp"),
            (Api::ExchangeOnline, "SMTP.SendAsApp"),
            (Api::ExchangeOnline, "full_access_as_app"),
            (Api::Graph, "Mail.ReadWrite"),
            (Api::Graph, "Mail.Send"),
        ] {
            t.apps[0].permissions.push(RequiredPermission {
                api,
                kind: PermissionKind::Application,
                value: role.into(),
            });
        }
        t.exchange_service_principals
            .push(ExchangeServicePrincipal {
                app_id: daemon.client_id,
                object_id: daemon.service_principal_id,
                added_at: None,
            });
        t.users.push(User::new(HELPDESK, "Helpdesk", PASSWORD));
        t.mailbox_permissions.push(MailboxPermission {
            mailbox: HELPDESK.into(),
            trustee: daemon.service_principal_id.to_string(),
            right: MailboxRight::FullAccess,
            added_at: None,
        });
    });
    let mail = MailServers::start(&f.server.emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{SECRET}\n")),
        )
        .await;
    assert!(ok, "{err}");
    (f, mail, ca)
}

/// Gives the helpdesk account these incoming and outgoing sides (TOML inline tables).
fn set_sides(f: &Fixture, incoming: &str, outgoing: Option<&str>) {
    let config = std::fs::read_to_string(f.config()).unwrap();
    let marker = "app = \"daemon\"\ntransports = [\"imap\"]\n";
    assert!(config.contains(marker), "{config}");
    let outgoing = outgoing
        .map(|o| format!("outgoing = {o}\n"))
        .unwrap_or_default();
    let sides = format!("incoming = {incoming}\n{outgoing}");
    let config = config.replacen(marker, &format!("{marker}{sides}"), 1);
    std::fs::write(f.config(), config).unwrap();
}

async fn deliver(mail: &MailServers) {
    mail.mail_store()
        .append(
            HELPDESK,
            "INBOX",
            b"From: Alice <alice@contoso.example>\r\nTo: helpdesk@contoso.example\r\nSubject: Printer on fire\r\nMessage-ID: <42@contoso.example>\r\n\r\nPlease help.\r\n",
            false,
        )
        .await
        .unwrap();
}

fn steps(v: &Value) -> Vec<(String, bool)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["ok"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn graph_receive_and_send_report_every_step_in_text_and_json() {
    let (f, mail, _) = daemon_ready().await;
    deliver(&mail).await;
    let base = f.server.base_url();
    set_sides(
        &f,
        &format!("{{ transport = \"graph\", host = \"{base}\" }}"),
        None,
    );
    let (ok, out, err) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(ok, "{out}{err}");
    for line in [
        "✓ get token",
        "✓ open inbox",
        "/users/helpdesk@contoso.example/mailFolders/inbox has 1 messages",
        "✓ read header",
        "Subject: Printer on fire",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }

    let (ok, out, err) = f
        .run(&["test", "receive", "helpdesk", "--json"], None)
        .await;
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    let names: Vec<String> = steps(&v).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        names,
        [
            "resolve",
            "connect+TLS",
            "get token",
            "open inbox",
            "read header"
        ]
    );
    for s in v["steps"].as_array().unwrap() {
        let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["detail", "elapsed_ms", "ok", "step"], "{s}");
        assert!(s["elapsed_ms"].is_u64(), "{s}");
    }

    // Send over Graph (the incoming side is also the outgoing one).
    let (ok, out, err) = f
        .run(
            &[
                "test",
                "send",
                "helpdesk",
                "--to",
                "alice@contoso.example",
                "--json",
            ],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let last = v["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "send");
    assert!(
        last["detail"].as_str().unwrap().contains("sendMail"),
        "{last}"
    );
    mail.stop().await;
}

#[tokio::test]
async fn pop3_receive_reads_one_header_and_ews_sends() {
    let (f, mail, ca) = daemon_ready().await;
    deliver(&mail).await;
    let base = f.server.base_url();
    set_sides(
        &f,
        &format!(
            "{{ transport = \"pop3\", host = \"127.0.0.1\", port = {}, tls = \"implicit\", tls_name = \"{}\", extra_ca_file = \"{}\" }}",
            mail.pop3s().port(),
            mail.tls_name(),
            ca.display()
        ),
        Some(&format!(
            "{{ transport = \"ews\", host = \"{base}/EWS/Exchange.asmx\" }}"
        )),
    );
    let (ok, out, err) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(ok, "{out}{err}");
    for line in [
        "✓ authenticate",
        "1 messages",
        "(STAT, UIDL)",
        "✓ read header",
        "Subject: Printer on fire",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let (ok, out, err) = f
        .run(
            &["test", "send", "helpdesk", "--to", "alice@contoso.example"],
            None,
        )
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("✓ send"), "{out}");
    assert!(out.contains("CreateItem SendAndSaveCopy"), "{out}");
    mail.stop().await;
}

#[tokio::test]
async fn access_policy_row_fails_with_the_fix_in_json() {
    let (f, mail, _) = daemon_ready().await;
    let daemon = f.daemon.client_id;
    f.server.emulator.update(|m| {
        m.tenants[0].access_policies.push(ApplicationAccessPolicy {
            app_id: daemon,
            mode: AccessPolicyMode::RestrictAccess,
            mailboxes: vec!["alice@contoso.example".into()],
            added_at: None,
        });
    });
    let base = f.server.base_url();
    set_sides(
        &f,
        &format!("{{ transport = \"graph\", host = \"{base}\" }}"),
        None,
    );
    let (ok, out, err) = f
        .run(&["test", "receive", "helpdesk", "--json"], None)
        .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("the receive check of account helpdesk failed"),
        "{err}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(
        steps(&v),
        [
            ("resolve".to_owned(), true),
            ("connect+TLS".to_owned(), true),
            ("get token".to_owned(), true),
            ("open inbox".to_owned(), false)
        ]
    );
    let failed = &v["steps"][3];
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("403 ErrorAccessDenied: Access to OData is disabled."),
        "{failed}"
    );
    let fix = failed["fix"].as_str().unwrap();
    assert!(fix.contains("application access policy"), "{fix}");
    assert!(
        fix.contains(&format!(
            "Test-ApplicationAccessPolicy -Identity {HELPDESK} -AppId {daemon}"
        )),
        "{fix}"
    );
    mail.stop().await;
}

#[tokio::test]
async fn admin_consent_row_over_ews_and_the_secret_row_at_get_token() {
    let (f, mail, _) = daemon_ready().await;
    let base = f.server.base_url();
    set_sides(
        &f,
        &format!("{{ transport = \"ews\", host = \"{base}/EWS/Exchange.asmx\" }}"),
        None,
    );
    f.server
        .emulator
        .update(|m| m.tenants[0].apps[0].admin_consent_granted = false);
    let (ok, out, _) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(!ok, "{out}");
    assert!(out.contains("with no roles"), "{out}");
    assert!(out.contains("✗ open inbox"), "{out}");
    assert!(out.contains("2000008"), "{out}");
    assert!(
        out.contains("fix: the app-only token carries no roles at all")
            && out.contains("full_access_as_app")
            && out.contains("Grant admin consent"),
        "{out}"
    );

    // The Secret ID stored instead of the Value: the get-token step names the fix.
    f.server
        .emulator
        .update(|m| m.tenants[0].apps[0].admin_consent_granted = true);
    let secret_id = f.daemon.secrets[0].id.to_string();
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{secret_id}\n")),
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, _) = f
        .run(&["test", "receive", "helpdesk", "--json"], None)
        .await;
    assert!(!ok, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let last = v["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "get token");
    assert_eq!(last["ok"], false);
    assert!(
        last["detail"].as_str().unwrap().contains("AADSTS7000215"),
        "{last}"
    );
    assert!(
        last["fix"]
            .as_str()
            .unwrap()
            .contains("copy the secret's Value, not its Secret ID"),
        "{last}"
    );
    // The fix's stable id (the web pages say it in the viewer's language from it).
    assert_eq!(last["fix_id"], "aadsts-7000215", "{last}");
    mail.stop().await;
}

#[tokio::test]
async fn graph_test_receive_opens_the_mailbox_path_fetch_uses() {
    // With a mailbox_id, fetch and send address /users/<object id>; so does the check.
    let (f, mail, _) = daemon_ready().await;
    deliver(&mail).await;
    let oid = f.server.emulator.update(|m| {
        m.tenants[0]
            .users
            .iter()
            .find(|u| u.upn == HELPDESK)
            .unwrap()
            .object_id
    });
    let base = f.server.base_url();
    set_sides(
        &f,
        &format!("{{ transport = \"graph\", host = \"{base}\" }}\nmailbox_id = \"{oid}\""),
        None,
    );
    let (ok, out, err) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("/users/{oid}/mailFolders/inbox")),
        "{out}"
    );
    mail.stop().await;
}

#[tokio::test]
async fn a_refused_https_certificate_is_told_without_the_platform_verifiers_error_line() {
    let (f, mail, _) = daemon_ready().await;
    // Graph over HTTPS with a certificate from a CA this machine does not trust.
    // (Its own emulator, so that its base URL is its own.)
    let model = f.server.emulator.update(|m| m.clone());
    let untrusted = mailbridge_testkit::EmulatorServer::start_https(
        mailbridge_testkit::Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        &TestCa::generate().unwrap(),
    )
    .await
    .unwrap();
    let base = untrusted.base_url();
    set_sides(
        &f,
        &format!("{{ transport = \"graph\", host = \"{base}\" }}"),
        None,
    );
    let out_dir = f.dir.path().join("maildir");
    let (ok, out, err) = f
        .run(
            &[
                "fetch",
                "--account",
                "helpdesk",
                "--out",
                out_dir.to_str().unwrap(),
            ],
            None,
        )
        .await;
    assert!(!ok, "{out}");
    assert!(!err.contains("rustls_platform_verifier"), "{err}");
    assert!(!err.contains("ERROR"), "{err}");
    // The check names it and shows the certificate.
    let (ok, out, _) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(!ok);
    assert!(out.contains("✗ connect+TLS"), "{out}");
    assert!(out.contains("certificate: subject"), "{out}");
    assert!(out.contains("not a trusted CA"), "{out}");
    mail.stop().await;
}
