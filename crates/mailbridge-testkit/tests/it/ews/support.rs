//! A fresh emulated tenant per test, tokens, and a small SOAP client.

use std::collections::BTreeSet;
use std::sync::Arc;

use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::mailservers::wire::{self, LineClient};
use mailbridge_types::OffsetClock;

use mailbridge_testkit::model::{
    AccessPolicyMode, Api, AppRegistration, ApplicationAccessPolicy, PermissionKind, Tenant, User,
};
use mailbridge_testkit::tokens::{Resource, Subject, TokenGrant};
use mailbridge_testkit::{Emulator, EmulatorServer, TenantModel};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use uuid::Uuid;

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
/// A user without an Exchange Online licence.
pub const CAROL: &str = "carol@contoso.example";
/// A user whose mailbox has `EwsEnabled $false`.
pub const ERIN: &str = "erin@contoso.example";
/// A user of the on-premises-style tenant that accepts Basic authentication.
pub const FRANK: &str = "frank@fabrikam.example";
pub const FRANK_PASSWORD: &str = "Fr4nk-pw";

/// One emulated world on a free loopback port.
pub struct World {
    pub server: EmulatorServer,
    pub emulator: Emulator,
    /// The emulator's clock, to let Exchange-side changes propagate or tokens expire.
    pub clock: Arc<OffsetClock>,
    pub tenant_id: Uuid,
    /// The daemon app: `full_access_as_app`, consented.
    pub app: AppRegistration,
    pub http: reqwest::Client,
    /// Dovecot and Postfix, for tests that touch mail.
    pub mail: Option<MailServers>,
}

/// The standard tenant: Contoso (Exchange Online) with Alice, Bob, unlicensed Carol,
/// EWS-disabled Erin and a consented `full_access_as_app` daemon app; Fabrikam
/// (on-premises style, Basic allowed) with Frank.
pub fn model() -> (TenantModel, AppRegistration) {
    let app = AppRegistration::new("Mail connector")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "full_access_as_app",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Delegated,
            "EWS.AccessAsUser.All",
        )
        .consented();
    let mut carol = User::new(CAROL, "Carol", "pw");
    carol.mailbox.licensed = false;
    let mut erin = User::new(ERIN, "Erin", "pw");
    erin.mailbox.ews_enabled = false;
    let contoso = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice Anders", "pw"))
        .with_user(User::new(BOB, "Bob Berg", "pw"))
        .with_user(carol)
        .with_user(erin)
        .with_app(app.clone());
    let mut fabrikam = Tenant::new("Fabrikam on-premises", "fabrikam.example")
        .with_user(User::new(FRANK, "Frank Fischer", FRANK_PASSWORD));
    fabrikam.basic_auth_enabled = true;
    let model = TenantModel::builder()
        .tenant(contoso)
        .tenant(fabrikam)
        .build()
        .unwrap();
    (model, app)
}

impl World {
    /// Starts the standard tenant.
    pub async fn start() -> Self {
        let (model, app) = model();
        Self::with(model, app).await
    }

    /// Starts a given model.
    pub async fn with(model: TenantModel, app: AppRegistration) -> Self {
        let tenant_id = model.tenants[0].id;
        let clock = Arc::new(OffsetClock::new());
        let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
        let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            server,
            emulator,
            clock,
            tenant_id,
            app,
            http,
            mail: None,
        }
    }

    /// Starts the standard tenant with real Dovecot and Postfix behind it.
    pub async fn start_with_mail() -> Self {
        let mut world = Self::start().await;
        let ca = TestCa::generate().unwrap();
        world.mail = Some(MailServers::start(&world.emulator, &ca).await.unwrap());
        world
    }

    /// Every message in `upn`'s mailbox as POP3 `RETR` returns it (signing in with
    /// XOAUTH2 and a delegated `POP.AccessAsUser.All` token), polling until one
    /// contains `expect` (delivery through Postfix is asynchronous).
    pub async fn pop3_messages(&self, upn: &str, expect: &str) -> Vec<String> {
        let mail = self.mail.as_ref().unwrap();
        let mut last = Vec::new();
        for _ in 0..100 {
            let token = self.user_token(upn, &["POP.AccessAsUser.All"]);
            let mut c = LineClient::connect_tls(mail.pop3s(), mail.tls_config(), "localhost")
                .await
                .unwrap();
            let greeting = c.read_line().await.unwrap();
            assert!(greeting.starts_with("+OK"), "{greeting}");
            let cont = c.pop_command("AUTH XOAUTH2").await.unwrap();
            assert!(cont.starts_with('+'), "{cont}");
            let done = c.pop_command(&wire::xoauth2(upn, &token)).await.unwrap();
            assert!(done.starts_with("+OK"), "{done}\n{}", c.transcript());
            let stat = c.pop_command("STAT").await.unwrap();
            let messages: usize = stat.split(' ').nth(1).unwrap().parse().unwrap();
            last.clear();
            for n in 1..=messages {
                let status = c.pop_command(&format!("RETR {n}")).await.unwrap();
                assert!(status.starts_with("+OK"), "{status}");
                last.push(c.read_pop_multiline().await.unwrap().join("\r\n"));
            }
            let _ = c.pop_command("QUIT").await;
            if last.iter().any(|m| m.contains(expect)) {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("{expect:?} never reached {upn} over POP3; saw {last:?}");
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
            issued_at: self.emulator.now().unix_timestamp(),
            lifetime_secs: 3599,
        }
    }

    /// An app-only Exchange Online token with these roles.
    pub fn app_token(&self, roles: &[&str]) -> String {
        let mut grant = self.grant(
            Resource::exchange(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
        );
        grant.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.emulator.issue_access_token(&grant, false)
    }

    /// The token a consented daemon app gets: `full_access_as_app`.
    pub fn daemon_token(&self) -> String {
        self.app_token(&["full_access_as_app"])
    }

    /// A delegated Exchange Online token for `upn` with these scopes.
    pub fn user_token(&self, upn: &str, scopes: &[&str]) -> String {
        let object_id = self
            .emulator
            .read(|m| m.user(upn).map(|(_, u)| u.object_id))
            .unwrap_or_else(Uuid::new_v4);
        let mut grant = self.grant(
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
        grant.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.emulator.issue_access_token(&grant, false)
    }

    /// An app-only Microsoft Graph token (the wrong audience for EWS).
    pub fn graph_token(&self) -> String {
        let mut grant = self.grant(
            Resource::graph(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
        );
        grant.roles = BTreeSet::from(["Mail.ReadWrite".to_owned()]);
        self.emulator.issue_access_token(&grant, false)
    }

    /// An app-only token that expired an hour ago.
    pub fn expired_token(&self) -> String {
        let mut grant = self.grant(
            Resource::exchange(),
            Subject::App {
                service_principal_id: self.app.service_principal_id,
            },
        );
        grant.roles = BTreeSet::from(["full_access_as_app".to_owned()]);
        grant.issued_at -= 2 * 3600;
        self.emulator.issue_access_token(&grant, false)
    }

    /// Adds an application access policy for the daemon app.
    pub fn add_policy(&self, mode: AccessPolicyMode, mailboxes: &[&str], delayed: bool) {
        let app_id = self.app.client_id;
        let now = self.emulator.now();
        self.emulator.update(|m| {
            m.tenants[0].access_policies.push(ApplicationAccessPolicy {
                app_id,
                mode,
                mailboxes: mailboxes.iter().map(|m| (*m).to_owned()).collect(),
                added_at: delayed.then_some(now),
            });
        });
    }

    /// The EWS URL.
    pub fn ews_url(&self) -> String {
        format!("{}/EWS/Exchange.asmx", self.server.base_url())
    }

    /// POSTs a SOAP body with an `Authorization` header value and extra headers.
    pub async fn post(
        &self,
        authorization: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .http
            .post(self.ews_url())
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if let Some(a) = authorization {
            request = request.header("Authorization", a);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    /// An app-only call impersonating `mailbox`, anchored on it, as the EWS Managed API
    /// sends it.
    pub async fn as_app(&self, mailbox: &str, operation: &str) -> Answer {
        let token = self.daemon_token();
        self.post(
            Some(&format!("Bearer {token}")),
            &[("X-AnchorMailbox", mailbox)],
            envelope(&impersonation(mailbox), operation),
        )
        .await
    }

    /// A delegated call as `upn` with `EWS.AccessAsUser.All`.
    pub async fn as_user(&self, upn: &str, operation: &str) -> Answer {
        let token = self.user_token(upn, &["EWS.AccessAsUser.All"]);
        self.post(
            Some(&format!("Bearer {token}")),
            &[],
            envelope("", operation),
        )
        .await
    }
}

/// What came back.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The text of the first element with this local name (any prefix).
    pub fn text_of(&self, local: &str) -> Option<String> {
        texts(&self.body, local).into_iter().next()
    }

    /// Asserts a SOAP fault with this response code and HTTP status.
    pub fn assert_fault(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert!(
            self.body.contains(&format!(
                r#"<faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:{code}</faultcode>"#
            )),
            "{}",
            self.body
        );
        assert_eq!(self.text_of("ResponseCode").as_deref(), Some(code));
        assert_eq!(self.header("content-type"), Some("text/xml; charset=utf-8"));
    }
}

/// Texts of every element with this local name, in order.
pub fn texts(xml: &str, local: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in xml.match_indices('<') {
        let tag = &xml[at + 1..];
        let name_end = tag.find([' ', '>', '/']).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.starts_with('/') || name.rsplit(':').next() != Some(local) {
            continue;
        }
        let Some(open_end) = tag.find('>') else { break };
        if tag[..open_end].ends_with('/') {
            out.push(String::new());
            continue;
        }
        let content = &tag[open_end + 1..];
        let close = content.find("</").unwrap_or(content.len());
        out.push(
            content[..close]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
    }
    out
}

/// Values of an attribute on every element with this local name, in order.
pub fn attrs(xml: &str, local: &str, attr: &str) -> Vec<String> {
    xml.split('<')
        .filter(|tag| {
            tag.split_once(' ')
                .is_some_and(|(name, _)| name.rsplit(':').next() == Some(local))
        })
        .filter_map(|tag| {
            let (_, after) = tag.split_once(&format!(" {attr}=\""))?;
            Some(after.split('"').next()?.to_owned())
        })
        .collect()
}

/// A SOAP envelope as clients write it.
pub fn envelope(header: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2013_SP1" />
    {header}
  </soap:Header>
  <soap:Body>
    {body}
  </soap:Body>
</soap:Envelope>
"#
    )
}

/// The `ExchangeImpersonation` header for `mailbox`.
pub fn impersonation(mailbox: &str) -> String {
    format!(
        "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
    )
}

/// FindItem on a distinguished folder with a page view.
pub fn find_item(folder: &str, shape: &str, max: u32, offset: u32) -> String {
    format!(
        r#"<m:FindItem Traversal="Shallow">
      <m:ItemShape>
        <t:BaseShape>{shape}</t:BaseShape>
        <t:AdditionalProperties>
          <t:FieldURI FieldURI="item:Subject" />
          <t:FieldURI FieldURI="item:DateTimeReceived" />
          <t:FieldURI FieldURI="message:IsRead" />
        </t:AdditionalProperties>
      </m:ItemShape>
      <m:IndexedPageItemView MaxEntriesReturned="{max}" Offset="{offset}" BasePoint="Beginning" />
      <m:SortOrder>
        <t:FieldOrder Order="Descending"><t:FieldURI FieldURI="item:DateTimeReceived" /></t:FieldOrder>
      </m:SortOrder>
      <m:ParentFolderIds>
        <t:DistinguishedFolderId Id="{folder}" />
      </m:ParentFolderIds>
    </m:FindItem>"#
    )
}
