//! Providers: named templates of endpoints and defaults, and the domains they serve.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mailbridge_types::config::{SignInMethod, Transport};
use serde::{Deserialize, Serialize};

pub use mailbridge_types::config::{LoginFormat, TlsMode};

/// One server of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub transport: Transport,
    /// Host name (IMAP/POP/SMTP) or URL (Graph root, EWS URL).
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

/// A provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// Stable id (`microsoft365-graph`, `gmail`, ...).
    pub id: String,
    pub name: String,
    /// Where mail is downloaded from.
    pub incoming: Option<Endpoint>,
    /// Where mail is sent (for Graph and EWS, the incoming side unless set).
    pub outgoing: Option<Endpoint>,
    /// The sign-in methods the provider supports, best first.
    pub sign_in: Vec<SignInMethod>,
    pub login: LoginFormat,
    /// Domains it serves (for the domain table).
    pub domains: Vec<String>,
    /// Built in (cannot be removed) or defined by the user.
    pub builtin: bool,
    /// What its accounts take unless set: the app, the extra CA file, TLS pins.
    #[serde(default, skip_serializing_if = "ProviderDefaults::is_empty")]
    pub defaults: ProviderDefaults,
    /// Something a person choosing it must know (a service being retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Settings an account made from a provider takes, unless given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDefaults {
    /// The app (by name) for delegated and app-only sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Extra trusted CA (PEM file) for both sides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<PathBuf>,
    /// The incoming server's certificate, pinned (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_tls_pin: Option<String>,
    /// The outgoing server's certificate, pinned (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_tls_pin: Option<String>,
}

impl ProviderDefaults {
    /// True when it sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == ProviderDefaults::default()
    }
}

/// Exchange Online's EWS retirement, in the words shown beside the provider.
pub const EWS_RETIREMENT_NOTICE: &str = "Exchange Online blocks EWS by default from 2026-10-01 (an admin can still allow it per app) and switches it off on 2027-04-01: use microsoft365-graph for new accounts";

#[expect(
    clippy::unnecessary_wraps,
    reason = "providers store optional sides; this builds one"
)]
fn endpoint(transport: Transport, host: &str, port: u16, tls: TlsMode) -> Option<Endpoint> {
    Some(Endpoint {
        transport,
        host: host.to_owned(),
        port,
        tls,
    })
}

/// The built-in providers.
pub fn builtin() -> Vec<Provider> {
    use SignInMethod::{AppOnly, Delegated, Password};
    use Transport::{Ews, Graph, Imap, Pop3, Smtp};
    let p =
        |id: &str, name: &str, incoming, outgoing, sign_in: Vec<SignInMethod>, domains: &[&str]| {
            Provider {
                id: id.to_owned(),
                name: name.to_owned(),
                incoming,
                outgoing,
                sign_in,
                login: LoginFormat::Email,
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                builtin: true,
                defaults: ProviderDefaults::default(),
                notice: None,
            }
        };
    let mut ews_online = p(
        "microsoft365-ews",
        "Microsoft 365 (EWS)",
        endpoint(
            Ews,
            "https://outlook.office365.com/EWS/Exchange.asmx",
            443,
            TlsMode::Implicit,
        ),
        None,
        vec![AppOnly, Delegated],
        &[],
    );
    ews_online.notice = Some(EWS_RETIREMENT_NOTICE.to_owned());
    vec![
        p(
            "microsoft365-graph",
            "Microsoft 365 (Graph)",
            endpoint(Graph, "https://graph.microsoft.com", 443, TlsMode::Implicit),
            None,
            vec![AppOnly, Delegated],
            &["onmicrosoft.com"],
        ),
        p(
            "microsoft365-imap",
            "Microsoft 365 (IMAP/SMTP)",
            endpoint(Imap, "outlook.office365.com", 993, TlsMode::Implicit),
            endpoint(Smtp, "smtp.office365.com", 587, TlsMode::StartTls),
            vec![Delegated, AppOnly],
            &[],
        ),
        p(
            "microsoft365-pop",
            "Microsoft 365 (POP/SMTP)",
            endpoint(Pop3, "outlook.office365.com", 995, TlsMode::Implicit),
            endpoint(Smtp, "smtp.office365.com", 587, TlsMode::StartTls),
            vec![Delegated, AppOnly],
            &[],
        ),
        ews_online,
        p(
            "outlook-com",
            "Outlook.com (personal)",
            endpoint(Imap, "outlook.office365.com", 993, TlsMode::Implicit),
            endpoint(Smtp, "smtp-mail.outlook.com", 587, TlsMode::StartTls),
            vec![Delegated],
            &["outlook.com", "hotmail.com", "live.com", "msn.com"],
        ),
        p(
            "exchange-onpremises",
            "Exchange on-premises (EWS)",
            endpoint(
                Ews,
                "https://mail.example.com/EWS/Exchange.asmx",
                443,
                TlsMode::Implicit,
            ),
            None,
            vec![Password, Delegated],
            &[],
        ),
        p(
            "gmail",
            "Gmail (IMAP/SMTP)",
            endpoint(Imap, "imap.gmail.com", 993, TlsMode::Implicit),
            endpoint(Smtp, "smtp.gmail.com", 465, TlsMode::Implicit),
            vec![Delegated, Password],
            &["gmail.com", "googlemail.com"],
        ),
        p(
            "generic-imap",
            "Other server (IMAP/SMTP)",
            None,
            None,
            vec![Password, Delegated],
            &[],
        ),
    ]
}

/// Providers by id plus the domain -> provider table.
#[derive(Debug, Clone)]
pub struct ProviderTable {
    providers: BTreeMap<String, Provider>,
    domains: BTreeMap<String, String>,
}

/// Error changing the provider table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("provider {id} is used by the accounts {}; move them to another provider first", accounts.join(", "))]
    InUse { id: String, accounts: Vec<String> },
    #[error("provider {0} is built in and cannot be removed")]
    Builtin(String),
    #[error("no provider {0}")]
    Unknown(String),
}

impl Default for ProviderTable {
    fn default() -> Self {
        let mut t = Self {
            providers: BTreeMap::new(),
            domains: BTreeMap::new(),
        };
        for p in builtin() {
            t.add(p);
        }
        t
    }
}

impl ProviderTable {
    /// Adds or replaces a provider and its domains.
    pub fn add(&mut self, provider: Provider) {
        for d in &provider.domains {
            self.domains
                .insert(d.to_ascii_lowercase(), provider.id.clone());
        }
        self.providers.insert(provider.id.clone(), provider);
    }

    /// A provider by id.
    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    /// Every provider, by id.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// The domain table: each domain (lower case) and the id of its provider, by domain.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &str)> {
        self.domains.iter().map(|(d, p)| (d.as_str(), p.as_str()))
    }

    /// The provider a domain is mapped to (exact domain, then parent domains).
    pub fn for_domain(&self, domain: &str) -> Option<&Provider> {
        let mut d = domain.trim_end_matches('.').to_ascii_lowercase();
        loop {
            if let Some(id) = self.domains.get(&d) {
                return self.providers.get(id);
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent.to_owned(),
                _ => return None,
            }
        }
    }

    /// Maps a domain to a provider.
    pub fn map_domain(&mut self, domain: &str, provider_id: &str) -> Result<(), ProviderError> {
        if !self.providers.contains_key(provider_id) {
            return Err(ProviderError::Unknown(provider_id.to_owned()));
        }
        self.domains
            .insert(domain.to_ascii_lowercase(), provider_id.to_owned());
        Ok(())
    }

    /// Removes a user-defined provider that no account uses (`accounts_using` lists
    /// the accounts that do).
    pub fn remove(
        &mut self,
        id: &str,
        accounts_using: &[String],
    ) -> Result<Provider, ProviderError> {
        let p = self
            .providers
            .get(id)
            .ok_or_else(|| ProviderError::Unknown(id.to_owned()))?;
        if p.builtin {
            return Err(ProviderError::Builtin(id.to_owned()));
        }
        if !accounts_using.is_empty() {
            return Err(ProviderError::InUse {
                id: id.to_owned(),
                accounts: accounts_using.to_vec(),
            });
        }
        self.domains.retain(|_, v| v != id);
        self.providers
            .remove(id)
            .ok_or_else(|| ProviderError::Unknown(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_table_matches_subdomains_and_user_mappings() {
        let mut t = ProviderTable::default();
        assert_eq!(
            t.for_domain("contoso.onmicrosoft.com").unwrap().id,
            "microsoft365-graph"
        );
        assert_eq!(t.for_domain("GMAIL.com").unwrap().id, "gmail");
        assert!(t.for_domain("example.org").is_none());
        t.map_domain("example.org", "microsoft365-imap").unwrap();
        assert_eq!(
            t.for_domain("mail.example.org").unwrap().id,
            "microsoft365-imap"
        );
    }

    #[test]
    fn provider_in_use_cannot_be_removed() {
        let mut t = ProviderTable::default();
        let mut mine = t.get("generic-imap").unwrap().clone();
        mine.id = "acme".into();
        mine.builtin = false;
        mine.domains = vec!["acme.example".into()];
        t.add(mine);
        let err = t
            .remove("acme", &["sales".into(), "support".into()])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider acme is used by the accounts sales, support; move them to another provider first"
        );
        assert!(matches!(
            t.remove("gmail", &[]),
            Err(ProviderError::Builtin(_))
        ));
        t.remove("acme", &[]).unwrap();
        assert!(t.for_domain("acme.example").is_none());
    }
}
