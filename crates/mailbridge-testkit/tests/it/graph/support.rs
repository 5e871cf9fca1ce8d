//! A tenant with a Graph app, three users and an HTTP client.

use std::collections::BTreeSet;
use std::sync::Arc;

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

pub struct World {
    pub server: EmulatorServer,
    pub clock: Arc<OffsetClock>,
    pub tenant_id: Uuid,
    pub app: AppRegistration,
    pub http: reqwest::Client,
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
        let model = TenantModel::builder().tenant(tenant).build().unwrap();
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
