//! `mailbridge serve` set up entirely through its API, as a configuration tool would:
//! an app (client secret write-only), an IMAP account signing in app-only with
//! XOAUTH2 on real Dovecot, its "test receive" steps, its messages listed and one
//! fetched raw (byte for byte what Dovecot holds), the account renamed and removed,
//! providers and the domain table; and the refusals (a name taken, an app in use,
//! bad input named by field, roles, unknown ids).

use std::process::Stdio;
use std::time::Duration;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BOB: &str = "bob@contoso.example";
const SECRET: &str = "Qx~8Q~api.config.secret-value-0123456789";
/// Generous: a debug build on a busy machine. Only failures wait this long.
const DEADLINE: Duration = Duration::from_mins(2);

struct World {
    server: EmulatorServer,
    mail: MailServers,
    dir: tempfile::TempDir,
    client_id: String,
}

impl World {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mailbridge"));
        c.args(args)
            .env("MAILBRIDGE_CONFIG", self.dir.path().join("mailbridge.toml"))
            .env("MAILBRIDGE_DATA_DIR", self.dir.path().join("data"))
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

    fn token_add(&self, name: &str, role: &str) -> String {
        self.token_add_for(name, role, None)
    }

    /// A token of `role` acting for `user` (`--user`).
    fn token_add_for(&self, name: &str, role: &str, user: Option<&str>) -> String {
        let mut args = vec!["token", "add", name, "--role", role, "--json"];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailbridge"))
            .args(&args)
            .env("MAILBRIDGE_CONFIG", self.dir.path().join("mailbridge.toml"))
            .env("MAILBRIDGE_DATA_DIR", self.dir.path().join("data"))
            .env_remove("MAILBRIDGE_MASTER_KEY")
            .env_remove("MAILBRIDGE_DATABASE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Every byte of the store's files.
    fn db_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.path().join("data")).unwrap() {
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
}

/// A tenant whose app may read Bob's mailbox over IMAP, real Dovecot, and an empty
/// configuration file: everything else comes through the API.
async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let app = AppRegistration::new("Connector")
        .with_secret(SECRET, year)
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(BOB, &sp, MailboxRight::FullAccess);
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), mail.ca_pem()).unwrap();
    std::fs::write(dir.path().join("mailbridge.toml"), "").unwrap();
    World {
        server,
        mail,
        dir,
        client_id: app.client_id.to_string(),
    }
}

struct Daemon {
    child: Child,
    base: String,
    admin: String,
    _stdout: Lines<BufReader<ChildStdout>>,
}

async fn start(w: &World) -> Daemon {
    let mut child = w
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut token = None;
    let base = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("serve ended early");
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
            if let Some(found) = line.split_whitespace().find(|w| w.starts_with("mbt_")) {
                token = Some(found.to_owned());
            }
        }
    })
    .await
    .expect("serve did not print its address in time");
    Daemon {
        child,
        base,
        admin: token.expect("the first start prints a token"),
        _stdout: lines,
    }
}

impl Daemon {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
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

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, &self.admin, body).await
    }

    async fn raw(&self, path: &str) -> (u16, String, Vec<u8>) {
        let res = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let media = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, media, res.bytes().await.unwrap().to_vec())
    }

    async fn stop(mut self) -> String {
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
        let mut log = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut self.child.stderr.take().unwrap(), &mut log)
            .await
            .unwrap();
        assert!(status.success(), "{status:?}; log: {log}");
        log
    }
}

fn assert_problem(what: &str, got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{what}: {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    match field {
        Some(f) => assert_eq!(body["field"], f, "{what}: {body}"),
        None => assert!(body.get("field").is_none(), "{what}: {body}"),
    }
}

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice Example <alice@contoso.example>\r\nTo: {BOB}\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@contoso.example>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn an_account_set_up_through_the_api_reads_its_mailbox() {
    let w = world().await;
    let d = start(&w).await;
    let ca = w.dir.path().join("ca.pem").display().to_string();
    let imap = w.mail.imap();

    // The app: its secret taken, sealed, never shown.
    let app_body = json!({
        "name": "connector",
        "tenant": "contoso.example",
        "client_id": w.client_id,
        "authority_host": w.server.base_url(),
        "credential": {"type": "secret"},
        "secret": SECRET,
    });
    let (status, app) = d
        .admin(Method::POST, "/api/v1/apps", Some(app_body.clone()))
        .await;
    assert_eq!(status, 201, "{app}");
    assert!(!app.to_string().contains(SECRET), "{app}");
    assert_eq!(app["secret_stored"], true, "{app}");
    assert_eq!(app["authority_host_in_force"], w.server.base_url());
    let app_id = app["id"].as_str().unwrap().to_owned();
    let (status, apps) = d.admin(Method::GET, "/api/v1/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(apps.as_array().unwrap().len(), 1);
    assert!(!apps.to_string().contains(SECRET));
    assert_problem(
        "the same name again",
        &d.admin(Method::POST, "/api/v1/apps", Some(app_body.clone()))
            .await,
        409,
        "exists",
        Some("name"),
    );
    assert_problem(
        "a secret app without its secret",
        &d.admin(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "other", "tenant": "contoso.example", "client_id": w.client_id, "credential": {"type": "secret"}})),
        )
        .await,
        422,
        "invalid-field",
        Some("secret"),
    );
    assert_problem(
        "a malformed client id",
        &d.admin(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "other", "tenant": "contoso.example", "client_id": "not a guid"})),
        )
        .await,
        422,
        "invalid-field",
        Some("client_id"),
    );
    assert_problem(
        "a field apps do not have",
        &d.admin(
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "other", "tenant": "t", "client_id": "c", "client_secret": "x"})),
        )
        .await,
        422,
        "unknown-field",
        Some("client_secret"),
    );

    // The account: app-only XOAUTH2 on Dovecot's IMAP with STARTTLS.
    let incoming = json!({"transport": "imap", "host": imap.ip().to_string(), "port": imap.port(), "tls": "starttls", "tls_name": w.mail.tls_name(), "extra_ca_file": ca});
    assert_problem(
        "an account whose app does not exist",
        &d.admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "bob-imap", "address": BOB, "sign_in": "app-only", "app": "nope", "incoming": incoming})),
        )
        .await,
        422,
        "invalid-field",
        Some("app"),
    );
    assert_problem(
        "a port of the wrong type",
        &d.admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"address": BOB, "incoming": {"transport": "imap", "host": "h", "port": "143"}})),
        )
        .await,
        422,
        "invalid-field",
        Some("incoming.port"),
    );
    let (status, account) = d
        .admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "bob-imap", "address": BOB, "sign_in": "app-only", "app": "connector", "incoming": incoming})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["download"], true, "{account}");
    let id = account["id"].as_str().unwrap().to_owned();
    let (status, listed) = d.admin(Method::GET, "/api/v1/accounts", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_problem(
        "an account name taken",
        &d.admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "bob-imap", "address": BOB, "sign_in": "app-only", "app": "connector", "incoming": incoming})),
        )
        .await,
        409,
        "exists",
        Some("name"),
    );
    assert_problem(
        "removing an app an account uses",
        &d.admin(Method::DELETE, &format!("/api/v1/apps/{app_id}"), None)
            .await,
        409,
        "in-use",
        None,
    );

    // Two messages in Bob's inbox; the check reads one.
    let store = w.mail.mail_store();
    let first = store
        .append(BOB, "INBOX", &message("First", "one"), false)
        .await
        .unwrap();
    let second = store
        .append(BOB, "INBOX", &message("Second", "two"), false)
        .await
        .unwrap();
    let (status, report) = d
        .admin(
            Method::POST,
            &format!("/api/v1/accounts/{id}/test/receive"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"get token"), "{report}");
    assert!(steps.contains(&"authenticate"), "{report}");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true),
        "{report}"
    );
    assert_problem(
        "test send without an outgoing side",
        &d.admin(
            Method::POST,
            &format!("/api/v1/accounts/{id}/test/send"),
            None,
        )
        .await,
        409,
        "cannot-check",
        None,
    );

    // Listed newest first; fetched raw, as Dovecot holds it.
    let (status, messages) = d
        .admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages?folder=INBOX&limit=10"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{messages}");
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["subject"], "Second");
    assert_eq!(messages[1]["subject"], "First");
    assert_eq!(messages[0]["from"], "alice@contoso.example");
    assert_eq!(messages[0]["date"], "2026-12-07T10:00:00Z");
    assert_eq!(messages[0]["source_id"], second.uid.to_string());
    let held = store.fetch(&first).await.unwrap().unwrap();
    assert_eq!(messages[1]["size"], held.len());
    let (status, one) = d
        .admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages?limit=1"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["subject"], "Second");
    let message_id = messages[1]["id"].as_str().unwrap();
    let (status, media, bytes) = d
        .raw(&format!("/api/v1/accounts/{id}/messages/{message_id}"))
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(media, "message/rfc822");
    assert_eq!(bytes, held);
    // Gone from the server: not found, named.
    assert!(store.delete(&first).await.unwrap());
    let (status, _, body) = d
        .raw(&format!("/api/v1/accounts/{id}/messages/{message_id}"))
        .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_problem(
        "a message id that is not one",
        &d.admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages/bm90LWFuLWlk"),
            None,
        )
        .await,
        404,
        "not-found",
        None,
    );
    assert_problem(
        "a folder the mailbox does not have",
        &d.admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages?folder=Nope"),
            None,
        )
        .await,
        404,
        "not-found",
        None,
    );
    assert_problem(
        "a listing too long",
        &d.admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages?limit=100000"),
            None,
        )
        .await,
        422,
        "invalid-field",
        Some("limit"),
    );

    // Roles: an auditor reads apps and messages but changes nothing; a user is
    // refused accounts.
    let auditor = w.token_add("reader", "auditor");
    let user = w.token_add("someone", "user");
    let (status, _) = d.call(Method::GET, "/api/v1/apps", &auditor, None).await;
    assert_eq!(status, 200);
    assert_problem(
        "an auditor adding an app",
        &d.call(
            Method::POST,
            "/api/v1/apps",
            &auditor,
            Some(app_body.clone()),
        )
        .await,
        403,
        "forbidden",
        None,
    );
    assert_problem(
        "an auditor running a check",
        &d.call(
            Method::POST,
            &format!("/api/v1/accounts/{id}/test/receive"),
            &auditor,
            None,
        )
        .await,
        403,
        "forbidden",
        None,
    );
    assert_problem(
        "a user listing an account's messages",
        &d.call(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages"),
            &user,
            None,
        )
        .await,
        403,
        "forbidden",
        None,
    );
    assert_problem(
        "a user deleting an account",
        &d.call(
            Method::DELETE,
            &format!("/api/v1/accounts/{id}"),
            &user,
            None,
        )
        .await,
        403,
        "forbidden",
        None,
    );

    // Renamed: the same id; still reads its mailbox.
    let (status, renamed) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"name": "bob"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["id"], id.as_str());
    assert_eq!(renamed["name"], "bob");
    let (status, got) = d
        .admin(Method::GET, &format!("/api/v1/accounts/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["name"], "bob");
    let (status, messages) = d
        .admin(
            Method::GET,
            &format!("/api/v1/accounts/{id}/messages"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{messages}");
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");
    // A message over the account's size limit is refused, naming the limit.
    let (status, small) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"limits": {"max_message_size": 64}})),
        )
        .await;
    assert_eq!(status, 200, "{small}");
    let second_id = messages[0]["id"].as_str().unwrap();
    let (status, _, body) = d
        .raw(&format!("/api/v1/accounts/{id}/messages/{second_id}"))
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "limit-exceeded", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("max_message_size"),
        "{body}"
    );
    let (status, _) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"limits": {}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, bytes) = d
        .raw(&format!("/api/v1/accounts/{id}/messages/{second_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(bytes, store.fetch(&second).await.unwrap().unwrap());
    assert_problem(
        "a limit of the wrong type",
        &d.admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"limits": {"max_message_size": "big"}})),
        )
        .await,
        422,
        "invalid-field",
        Some("limits.max_message_size"),
    );
    assert_problem(
        "a password for an app-only account",
        &d.admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"password": "hunter2"})),
        )
        .await,
        422,
        "invalid-field",
        Some("password"),
    );

    // Given an outgoing side, its send check sends through Postfix.
    let submission = w.mail.submission();
    let (status, body) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{id}"),
            Some(json!({"outgoing": {"transport": "smtp", "host": submission.ip().to_string(), "port": submission.port(), "tls": "starttls", "tls_name": w.mail.tls_name(), "extra_ca_file": ca}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["send"], true, "{body}");
    let (status, report) = d
        .admin(
            Method::POST,
            &format!("/api/v1/accounts/{id}/test/send?to={BOB}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "send" && s["ok"] == true),
        "{report}"
    );
    assert_problem(
        "a recipient that is not an address",
        &d.admin(
            Method::POST,
            &format!("/api/v1/accounts/{id}/test/send?to=nobody"),
            None,
        )
        .await,
        422,
        "invalid-field",
        Some("to"),
    );

    // Removed: gone, and its app may go now.
    let (status, _) = d
        .admin(Method::DELETE, &format!("/api/v1/accounts/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_problem(
        "the removed account",
        &d.admin(Method::GET, &format!("/api/v1/accounts/{id}"), None)
            .await,
        404,
        "not-found",
        None,
    );
    assert_problem(
        "removing it again",
        &d.admin(Method::DELETE, &format!("/api/v1/accounts/{id}"), None)
            .await,
        404,
        "not-found",
        None,
    );
    let (status, body) = d
        .admin(Method::DELETE, &format!("/api/v1/apps/{app_id}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_problem(
        "the removed app",
        &d.admin(Method::GET, &format!("/api/v1/apps/{app_id}"), None)
            .await,
        404,
        "not-found",
        None,
    );

    let log = d.stop().await;
    assert!(!log.contains(SECRET), "the secret reached the log");
    let bytes = w.db_bytes();
    assert!(
        !bytes
            .windows(SECRET.len())
            .any(|win| win == SECRET.as_bytes()),
        "the secret is in the store unsealed"
    );
    w.mail.stop().await;
}

#[tokio::test]
async fn providers_and_the_domain_table_through_the_api() {
    let w = world().await;
    let d = start(&w).await;
    let (status, providers) = d.admin(Method::GET, "/api/v1/providers", None).await;
    assert_eq!(status, 200);
    let builtin = providers.as_array().unwrap().len();
    assert!(
        providers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "microsoft365-graph" && p["builtin"] == true),
        "{providers}"
    );
    let provider = json!({
        "id": "example-mail",
        "name": "Example Mail",
        "incoming": {"transport": "imap", "host": "imap.example.org", "port": 993, "tls": "implicit"},
        "outgoing": {"transport": "smtp", "host": "smtp.example.org", "port": 587, "tls": "starttls"},
        "domains": ["example.org"],
    });
    let (status, saved) = d
        .admin(Method::POST, "/api/v1/providers", Some(provider.clone()))
        .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["builtin"], false);
    let (status, _) = d
        .admin(Method::POST, "/api/v1/providers", Some(provider.clone()))
        .await;
    assert_eq!(status, 200, "saved again: replaced");
    let (_, providers) = d.admin(Method::GET, "/api/v1/providers", None).await;
    assert_eq!(providers.as_array().unwrap().len(), builtin + 1);
    let (status, domains) = d.admin(Method::GET, "/api/v1/domains", None).await;
    assert_eq!(status, 200);
    assert!(
        domains
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["domain"] == "example.org" && r["provider"] == "example-mail"),
        "{domains}"
    );
    assert!(
        domains
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["domain"] == "gmail.com"),
        "{domains}"
    );

    // An account made from it takes its servers.
    let (status, account) = d
        .admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"address": "carol@example.org", "provider": "example-mail", "password": "Carol-pw-1"})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["name"], "carol@example.org");
    assert_eq!(account["incoming"]["host"], "imap.example.org");
    assert_eq!(account["password_stored"], true);
    assert!(!account.to_string().contains("Carol-pw-1"));
    let account_id = account["id"].as_str().unwrap().to_owned();

    assert_problem(
        "a provider accounts use",
        &d.admin(Method::DELETE, "/api/v1/providers/example-mail", None)
            .await,
        409,
        "in-use",
        None,
    );
    assert_problem(
        "a built-in provider",
        &d.admin(Method::DELETE, "/api/v1/providers/gmail", None)
            .await,
        409,
        "builtin",
        None,
    );
    assert_problem(
        "replacing a built-in provider",
        &d.admin(
            Method::POST,
            "/api/v1/providers",
            Some(json!({"id": "gmail", "name": "Mine", "incoming": {"transport": "imap", "host": "imap.example.org", "port": 993, "tls": "implicit"}})),
        )
        .await,
        409,
        "builtin",
        Some("id"),
    );
    assert_problem(
        "a provider with a port out of range",
        &d.admin(
            Method::POST,
            "/api/v1/providers",
            Some(json!({"id": "bad", "name": "Bad", "incoming": {"transport": "imap", "host": "imap.example.org", "port": 70000, "tls": "implicit"}})),
        )
        .await,
        422,
        "invalid-field",
        Some("incoming.port"),
    );
    assert_problem(
        "a provider without servers",
        &d.admin(
            Method::POST,
            "/api/v1/providers",
            Some(json!({"id": "empty", "name": "Empty"})),
        )
        .await,
        422,
        "invalid-field",
        Some("incoming"),
    );
    assert_problem(
        "an account from an unknown provider",
        &d.admin(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"address": "dave@example.net", "provider": "nope"})),
        )
        .await,
        422,
        "invalid-field",
        Some("provider"),
    );
    let auditor = w.token_add("reader", "auditor");
    let (status, _) = d.call(Method::GET, "/api/v1/domains", &auditor, None).await;
    assert_eq!(status, 200);
    assert_problem(
        "an auditor defining a provider",
        &d.call(Method::POST, "/api/v1/providers", &auditor, Some(provider))
            .await,
        403,
        "forbidden",
        None,
    );

    // A message waiting in its outbox (its server refuses connections, so it
    // stays queued or retrying) keeps it from being removed by mistake.
    let (status, body) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{account_id}"),
            Some(json!({"outgoing": {"transport": "smtp", "host": "127.0.0.1", "port": 1, "tls": "starttls"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, queued) = d
        .admin(
            Method::POST,
            &format!("/api/v1/accounts/{account_id}/outbox"),
            Some(json!({"to": ["dave@example.net"], "subject": "Waiting", "text": "..."})),
        )
        .await;
    assert_eq!(status, 201, "{queued}");
    assert_problem(
        "an account with a message waiting",
        &d.admin(
            Method::DELETE,
            &format!("/api/v1/accounts/{account_id}"),
            None,
        )
        .await,
        409,
        "pending-work",
        None,
    );
    let (status, _) = d
        .admin(
            Method::DELETE,
            &format!("/api/v1/accounts/{account_id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, outbox) = d.admin(Method::GET, "/api/v1/outbox", None).await;
    assert_eq!(
        outbox,
        json!([]),
        "the forced removal took its outbox along"
    );
    let (status, body) = d
        .admin(Method::DELETE, "/api/v1/providers/example-mail", None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert_problem(
        "the removed provider",
        &d.admin(Method::DELETE, "/api/v1/providers/example-mail", None)
            .await,
        404,
        "not-found",
        None,
    );
    let (_, domains) = d.admin(Method::GET, "/api/v1/domains", None).await;
    assert!(!domains.to_string().contains("example-mail"), "{domains}");
    let log = d.stop().await;
    assert!(!log.contains("Carol-pw-1"), "the password reached the log");
    assert!(
        !w.db_bytes().windows(10).any(|win| win == b"Carol-pw-1"),
        "the password is in the store unsealed"
    );
    w.mail.stop().await;
}

/// A `user` token works on its own accounts only: those it created (or an
/// administrator gave it); another user's account is refused everywhere (the account
/// itself, its watch, outbox, messages, tests, parked deliveries), lists show only its
/// own, and system settings stay closed. Administrators see and give every account;
/// auditors read every account and change none.
#[tokio::test]
async fn a_user_token_works_on_its_own_accounts_only() {
    let w = world().await;
    let d = start(&w).await;
    let alice = w.token_add_for("alice-token", "user", Some("alice"));
    let carol = w.token_add_for("carol-token", "user", Some("carol"));
    let nobody = w.token_add_for("nobody-token", "user", None);
    let auditor = w.token_add("audit", "auditor");
    let imap = w.mail.imap();
    let account = |name: &str| {
        json!({"name": name, "address": format!("{name}@contoso.example"), "sign_in": "password",
               "password": "pw", "incoming": {"transport": "imap", "host": imap.ip().to_string(), "port": imap.port(), "tls": "none"}})
    };

    // Alice makes an account: hers.
    let (status, made) = d
        .call(
            Method::POST,
            "/api/v1/accounts",
            &alice,
            Some(account("alice-mail")),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["owner"], "alice", "{made}");
    let alice_id = made["id"].as_str().unwrap().to_owned();
    // The administrator's account belongs to nobody.
    let (status, made) = d
        .admin(Method::POST, "/api/v1/accounts", Some(account("ops-mail")))
        .await;
    assert_eq!(status, 201, "{made}");
    assert!(made["owner"].is_null(), "{made}");
    let ops_id = made["id"].as_str().unwrap().to_owned();
    // A user token naming no user cannot own what it makes.
    assert_problem(
        "a user token without a user",
        &d.call(
            Method::POST,
            "/api/v1/accounts",
            &nobody,
            Some(account("lost")),
        )
        .await,
        403,
        "forbidden",
        None,
    );

    // Lists: Alice sees hers, Carol nothing, the auditor and administrator both.
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, list) = d.call(Method::GET, "/api/v1/accounts", &alice, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["alice-mail"]);
    let (_, list) = d.call(Method::GET, "/api/v1/accounts", &carol, None).await;
    assert_eq!(names(&list), Vec::<String>::new());
    let (_, list) = d
        .call(Method::GET, "/api/v1/accounts", &auditor, None)
        .await;
    assert_eq!(names(&list), ["alice-mail", "ops-mail"]);
    let (_, list) = d.admin(Method::GET, "/api/v1/accounts", None).await;
    assert_eq!(names(&list), ["alice-mail", "ops-mail"]);
    assert_eq!(list[0]["owner"], "alice", "{list}");

    // Alice works on hers.
    let (status, got) = d
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{alice_id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let (status, got) = d
        .call(
            Method::PUT,
            &format!("/api/v1/accounts/{alice_id}"),
            &alice,
            Some(json!({"display_name": "Alice"})),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let (status, got) = d
        .call(
            Method::GET,
            &format!("/api/v1/outbox?account={alice_id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");

    // Everything of an account that is not hers is refused, for Carol as for Alice.
    let theirs = [
        (Method::GET, format!("/api/v1/accounts/{ops_id}"), None),
        (
            Method::PUT,
            format!("/api/v1/accounts/{ops_id}"),
            Some(json!({"display_name": "x"})),
        ),
        (Method::DELETE, format!("/api/v1/accounts/{ops_id}"), None),
        (
            Method::GET,
            format!("/api/v1/accounts/{ops_id}/watch"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/accounts/{ops_id}/watch"),
            Some(json!({"enabled": false, "routes": []})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/accounts/{ops_id}/watch"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{ops_id}/outbox"),
            Some(json!({"to": ["x@contoso.example"], "subject": "s", "text": "t"})),
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{ops_id}/messages"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/accounts/{ops_id}/messages/1"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{ops_id}/test/receive"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{ops_id}/test/send"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/outbox?account={ops_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/parked?account={ops_id}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/accounts/{ops_id}/owner"),
            Some(json!({"owner": "alice"})),
        ),
    ];
    for (method, path, body) in &theirs {
        for token in [&alice, &carol] {
            let got = d.call(method.clone(), path, token, body.clone()).await;
            assert_problem(&format!("{method} {path}"), &got, 403, "forbidden", None);
            assert!(
                got.1["detail"].as_str().unwrap().contains("may not"),
                "{method} {path}: {}",
                got.1
            );
        }
    }
    // Alice's account is refused to Carol in the same way.
    let got = d
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{alice_id}"),
            &carol,
            None,
        )
        .await;
    assert_problem("carol reads alice's", &got, 403, "forbidden", None);
    // System settings stay closed to users.
    for path in ["/api/v1/apps", "/api/v1/providers", "/api/v1/sinks"] {
        let got = d.call(Method::POST, path, &alice, Some(json!({}))).await;
        assert_problem(&format!("POST {path}"), &got, 403, "forbidden", None);
    }
    // Auditors read every account, change none.
    let (status, _) = d
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{alice_id}/watch"),
            &auditor,
            None,
        )
        .await;
    assert_eq!(status, 404, "no watch yet, but past the role check");
    let got = d
        .call(
            Method::PUT,
            &format!("/api/v1/accounts/{alice_id}"),
            &auditor,
            Some(json!({"display_name": "x"})),
        )
        .await;
    assert_problem("auditor writes", &got, 403, "forbidden", None);

    // The administrator gives the ops account to Carol: now hers, no longer nobody's.
    let (status, got) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{ops_id}/owner"),
            Some(json!({"owner": "carol"})),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["owner"], "carol", "{got}");
    let (status, got) = d
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{ops_id}"),
            &carol,
            None,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let (_, list) = d.call(Method::GET, "/api/v1/accounts", &carol, None).await;
    assert_eq!(names(&list), ["ops-mail"]);
    assert_problem(
        "an owner that is no name",
        &d.admin(
            Method::PUT,
            &format!("/api/v1/accounts/{ops_id}/owner"),
            Some(json!({"owner": " "})),
        )
        .await,
        422,
        "invalid-field",
        Some("owner"),
    );
    // Taken back: nobody's again.
    let (status, got) = d
        .admin(
            Method::PUT,
            &format!("/api/v1/accounts/{ops_id}/owner"),
            Some(json!({"owner": null})),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert!(got["owner"].is_null(), "{got}");
    let got = d
        .call(
            Method::GET,
            &format!("/api/v1/accounts/{ops_id}"),
            &carol,
            None,
        )
        .await;
    assert_problem(
        "carol after it was taken back",
        &got,
        403,
        "forbidden",
        None,
    );

    // Alice removes hers.
    let (status, _) = d
        .call(
            Method::DELETE,
            &format!("/api/v1/accounts/{alice_id}"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, 204);
    d.stop().await;
}

#[tokio::test]
async fn the_audit_log_shows_who_changed_what_from_where_to_administrators_and_auditors() {
    let w = world().await;
    let d = start(&w).await;
    let auditor = w.token_add("reviewer", "auditor");
    let user = w.token_add_for("portal", "user", Some("carol"));
    let (_, me) = d.admin(Method::GET, "/api/v1/whoami", None).await;
    let admin_name = me["token"].as_str().unwrap().to_owned();
    let (status, app) = d
        .admin(
            Method::POST,
            "/api/v1/apps",
            Some(json!({
                "name": "connector",
                "tenant": "contoso.example",
                "client_id": w.client_id,
                "credential": {"type": "secret"},
                "secret": SECRET,
            })),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let provider = json!({
        "id": "example-mail",
        "name": "Example Mail",
        "incoming": {"transport": "imap", "host": "imap.example.org", "port": 993, "tls": "implicit"},
        "outgoing": {"transport": "smtp", "host": "smtp.example.org", "port": 587, "tls": "starttls"},
        "domains": ["example.org"],
    });
    let (status, saved) = d
        .admin(Method::POST, "/api/v1/providers", Some(provider))
        .await;
    assert_eq!(status, 201, "{saved}");
    let (status, _) = d
        .admin(Method::DELETE, "/api/v1/providers/example-mail", None)
        .await;
    assert_eq!(status, 204);
    // A refused change is not a change: nothing recorded.
    let refused = d
        .call(Method::DELETE, "/api/v1/apps/not-an-id", &auditor, None)
        .await;
    assert_eq!(refused.0, 403);

    let (status, log) = d.call(Method::GET, "/api/v1/audit", &auditor, None).await;
    assert_eq!(status, 200, "{log}");
    let rows = log.as_array().unwrap();
    let what: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["object_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        what,
        [
            ("delete", "provider"),
            ("create", "provider"),
            ("create", "app")
        ],
        "newest first: {log}"
    );
    for r in rows {
        assert_eq!(r["actor"], admin_name.as_str(), "{r}");
        assert_eq!(r["actor_kind"], "token", "{r}");
        assert_eq!(r["client"], "127.0.0.1", "{r}");
        assert!(r["at"].as_str().unwrap().ends_with('Z'), "{r}");
    }
    assert_eq!(rows[2]["object_name"], "connector");
    assert_eq!(rows[2]["object_id"], app["id"]);
    assert_eq!(rows[1]["object_id"], "example-mail");
    assert_eq!(rows[1]["object_name"], "Example Mail");
    assert!(
        !log.to_string().contains(SECRET),
        "no secret in the audit log"
    );

    // Paged: one row, then the rest below its seq.
    let (_, first) = d.admin(Method::GET, "/api/v1/audit?limit=1", None).await;
    assert_eq!(first.as_array().unwrap().len(), 1);
    let seq = first[0]["seq"].as_i64().unwrap();
    let (_, rest) = d
        .admin(Method::GET, &format!("/api/v1/audit?before={seq}"), None)
        .await;
    assert_eq!(rest.as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest[0]["action"], "create");

    // A user reads no audit log.
    let refused = d.call(Method::GET, "/api/v1/audit", &user, None).await;
    assert_problem(
        "a user reads the audit log",
        &refused,
        403,
        "forbidden",
        None,
    );
    let bad = d.admin(Method::GET, "/api/v1/audit?limit=many", None).await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    d.stop().await;
}
