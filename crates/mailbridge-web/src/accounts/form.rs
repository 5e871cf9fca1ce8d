//! The wizard's form, pure: the client types, the fields each needs, the API request
//! a filled form makes (`api_config::AccountRequest`, read by the API's own parser so
//! a wrong value is refused with the API's words), and which form field and message
//! an API field error belongs to.

use mailbridge_types::config::{AccountConfig, SignInMethod, TlsMode, Transport};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The client types the wizard offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Microsoft 365 through Graph, app-only ("Exchange (Confidential)").
    GraphAppOnly,
    /// IMAP/SMTP with OAuth2, a user signs in.
    ImapDelegated,
    /// IMAP or POP3 with OAuth2, app-only.
    MailboxAppOnly,
    /// Exchange Web Services, app-only.
    Ews,
    /// IMAP or POP3 (and SMTP) with a password.
    Password,
}

impl Kind {
    pub(crate) const ALL: [Kind; 5] = [
        Kind::GraphAppOnly,
        Kind::ImapDelegated,
        Kind::MailboxAppOnly,
        Kind::Ews,
        Kind::Password,
    ];

    pub(crate) fn id(self) -> &'static str {
        match self {
            Kind::GraphAppOnly => "graph-app-only",
            Kind::ImapDelegated => "imap-delegated",
            Kind::MailboxAppOnly => "mailbox-app-only",
            Kind::Ews => "ews",
            Kind::Password => "password",
        }
    }

    pub(crate) fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The message id of its name.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::GraphAppOnly => "wizard-kind-graph-app-only",
            Kind::ImapDelegated => "wizard-kind-imap-delegated",
            Kind::MailboxAppOnly => "wizard-kind-mailbox-app-only",
            Kind::Ews => "wizard-kind-ews",
            Kind::Password => "wizard-kind-password",
        }
    }

    /// The message id of what it is for.
    pub(crate) fn hint(self) -> &'static str {
        match self {
            Kind::GraphAppOnly => "wizard-kind-graph-app-only-hint",
            Kind::ImapDelegated => "wizard-kind-imap-delegated-hint",
            Kind::MailboxAppOnly => "wizard-kind-mailbox-app-only-hint",
            Kind::Ews => "wizard-kind-ews-hint",
            Kind::Password => "wizard-kind-password-hint",
        }
    }

    pub(crate) fn uses_app(self) -> bool {
        self != Kind::Password
    }

    /// Whether it reads over IMAP/POP3 (and sends over SMTP).
    pub(crate) fn uses_servers(self) -> bool {
        matches!(
            self,
            Kind::ImapDelegated | Kind::MailboxAppOnly | Kind::Password
        )
    }

    /// Whether the protocol (IMAP or POP3) is chosen.
    pub(crate) fn chooses_protocol(self) -> bool {
        matches!(self, Kind::MailboxAppOnly | Kind::Password)
    }

    fn sign_in(self) -> &'static str {
        match self {
            Kind::ImapDelegated => "delegated",
            Kind::Password => "password",
            Kind::GraphAppOnly | Kind::MailboxAppOnly | Kind::Ews => "app-only",
        }
    }

    /// The type of an existing account.
    pub(crate) fn of(account: &AccountConfig) -> Self {
        let transport = account.incoming.as_ref().map(|e| e.transport);
        match (account.sign_in, transport) {
            (SignInMethod::Password, _) => Kind::Password,
            (_, Some(Transport::Graph)) => Kind::GraphAppOnly,
            (_, Some(Transport::Ews)) => Kind::Ews,
            (SignInMethod::Delegated, _) => Kind::ImapDelegated,
            (SignInMethod::AppOnly, _) => Kind::MailboxAppOnly,
        }
    }

    /// The type a provider suggests: its incoming transport and its best sign-in.
    pub(crate) fn suggested(provider: Option<&mailbridge_accounts::provider::Provider>) -> Self {
        let Some(p) = provider else {
            return Kind::Password;
        };
        match (
            p.incoming.as_ref().map(|e| e.transport),
            p.sign_in.first().copied(),
        ) {
            (Some(Transport::Graph), _) => Kind::GraphAppOnly,
            (Some(Transport::Ews), _) => Kind::Ews,
            (_, Some(SignInMethod::Delegated)) => Kind::ImapDelegated,
            (_, Some(SignInMethod::AppOnly)) => Kind::MailboxAppOnly,
            _ => Kind::Password,
        }
    }
}

/// Every field of the wizard, as posted (secrets apart: `password` is taken only
/// from the last POST and never written back into a page).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct Fields {
    pub(crate) address: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) provider: String,
    pub(crate) app: String,
    pub(crate) mailbox_id: String,
    pub(crate) graph_url: String,
    pub(crate) ews_url: String,
    pub(crate) protocol: String,
    pub(crate) in_host: String,
    pub(crate) in_port: String,
    pub(crate) in_tls: String,
    pub(crate) out_host: String,
    pub(crate) out_port: String,
    pub(crate) out_tls: String,
    pub(crate) login: String,
    pub(crate) tls_name: String,
    pub(crate) extra_ca: String,
}

/// The configuration's word for a TLS mode.
pub(crate) fn tls_word(mode: Option<TlsMode>) -> &'static str {
    match mode {
        Some(TlsMode::None) => "none",
        Some(TlsMode::StartTls) => "starttls",
        Some(TlsMode::Implicit) => "implicit",
        Some(TlsMode::Auto) | None => "auto",
    }
}

/// A number as JSON when it is one, else the text (the API's parser then names the
/// field and says what it expects).
fn number_or_text(v: &str) -> Value {
    let v = v.trim();
    v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
}

fn side(transport: &str, host: &str, port: &str, tls: &str, f: &Fields) -> Value {
    let mut e = Map::new();
    e.insert("transport".into(), json!(transport));
    e.insert("host".into(), json!(host.trim()));
    if !port.trim().is_empty() {
        e.insert("port".into(), number_or_text(port));
    }
    if !tls.trim().is_empty() {
        e.insert("tls".into(), json!(tls.trim()));
    }
    if !f.tls_name.trim().is_empty() {
        e.insert("tls_name".into(), json!(f.tls_name.trim()));
    }
    if !f.extra_ca.trim().is_empty() {
        e.insert("extra_ca_file".into(), json!(f.extra_ca.trim()));
    }
    Value::Object(e)
}

impl Fields {
    /// The fields an existing account fills in.
    pub(crate) fn of(account: &AccountConfig) -> Self {
        let kind = Kind::of(account);
        let mut f = Fields {
            address: account.address.clone(),
            name: account.name.clone(),
            kind: kind.id().to_owned(),
            app: account.app.clone().unwrap_or_default(),
            mailbox_id: account.mailbox_id.clone().unwrap_or_default(),
            login: account.login.clone().unwrap_or_default(),
            ..Fields::default()
        };
        if let Some(e) = &account.incoming {
            match e.transport {
                Transport::Graph => e.host.clone_into(&mut f.graph_url),
                Transport::Ews => e.host.clone_into(&mut f.ews_url),
                t => {
                    f.protocol = if t == Transport::Pop3 { "pop3" } else { "imap" }.into();
                    e.host.clone_into(&mut f.in_host);
                    f.in_port = e.port.map(|p| p.to_string()).unwrap_or_default();
                    f.in_tls = tls_word(e.tls).into();
                    f.tls_name = e.tls_name.clone().unwrap_or_default();
                    f.extra_ca = e
                        .extra_ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                }
            }
        }
        if let Some(e) = &account.outgoing
            && e.transport == Transport::Smtp
        {
            e.host.clone_into(&mut f.out_host);
            f.out_port = e.port.map(|p| p.to_string()).unwrap_or_default();
            f.out_tls = tls_word(e.tls).into();
        }
        f
    }

    /// The API request these fields make (`password` only for the password type).
    /// `edit`: the account exists (its name may change; its address is kept).
    pub(crate) fn request(&self, kind: Kind, password: Option<&str>, edit: bool) -> Value {
        let mut r = Map::new();
        if !edit {
            r.insert("address".into(), json!(self.address.trim()));
        }
        if !self.name.trim().is_empty() {
            r.insert("name".into(), json!(self.name.trim()));
        }
        r.insert("sign_in".into(), json!(kind.sign_in()));
        if kind.uses_app() {
            r.insert("app".into(), json!(self.app.trim()));
        }
        match kind {
            Kind::GraphAppOnly => {
                r.insert(
                    "incoming".into(),
                    side("graph", &self.graph_url, "", "", &Fields::default()),
                );
                if !self.mailbox_id.trim().is_empty() {
                    r.insert("mailbox_id".into(), json!(self.mailbox_id.trim()));
                }
            }
            Kind::Ews => {
                r.insert(
                    "incoming".into(),
                    side("ews", &self.ews_url, "", "", &Fields::default()),
                );
            }
            Kind::ImapDelegated | Kind::MailboxAppOnly | Kind::Password => {
                let protocol = if kind.chooses_protocol() && self.protocol == "pop3" {
                    "pop3"
                } else {
                    "imap"
                };
                r.insert(
                    "incoming".into(),
                    side(protocol, &self.in_host, &self.in_port, &self.in_tls, self),
                );
                if !self.out_host.trim().is_empty() {
                    r.insert(
                        "outgoing".into(),
                        side("smtp", &self.out_host, &self.out_port, &self.out_tls, self),
                    );
                }
                if !self.login.trim().is_empty() {
                    r.insert("login".into(), json!(self.login.trim()));
                }
            }
        }
        if let Some(p) = password.filter(|p| !p.is_empty())
            && kind == Kind::Password
        {
            r.insert("password".into(), json!(p));
        }
        Value::Object(r)
    }
}

/// The form field an API field error belongs to (`incoming.port` -> `in_port`), for
/// a form of `kind`; `None`: shown above the form.
pub(crate) fn form_field(api_field: &str, kind: Kind) -> Option<&'static str> {
    let (side, rest) = api_field.split_once('.').unwrap_or((api_field, ""));
    Some(match (side, rest) {
        ("address", _) => "address",
        ("name", _) => "name",
        ("app", _) => "app",
        ("mailbox_id", _) => "mailbox_id",
        ("login" | "login_format", _) => "login",
        ("password", _) => "password",
        ("incoming" | "outgoing", "tls_name") => "tls_name",
        ("incoming" | "outgoing", "extra_ca_file") => "extra_ca",
        ("incoming", _) if kind == Kind::GraphAppOnly => "graph_url",
        ("incoming", _) if kind == Kind::Ews => "ews_url",
        ("incoming", "port") => "in_port",
        ("incoming", "tls") => "in_tls",
        ("incoming", _) => "in_host",
        ("outgoing", "port") => "out_port",
        ("outgoing", "tls") => "out_tls",
        ("outgoing", _) => "out_host",
        _ => return None,
    })
}

/// The message id that says, in the page's language, what a form field needs.
pub(crate) fn field_message(field: &str) -> &'static str {
    match field {
        "address" => "wizard-error-address",
        "name" => "wizard-error-name",
        "app" => "wizard-error-app",
        "mailbox_id" => "wizard-error-mailbox-id",
        "login" => "wizard-error-login",
        "password" => "wizard-error-password",
        "tls_name" => "wizard-error-tls-name",
        "extra_ca" => "wizard-error-extra-ca",
        "graph_url" | "ews_url" => "wizard-error-url",
        "in_port" | "out_port" => "wizard-error-port",
        "in_tls" | "out_tls" => "wizard-error-tls",
        "in_host" | "out_host" => "wizard-error-host",
        _ => "wizard-error-other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_fields() -> Fields {
        Fields {
            address: " a@example.org ".into(),
            kind: "password".into(),
            protocol: "imap".into(),
            in_host: "127.0.0.1".into(),
            in_port: "99999".into(),
            in_tls: "implicit".into(),
            tls_name: "mail.test".into(),
            ..Fields::default()
        }
    }

    #[test]
    fn a_password_form_makes_the_api_request_and_the_api_parser_names_a_bad_port() {
        let f = password_fields();
        let req = f.request(Kind::Password, Some("hunter2"), false);
        assert_eq!(req["address"], "a@example.org");
        assert_eq!(req["sign_in"], "password");
        assert_eq!(req["incoming"]["port"], 99999);
        assert_eq!(req["incoming"]["tls_name"], "mail.test");
        assert_eq!(req["password"], "hunter2");
        assert!(req.get("outgoing").is_none() && req.get("app").is_none());
        let problem =
            mailbridge_server::json::parse::<mailbridge_server::api_config::AccountRequest>(
                req.to_string().as_bytes(),
            )
            .unwrap_err();
        let field = problem.field.as_deref().unwrap();
        assert_eq!(field, "incoming.port");
        assert_eq!(form_field(field, Kind::Password), Some("in_port"));
        assert_eq!(field_message("in_port"), "wizard-error-port");
        // A port that is not a number is the API's refusal too.
        let mut f = password_fields();
        f.in_port = "imap".into();
        let req = f.request(Kind::Password, None, false);
        assert_eq!(req["incoming"]["port"], "imap");
        assert!(req.get("password").is_none());
    }

    #[test]
    fn each_type_asks_for_its_own_sides_and_sign_in() {
        let f = Fields {
            address: "box@contoso.example".into(),
            app: "daemon".into(),
            mailbox_id: "b0f1c3a2-0000-4000-8000-000000000001".into(),
            graph_url: "https://graph.microsoft.com".into(),
            in_host: "outlook.office365.com".into(),
            out_host: "smtp.office365.com".into(),
            out_port: "587".into(),
            protocol: "pop3".into(),
            ..Fields::default()
        };
        let g = f.request(Kind::GraphAppOnly, Some("ignored"), false);
        assert_eq!(g["sign_in"], "app-only");
        assert_eq!(g["incoming"]["transport"], "graph");
        assert_eq!(g["mailbox_id"], f.mailbox_id);
        assert!(g.get("password").is_none() && g.get("outgoing").is_none());
        let d = f.request(Kind::ImapDelegated, None, true);
        assert_eq!(d["sign_in"], "delegated");
        assert_eq!(d["incoming"]["transport"], "imap", "delegated is IMAP");
        assert_eq!(d["outgoing"]["port"], 587);
        assert!(d.get("address").is_none(), "an edit keeps the address");
        let p = f.request(Kind::MailboxAppOnly, None, false);
        assert_eq!(p["incoming"]["transport"], "pop3");
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.id()), Some(kind));
            // What the form makes is what the API reads (no unknown field).
            let req = Fields {
                in_port: "993".into(),
                ..f.clone()
            }
            .request(kind, Some("pw"), false);
            mailbridge_server::json::parse::<mailbridge_server::api_config::AccountRequest>(
                req.to_string().as_bytes(),
            )
            .unwrap();
        }
    }

    #[test]
    fn api_fields_map_to_the_form_field_of_the_type() {
        assert_eq!(
            form_field("incoming.host", Kind::GraphAppOnly),
            Some("graph_url")
        );
        assert_eq!(form_field("incoming.host", Kind::Ews), Some("ews_url"));
        assert_eq!(form_field("incoming.host", Kind::Password), Some("in_host"));
        assert_eq!(form_field("outgoing.tls", Kind::Password), Some("out_tls"));
        assert_eq!(form_field("app.tenant", Kind::MailboxAppOnly), Some("app"));
        assert_eq!(form_field("download, send", Kind::Password), None);
        assert_eq!(field_message("nothing"), "wizard-error-other");
    }

    #[test]
    fn an_account_fills_the_form_it_was_made_with() {
        let table = mailbridge_accounts::provider::ProviderTable::default();
        let mut a = mailbridge_accounts::account::from_provider(
            "a@example.org",
            table.get("generic-imap").unwrap(),
        );
        a.incoming = Some(mailbridge_types::config::EndpointConfig {
            transport: Transport::Pop3,
            host: "pop.example.org".into(),
            port: Some(995),
            tls: Some(TlsMode::Implicit),
            tls_name: None,
            extra_ca_file: None,
            tls_pin: None,
        });
        a.sign_in = SignInMethod::Password;
        let f = Fields::of(&a);
        assert_eq!(Kind::parse(&f.kind), Some(Kind::Password));
        assert_eq!(
            (
                f.protocol.as_str(),
                f.in_host.as_str(),
                f.in_port.as_str(),
                f.in_tls.as_str()
            ),
            ("pop3", "pop.example.org", "995", "implicit")
        );
        let graph = table.get("microsoft365-graph").unwrap();
        assert_eq!(Kind::suggested(Some(graph)), Kind::GraphAppOnly);
        assert_eq!(Kind::suggested(None), Kind::Password);
    }
}
