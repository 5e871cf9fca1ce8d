//! The `mailbridge` binary against the emulated tenant: secrets, app-only and
//! device-code sign-in, status, token, logout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_config;
mod apps;
mod daemon;
mod daemon_world;
mod durability;
mod hostile;
mod login;
mod packaging;
mod send;
mod serve;
mod test_cmd;
mod users;
mod web;
mod web_accounts;
mod web_admin;
mod web_authorize;
mod web_dashboard;
mod web_livetest;
mod web_world;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use mailbridge_testkit::model::{
    Api, AppRegistration, PermissionKind, Platform, Tenant, TenantModel, User,
};
use mailbridge_testkit::robot::Person;
use mailbridge_testkit::{Emulator, EmulatorServer};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const PASSWORD: &str = "Correct-Horse-1";
const SECRET: &str = "Qx~8Q~cli.daemon.secret-value-0123456789";

struct Fixture {
    server: EmulatorServer,
    dir: tempfile::TempDir,
    daemon: AppRegistration,
}

impl Fixture {
    fn config(&self) -> PathBuf {
        self.dir.path().join("mailbridge.toml")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailbridge"));
        c.args(args)
            .env("MAILBRIDGE_CONFIG", self.config())
            .env("MAILBRIDGE_DATA_DIR", self.data())
            .env_remove("MAILBRIDGE_MASTER_KEY")
            .env_remove("MAILBRIDGE_MASTER_PASSPHRASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = self.cmd(args);
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
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

async fn fixture(secret_expires_in_days: i64) -> Fixture {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(secret_expires_in_days);
    let daemon = AppRegistration::new("Mail daemon")
        .with_secret(SECRET, expires)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .consented();
    let docs = AppRegistration::new("Document system")
        .public()
        .with_redirect(Platform::MobileDesktop, "http://localhost")
        .with_permission(
            Api::Graph,
            PermissionKind::Delegated,
            "IMAP.AccessAsUser.All",
        )
        .with_permission(Api::Graph, PermissionKind::Delegated, "offline_access");
    let model = TenantModel::builder()
        .tenant(
            Tenant::new("Contoso", "contoso.example")
                .with_user(User::new("alice@contoso.example", "Alice", PASSWORD))
                .with_app(daemon.clone())
                .with_app(docs.clone()),
        )
        .build()
        .unwrap();
    let server = EmulatorServer::start(
        Emulator::new(model).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expires_text = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let config = format!(
        r#"
[[app]]
name = "daemon"
tenant = "contoso.example"
client_id = "{daemon_id}"
authority_host = "{base}"
credential = {{ type = "secret", expires = "{expires_text}" }}

[[app]]
name = "docs"
tenant = "contoso.example"
client_id = "{docs_id}"
authority_host = "{base}"

[[account]]
name = "helpdesk"
address = "helpdesk@contoso.example"
sign_in = "app-only"
app = "daemon"
transports = ["imap"]

[[account]]
name = "alice"
address = "alice@contoso.example"
sign_in = "delegated"
app = "docs"
transports = ["imap"]
"#,
        daemon_id = daemon.client_id,
        docs_id = docs.client_id,
        base = server.base_url(),
    );
    std::fs::write(dir.path().join("mailbridge.toml"), config).unwrap();
    Fixture {
        server,
        dir,
        daemon,
    }
}

fn db_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file()
            && p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("mailbridge.db")
        {
            out.extend(std::fs::read(p).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn app_only_account_end_to_end_and_expiry_warning() {
    let f = fixture(20).await;
    // Without the secret, login says what to run.
    let (ok, _, err) = f.run(&["auth", "login", "helpdesk"], None).await;
    assert!(!ok);
    assert!(
        err.contains("mailbridge secrets set-app-secret daemon"),
        "{err}"
    );
    // Pasting the Secret ID instead of the Value is caught by Microsoft with the fix.
    let secret_id = f.daemon.secrets[0].id.to_string();
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{secret_id}\n")),
        )
        .await;
    assert!(ok, "{err}");
    assert!(err.contains("looks like a Secret ID"), "{err}");
    let (ok, _, err) = f.run(&["auth", "login", "helpdesk"], None).await;
    assert!(!ok);
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(
        err.contains("copy the secret's Value, not its Secret ID"),
        "{err}"
    );
    // The right value works.
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{SECRET}\n")),
        )
        .await;
    assert!(ok, "{err}");
    let (ok, out, err) = f.run(&["auth", "login", "helpdesk"], None).await;
    assert!(ok, "{err}");
    assert!(out.contains("app-only sign-in works"), "{out}");
    let (ok, token, err) = f.run(&["auth", "token", "helpdesk"], None).await;
    assert!(ok, "{err}");
    let claims = mailbridge_testkit::crypto::Jwt::parse(token.trim())
        .unwrap()
        .claims;
    assert_eq!(claims["roles"], serde_json::json!(["IMAP.AccessAsApp"]));
    let (ok, status, _) = f.run(&["auth", "status", "--json"], None).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let daemon = &v["apps"][0];
    assert_eq!(daemon["credential"], "client-secret");
    assert!(daemon["expires_in_days"].as_i64().unwrap() <= 20);
    assert!(
        daemon["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Certificates & secrets"),
        "{daemon}"
    );
    // The secret is sealed: not in the database files.
    let bytes = db_bytes(&f.data());
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}

#[tokio::test]
async fn delegated_device_code_login_status_and_logout() {
    let f = fixture(365).await;
    let mut child = f
        .cmd(&["auth", "login", "alice", "--device-code"])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let message = stderr.next_line().await.unwrap().unwrap();
    assert!(message.contains("enter the code"), "{message}");
    let user_code = message
        .split_whitespace()
        .skip_while(|w| *w != "code")
        .nth(1)
        .unwrap()
        .to_owned();
    let uri = format!("{}/devicelogin", f.server.base_url());
    let done = Person::new("alice@contoso.example", PASSWORD)
        .device_login(&uri, &user_code)
        .await
        .unwrap();
    assert!(done.body.contains("You may now close this window"));
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("alice: signed in as alice@contoso.example"),
        "{stdout}"
    );

    let (_, status, _) = f.run(&["auth", "status", "--json"], None).await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let alice = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alice")
        .unwrap();
    assert_eq!(alice["state"], "signed-in");

    let (ok, token, err) = f.run(&["auth", "token", "alice"], None).await;
    assert!(ok, "{err}");
    let claims = mailbridge_testkit::crypto::Jwt::parse(token.trim())
        .unwrap()
        .claims;
    assert_eq!(claims["upn"], "alice@contoso.example");

    let (ok, out, _) = f.run(&["auth", "logout", "alice"], None).await;
    assert!(ok);
    assert!(out.contains("signed out"), "{out}");
    let (ok, _, err) = f.run(&["auth", "token", "alice"], None).await;
    assert!(!ok);
    assert!(err.contains("mailbridge auth login alice"), "{err}");
}

#[tokio::test]
async fn rotate_key_keeps_secrets_readable() {
    let f = fixture(365).await;
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{SECRET}\n")),
        )
        .await;
    assert!(ok, "{err}");
    let old_key = std::fs::read_to_string(f.data().join("master.key")).unwrap();
    let (ok, out, err) = f.run(&["secrets", "rotate-key"], None).await;
    assert!(ok, "{err}");
    assert!(out.contains("re-sealed 1 secrets"), "{out}");
    let new_key = std::fs::read_to_string(f.data().join("master.key")).unwrap();
    assert_ne!(old_key, new_key);
    let (ok, _, err) = f.run(&["auth", "login", "helpdesk"], None).await;
    assert!(ok, "{err}");
}

#[tokio::test]
async fn certificate_app_shows_thumbprint_and_expiry_and_signs_in() {
    let f = fixture(365).await;
    let cert =
        mailbridge_testkit::crypto::CertificateCredential::generate("mailbridge cli").unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    f.server.emulator.update(|m| {
        m.tenants[0].apps[0]
            .certificates
            .push(mailbridge_testkit::model::AppCertificate {
                certificate_pem: cert.certificate_pem.clone(),
                expires,
            });
    });
    std::fs::write(f.dir.path().join("app.crt"), &cert.certificate_pem).unwrap();
    std::fs::write(f.dir.path().join("app.key"), &cert.key_pem).unwrap();
    let config = std::fs::read_to_string(f.config()).unwrap().replacen(
        "credential = { type = \"secret\", expires = ",
        &format!(
            "credential = {{ type = \"certificate\", certificate_file = \"{}\", key_file = \"{}\" }}\n# was: ",
            f.dir.path().join("app.crt").display(),
            f.dir.path().join("app.key").display()
        ),
        1,
    );
    std::fs::write(f.config(), config).unwrap();
    let (ok, out, err) = f.run(&["auth", "login", "helpdesk"], None).await;
    assert!(ok, "{err}");
    let thumbprint =
        mailbridge_auth::credential::certificate_thumbprint(&cert.certificate_pem).unwrap();
    assert!(
        out.contains(&format!("certificate thumbprint {thumbprint}")),
        "{out}"
    );
    let (ok, status, _) = f.run(&["auth", "status", "--json"], None).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["apps"][0]["credential"], "certificate");
    assert_eq!(v["apps"][0]["thumbprint"], thumbprint.as_str());
    assert!(
        v["apps"][0]["expires_in_days"].as_i64().unwrap() > 300,
        "read from the certificate"
    );
    // The assertion went over the wire, never the key.
    let request = &f.server.emulator.requests_to("/oauth2/v2.0/token")[0];
    assert!(request.param("client_assertion").is_some());
    assert!(!request.body.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn test_receive_and_send_report_each_step_and_name_the_fix() {
    use mailbridge_testkit::crypto::TestCa;
    use mailbridge_testkit::mailservers::MailServers;
    use mailbridge_testkit::model::MailboxRight;
    let f = fixture(365).await;
    // The daemon app gets SMTP too; Exchange registration done with the app
    // registration's object id: the classic mistake.
    let daemon = f.daemon.clone();
    f.server.emulator.update(|m| {
        let t = &mut m.tenants[0];
        t.apps[0]
            .permissions
            .push(mailbridge_testkit::model::RequiredPermission {
                api: Api::ExchangeOnline,
                kind: PermissionKind::Application,
                value: "SMTP.SendAsApp".into(),
            });
        t.exchange_service_principals
            .push(mailbridge_testkit::model::ExchangeServicePrincipal {
                app_id: daemon.client_id,
                object_id: daemon.object_id,
                added_at: None,
            });
        t.users
            .push(User::new("helpdesk@contoso.example", "Helpdesk", PASSWORD));
        t.mailbox_permissions
            .push(mailbridge_testkit::model::MailboxPermission {
                mailbox: "helpdesk@contoso.example".into(),
                trustee: daemon.client_id.to_string(),
                right: MailboxRight::FullAccess,
                added_at: None,
            });
    });
    let mail = MailServers::start(&f.server.emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let ca = f.dir.path().join("ca.pem");
    std::fs::write(&ca, mail.ca_pem()).unwrap();
    let mut config = std::fs::read_to_string(f.config()).unwrap();
    config = config.replacen(
        "transports = [\"imap\"]\n",
        &format!(
            "transports = [\"imap\"]\nincoming = {{ transport = \"imap\", host = \"127.0.0.1\", port = {}, tls = \"implicit\", tls_name = \"{}\", extra_ca_file = \"{}\" }}\noutgoing = {{ transport = \"smtp\", host = \"127.0.0.1\", port = {}, tls = \"starttls\", tls_name = \"{}\", extra_ca_file = \"{}\" }}\n",
            mail.imaps().port(),
            mail.tls_name(),
            ca.display(),
            mail.submission().port(),
            mail.tls_name(),
            ca.display()
        ),
        1,
    );
    std::fs::write(f.config(), config).unwrap();
    let (ok, _, err) = f
        .run(
            &["secrets", "set-app-secret", "daemon"],
            Some(&format!("{SECRET}\n")),
        )
        .await;
    assert!(ok, "{err}");

    let (ok, out, err) = f.run(&["test", "receive", "helpdesk"], None).await;
    assert!(!ok, "{out}");
    assert!(out.contains("✓ get token"), "{out}");
    assert!(out.contains("✗ authenticate"), "{out}");
    assert!(
        out.contains("Enterprise applications, not from App registrations"),
        "{out}"
    );
    assert!(
        err.contains("the receive check of account helpdesk failed"),
        "{err}"
    );

    // The admin fixes it: New-ServicePrincipal with the enterprise application's id.
    f.server.emulator.update(|m| {
        m.tenants[0].exchange_service_principals[0].object_id = daemon.service_principal_id;
    });
    let (ok, out, err) = f
        .run(&["test", "receive", "helpdesk", "--json"], None)
        .await;
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["steps"].as_array().unwrap().len(), 5);

    let (ok, out, _) = f
        .run(
            &["test", "send", "helpdesk", "--to", "alice@contoso.example"],
            None,
        )
        .await;
    assert!(ok, "{out}");
    assert!(out.contains("✓ send"), "{out}");
    mail.stop().await;
}

#[tokio::test]
async fn status_warns_about_a_refresh_token_idle_for_over_60_days() {
    use mailbridge_auth::session::TokenStore as _;
    let f = fixture(365).await;
    // First run creates the data directory and the master key.
    let (ok, _, err) = f.run(&["auth", "status"], None).await;
    assert!(ok, "{err}");
    // A refresh token last used 70 days ago (the store's clock set back).
    let key =
        mailbridge_store::MasterKey::load_or_create_file(&f.data().join("master.key")).unwrap();
    let clock = std::sync::Arc::new(mailbridge_types::OffsetClock::new());
    clock.advance(time::Duration::days(-70));
    let store = mailbridge_store::Store::open(&f.data().join("mailbridge.db"), &key)
        .await
        .unwrap()
        .with_clock(clock);
    store
        .save_refresh_token(
            "alice",
            &secrecy::SecretString::from("0.AXoA-old-refresh-token"),
        )
        .await
        .unwrap();
    store.mark_signed_in("alice").await.unwrap();
    store.close().await;
    let (ok, status, _) = f.run(&["auth", "status", "--json"], None).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let alice = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "alice")
        .unwrap();
    assert_eq!(alice["state"], "signed-in");
    assert!(
        alice["refresh_token_idle_days"].as_i64().unwrap() >= 70,
        "{alice}"
    );
    assert!(
        alice["warnings"][0]
            .as_str()
            .unwrap()
            .contains("90 days of inactivity"),
        "{alice}"
    );
}
mod accounts;
