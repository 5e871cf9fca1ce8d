//! Authorities: which sign-in host and which tenant segment a token request goes to.
//!
//! Every host is configurable (national clouds, the sandbox); the defaults are
//! Microsoft's (`microsoft-protocols.md` §1.1).

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

pub use mailbridge_types::config::Cloud;

/// The tenant segment of the authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TenantSegment {
    /// A tenant GUID or a verified domain.
    Tenant(String),
    /// Work, school and personal accounts.
    Common,
    /// Work and school accounts.
    Organizations,
    /// Personal Microsoft accounts.
    Consumers,
}

/// Error in an authority setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error(
        "tenant {0:?} is neither a tenant ID nor a domain: use the Directory (tenant) ID from the app's Overview page, or a verified domain"
    )]
    InvalidTenant(String),
    #[error("authority host {0:?} is not a valid https URL")]
    InvalidHost(String),
    #[error(
        "app-only sign-in cannot use the {0} authority: Microsoft needs to know the tenant whose admin consented; set the tenant to the Directory (tenant) ID or a verified domain"
    )]
    AppOnlyNeedsTenant(&'static str),
}

impl TenantSegment {
    /// Parses a tenant setting: a GUID, a domain, `common`, `organizations` or `consumers`.
    pub fn parse(text: &str) -> Result<Self, AuthorityError> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "common" => return Ok(Self::Common),
            "organizations" => return Ok(Self::Organizations),
            "consumers" => return Ok(Self::Consumers),
            _ => {}
        }
        let valid = !t.is_empty()
            && t.len() <= 253
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !t.starts_with(['-', '.'])
            && (uuid_like(t) || t.contains('.'));
        if valid {
            Ok(Self::Tenant(t.to_ascii_lowercase()))
        } else {
            Err(AuthorityError::InvalidTenant(text.to_owned()))
        }
    }

    /// The path segment.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tenant(t) => t,
            Self::Common => "common",
            Self::Organizations => "organizations",
            Self::Consumers => "consumers",
        }
    }
}

fn uuid_like(t: &str) -> bool {
    t.len() == 36 && t.chars().filter(|c| *c == '-').count() == 4
}

impl fmt::Display for TenantSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<TenantSegment> for String {
    fn from(t: TenantSegment) -> String {
        t.as_str().to_owned()
    }
}

impl TryFrom<String> for TenantSegment {
    type Error = AuthorityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// Where tokens come from: a sign-in host and a tenant segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Authority {
    /// The sign-in host, e.g. `https://login.microsoftonline.com` or the sandbox's
    /// `http://127.0.0.1:8400` (no trailing slash).
    host: String,
    pub tenant: TenantSegment,
}

impl Authority {
    /// An authority on `host` (any URL; `http` is accepted only for loopback hosts, so
    /// that the sandbox works while real traffic stays on TLS).
    pub fn new(host: &str, tenant: TenantSegment) -> Result<Self, AuthorityError> {
        let url = Url::parse(host).map_err(|_| AuthorityError::InvalidHost(host.to_owned()))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(AuthorityError::InvalidHost(host.to_owned()));
        }
        Ok(Self {
            host: host.trim_end_matches('/').to_owned(),
            tenant,
        })
    }

    /// The default host of a cloud.
    pub fn for_cloud(cloud: Cloud, tenant: TenantSegment) -> Self {
        Self {
            host: cloud.login_host().to_owned(),
            tenant,
        }
    }

    /// The sign-in host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Refuses authorities that cannot serve app-only sign-in.
    pub fn check_app_only(&self) -> Result<(), AuthorityError> {
        match self.tenant {
            TenantSegment::Tenant(_) => Ok(()),
            TenantSegment::Common => Err(AuthorityError::AppOnlyNeedsTenant("common")),
            TenantSegment::Organizations => {
                Err(AuthorityError::AppOnlyNeedsTenant("organizations"))
            }
            TenantSegment::Consumers => Err(AuthorityError::AppOnlyNeedsTenant("consumers")),
        }
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{}/oauth2/v2.0/{path}", self.host, self.tenant)
    }

    /// `…/oauth2/v2.0/token`: also the `aud` of client assertions.
    pub fn token_endpoint(&self) -> String {
        self.endpoint("token")
    }

    /// `…/oauth2/v2.0/authorize`.
    pub fn authorize_endpoint(&self) -> String {
        self.endpoint("authorize")
    }

    /// `…/oauth2/v2.0/devicecode`.
    pub fn devicecode_endpoint(&self) -> String {
        self.endpoint("devicecode")
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_segments() {
        assert_eq!(
            TenantSegment::parse("Common").unwrap(),
            TenantSegment::Common
        );
        assert_eq!(
            TenantSegment::parse("8eaef023-2b34-4da1-9baa-8bc8c9d6a490")
                .unwrap()
                .as_str(),
            "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
        );
        assert_eq!(
            TenantSegment::parse(" Contoso.COM ").unwrap().as_str(),
            "contoso.com"
        );
        for bad in [
            "",
            "https://contoso.com",
            "contoso com",
            "contoso",
            "-x.com",
            "a/b",
        ] {
            assert!(TenantSegment::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_and_app_only_check() {
        let a = Authority::for_cloud(
            Cloud::UsGovHigh,
            TenantSegment::parse("contoso.com").unwrap(),
        );
        assert_eq!(
            a.token_endpoint(),
            "https://login.microsoftonline.us/contoso.com/oauth2/v2.0/token"
        );
        assert!(a.check_app_only().is_ok());
        let c = Authority::new("http://127.0.0.1:8400/", TenantSegment::Common).unwrap();
        assert_eq!(
            c.devicecode_endpoint(),
            "http://127.0.0.1:8400/common/oauth2/v2.0/devicecode"
        );
        let err = c.check_app_only().unwrap_err();
        assert!(err.to_string().contains("Directory (tenant) ID"), "{err}");
        assert!(Authority::new("http://login.example.com", TenantSegment::Common).is_err());
    }
}
