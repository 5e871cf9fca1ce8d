//! A tenant with a Graph app, three users and an HTTP client.

use std::collections::BTreeSet;
use std::sync::Arc;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::mailservers::wire::{self, LineClient};
use mailbridge_testkit::model::{Api, AppRegistration, PermissionKind, Tenant, User};
use mailbridge_testkit::tokens::{Resource, Subject, TokenGrant};
use mailbridge_testkit::{Emulator, EmulatorServer, TenantModel};
use mailbridge_types::{Clock, OffsetClock};
use serde_json::Value;
use uuid::Uuid;

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
/// Has no Exchange Online licence.
pub const CAROL: &str = "carol@contoso.example";
/// A personal Microsoft account (opaque `EwB…` tokens).
pub const PAT: &str = "pat@outlook.example";

pub struct World {
    pub server: EmulatorServer,
    pub clock: Arc<OffsetClock>,
    pub tenant_id: Uuid,
    pub app: AppRegistration,
    pub http: reqwest::Client,
    /// Dovecot and Postfix, when the test needs mail.
    pub mail: Option<MailServers>,
}

impl World {
    pub async fn start() -> Self {
        let app = AppRegistration::new("Mail connector")
            .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
            .with_permission(Api::Graph, PermissionKind::Application, "Mail.Send")
            .consented();
        let mut carol = User::new(CAROL, "Carol Unlicensed", "pw");
        carol.mailbox.licensed = false;
        let tenant = Tenant::new("Contoso", "contoso.example")
            .with_user(User::new(ALICE, "Alice Älvsjö", "pw"))
            .with_user(User::new(BOB, "Bob", "pw"))
            .with_user(carol)
            .with_app(app.clone());
        let tenant_id = tenant.id;
        let personal = Tenant::personal_accounts("outlook.example").with_user(User::new(
            PAT,
            "Pat Personal",
            "pw",
        ));
        let model = TenantModel::builder()
            .tenant(tenant)
            .tenant(personal)
            .build()
            .unwrap();
        let clock = Arc::new(OffsetClock::new());
        let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
        let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            server,
            clock,
            tenant_id,
            app,
            http,
            mail: None,
        }
    }

    pub fn emulator(&self) -> &Emulator {
        &self.server.emulator
    }

    fn grant(&self, resource: Resource, subject: Subject) -> TokenGrant {
        TokenGrant {
            resource,
            tenant_id: self.tenant_id,
            app_id: self.app.client_id,
            app_display_name: self.app.display_name.clone(),
            client_auth: 1,
            subject,
            roles: BTreeSet::new(),
            scopes: BTreeSet::new(),
            issued_at: self.clock.unix(),
            lifetime_secs: 3599,
        }
    }

    /// An app-only Graph token with these roles.
    pub fn app_token(&self, roles: &[&str]) -> String {
        let mut g = self.grant(
            Resource::graph(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
        );
        g.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.emulator().issue_access_token(&g, false)
    }

    /// An app-only Exchange Online token (right roles, wrong API for Graph).
    pub fn exchange_app_token(&self, roles: &[&str]) -> String {
        let mut g = self.grant(
            Resource::exchange(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
        );
        g.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.emulator().issue_access_token(&g, false)
    }

    /// A delegated Graph token for `upn` with these scopes.
    pub fn user_token(&self, upn: &str, scopes: &[&str]) -> String {
        let object_id = self
            .emulator()
            .read(|m| m.user(upn).map(|(_, u)| u.object_id))
            .unwrap();
        let mut g = self.grant(
            Resource::graph(),
            Subject::User {
                object_id,
                upn: upn.to_owned(),
                name: upn.to_owned(),
            },
        );
        g.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.emulator().issue_access_token(&g, false)
    }

    /// An opaque personal-account Graph token for `upn` with these scopes.
    pub fn personal_token(&self, upn: &str, scopes: &[&str]) -> String {
        let (tenant_id, object_id) = self
            .emulator()
            .read(|m| m.user(upn).map(|(t, u)| (t.id, u.object_id)))
            .unwrap();
        let mut g = self.grant(
            Resource::graph(),
            Subject::User {
                object_id,
                upn: upn.to_owned(),
                name: upn.to_owned(),
            },
        );
        g.tenant_id = tenant_id;
        g.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.emulator().issue_access_token(&g, true)
    }

    /// `{base}/v1.0/{path}`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/v1.0/{}",
            self.server.base_url(),
            path.trim_start_matches('/')
        )
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Status and the Graph error `(code, message)` of an answer.
pub async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

impl World {
    /// A world with Dovecot and Postfix attached.
    pub async fn start_with_mail() -> Self {
        let mut w = Self::start().await;
        let ca = TestCa::generate().unwrap();
        w.mail = Some(MailServers::start(w.emulator(), &ca).await.unwrap());
        w
    }

    /// A delegated Exchange Online token for `upn` (IMAP).
    pub fn imap_token(&self, upn: &str) -> String {
        let object_id = self
            .emulator()
            .read(|m| m.user(upn).map(|(_, u)| u.object_id))
            .unwrap();
        let mut g = self.grant(
            Resource {
                api: Api::ExchangeOnline,
                uri: "https://outlook.office.com".to_owned(),
            },
            Subject::User {
                object_id,
                upn: upn.to_owned(),
                name: upn.to_owned(),
            },
        );
        g.scopes = BTreeSet::from(["IMAP.AccessAsUser.All".to_owned()]);
        self.emulator().issue_access_token(&g, false)
    }

    /// [`World::imap_messages`] once `folder` holds at least `n` messages (bounded wait).
    pub async fn imap_messages_when(&self, mailbox: &str, folder: &str, n: usize) -> Vec<String> {
        for _ in 0..300 {
            let list = self.imap_messages(mailbox, folder).await;
            if list.len() >= n {
                return list;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{mailbox}/{folder} never held {n} messages over IMAP");
    }

    /// Every message of IMAP `folder` in `mailbox` with its flags, read over IMAPS as its
    /// owner with XOAUTH2 (literals inlined, lossily decoded).
    pub async fn imap_messages(&self, mailbox: &str, folder: &str) -> Vec<String> {
        let mail = self.mail.as_ref().unwrap();
        let mut c = LineClient::connect_tls(mail.imaps(), mail.tls_config(), "localhost")
            .await
            .unwrap();
        let greeting = c.read_line().await.unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        let token = self.imap_token(mailbox);
        let r = c
            .imap_command(
                "a1",
                &format!("AUTHENTICATE XOAUTH2 {}", wire::xoauth2(mailbox, &token)),
            )
            .await
            .unwrap();
        assert!(r.last().unwrap().starts_with("a1 OK"), "{r:?}");
        let r = c
            .imap_command("a2", &format!("SELECT \"{folder}\""))
            .await
            .unwrap();
        assert!(r.last().unwrap().starts_with("a2 OK"), "{r:?}");
        let exists = r
            .iter()
            .any(|l| l.ends_with(" EXISTS") && !l.starts_with("* 0 "));
        if !exists {
            return Vec::new();
        }
        let r = c
            .imap_command("a3", "FETCH 1:* (FLAGS BODY.PEEK[])")
            .await
            .unwrap();
        assert!(r.last().unwrap().starts_with("a3 OK"), "{r:?}");
        r.into_iter().filter(|l| l.starts_with("* ")).collect()
    }

    /// The mail store.
    pub fn store(&self) -> &mailbridge_testkit::mailstore::MailStore {
        self.emulator().mail_store().unwrap()
    }

    /// Delivers a message to `to` through the store (as Exchange transport would).
    pub async fn deliver(&self, to: &str, raw: &[u8]) {
        self.store()
            .deliver("sender@example.org", &[to.to_owned()], raw)
            .await
            .unwrap();
    }

    /// GETs a JSON document, asserting 200.
    pub async fn get_json(&self, token: &str, path_or_url: &str) -> Value {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            self.url(path_or_url)
        };
        let r = self.http.get(url).bearer_auth(token).send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Waits (bounded) until `folder` of `mailbox` holds at least `n` messages; returns
    /// them as Graph lists them.
    pub async fn wait_for_messages(
        &self,
        token: &str,
        mailbox: &str,
        folder: &str,
        n: usize,
    ) -> Vec<Value> {
        for _ in 0..300 {
            let v = self
                .get_json(
                    token,
                    &if mailbox == "me" {
                        format!("me/mailFolders/{folder}/messages?$top=100")
                    } else {
                        format!("users/{mailbox}/mailFolders/{folder}/messages?$top=100")
                    },
                )
                .await;
            let list = v["value"].as_array().cloned().unwrap_or_default();
            if list.len() >= n {
                return list;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{mailbox}/{folder} never held {n} messages");
    }
}

/// A small text message.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: =?UTF-8?B?{}?= <sender@example.org>\r\nTo: {ALICE}\r\nSubject: {}\r\nDate: Tue, 14 May 2024 11:20:00 +0200\r\nMessage-ID: <{}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n",
        base64_encode("Søren Sender".as_bytes()),
        mailbridge_testkit::graph::compose::encode_word(subject),
        uuid::Uuid::new_v4().simple()
    )
    .into_bytes()
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
