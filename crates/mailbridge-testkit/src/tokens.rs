//! Scopes, resources and access tokens as the identity platform issues them, and their
//! validation by the protected resources (Graph, EWS, and the Dovecot/Postfix judge).
//!
//! Work and school tokens are v1.0-format RS256 JWTs with the claims of
//! `microsoft-protocols.md` §1.7; personal-account tokens are opaque `EwB…` tickets that
//! only the emulator can resolve.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::crypto::Jwt;
use crate::model::Api;

/// OpenID Connect scopes, which name no resource.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A resource as named in a scope: the API and the host form used (Exchange tokens carry
/// the form that was requested as `aud`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub api: Api,
    /// `https://graph.microsoft.com`, `https://outlook.office.com` or `https://outlook.office365.com`.
    pub uri: String,
}

impl Resource {
    /// Microsoft Graph.
    pub fn graph() -> Self {
        Self {
            api: Api::Graph,
            uri: "https://graph.microsoft.com".to_owned(),
        }
    }

    /// Exchange Online under `https://outlook.office365.com` (what `.default` app-only uses).
    pub fn exchange() -> Self {
        Self {
            api: Api::ExchangeOnline,
            uri: "https://outlook.office365.com".to_owned(),
        }
    }
}

/// The scopes of one request, grouped by resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// Per resource: the permission values (`Mail.Read`, `.default`, ...).
    pub resources: Vec<(Resource, BTreeSet<String>)>,
    /// OIDC scopes requested.
    pub oidc: BTreeSet<String>,
    /// Resource URIs that are not Graph or Exchange (AADSTS500011 material).
    pub unknown_resources: Vec<String>,
}

impl ScopeSet {
    /// Parses a space-separated `scope` parameter. Bare names are Graph permissions, as
    /// Microsoft reads them.
    pub fn parse(scope: &str) -> Self {
        let mut set = ScopeSet::default();
        for item in scope.split_whitespace() {
            if OIDC_SCOPES.contains(&item) {
                set.oidc.insert(item.to_owned());
                continue;
            }
            let (resource, permission) = match item.rsplit_once('/') {
                Some((prefix, perm)) if prefix.contains("://") || prefix.len() == 36 => {
                    let prefix = prefix.trim_end_matches('/').to_ascii_lowercase();
                    let resource = match prefix.as_str() {
                        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => {
                            Some(Resource::graph())
                        }
                        "https://outlook.office.com" | "https://outlook.office365.com" => {
                            Some(Resource {
                                api: Api::ExchangeOnline,
                                uri: prefix.clone(),
                            })
                        }
                        "00000002-0000-0ff1-ce00-000000000000" => Some(Resource::exchange()),
                        _ => None,
                    };
                    let Some(r) = resource else {
                        set.unknown_resources.push(prefix);
                        continue;
                    };
                    (r, perm.to_owned())
                }
                _ => (Resource::graph(), item.to_owned()),
            };
            if let Some((_, perms)) = set
                .resources
                .iter_mut()
                .find(|(r, _)| r.api == resource.api)
            {
                perms.insert(permission);
            } else {
                set.resources.push((resource, BTreeSet::from([permission])));
            }
        }
        set
    }

    /// True when the request asks for a refresh token.
    pub fn offline_access(&self) -> bool {
        self.oidc.contains("offline_access")
    }
}

/// Who a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// App-only: the service principal of the app in the tenant.
    App { service_principal_id: Uuid },
    /// Delegated: a user.
    User {
        object_id: Uuid,
        upn: String,
        name: String,
    },
}

/// An access token as a protected resource sees it after validation.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// `aud`: the resource URI.
    pub audience: String,
    pub api: Api,
    pub tenant_id: Uuid,
    /// `appid`: the client id.
    pub app_id: Uuid,
    pub subject: Subject,
    /// `roles` (app-only).
    pub roles: BTreeSet<String>,
    /// `scp` (delegated).
    pub scopes: BTreeSet<String>,
    /// `exp` as seconds since the epoch.
    pub expires: i64,
    /// The raw claims (JWT) or the emulator's record (opaque).
    pub claims: Value,
}

impl AccessToken {
    /// True for an app-only token.
    pub fn is_app_only(&self) -> bool {
        matches!(self.subject, Subject::App { .. })
    }

    /// The object id in `oid`.
    pub fn object_id(&self) -> Uuid {
        match &self.subject {
            Subject::App {
                service_principal_id,
            } => *service_principal_id,
            Subject::User { object_id, .. } => *object_id,
        }
    }

    /// The user's UPN for delegated tokens.
    pub fn upn(&self) -> Option<&str> {
        match &self.subject {
            Subject::User { upn, .. } => Some(upn),
            Subject::App { .. } => None,
        }
    }

    /// True when the token carries `role` (app-only) or `scope` (delegated).
    pub fn has_permission(&self, permission: &str) -> bool {
        self.roles.contains(permission) || self.scopes.contains(permission)
    }

    /// Reads a validated JWT's claims back into an [`AccessToken`].
    pub fn from_claims(claims: &Value) -> Option<Self> {
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        let audience = s("aud")?.to_owned();
        let api = if audience.contains("graph") || audience == crate::model::GRAPH_APP_ID {
            Api::Graph
        } else {
            Api::ExchangeOnline
        };
        let oid = Uuid::parse_str(s("oid")?).ok()?;
        let subject = if s("idtyp") == Some("app") {
            Subject::App {
                service_principal_id: oid,
            }
        } else {
            Subject::User {
                object_id: oid,
                upn: s("upn").unwrap_or_default().to_owned(),
                name: s("name").unwrap_or_default().to_owned(),
            }
        };
        let roles = claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let scopes = s("scp")
            .map(|scp| scp.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Some(Self {
            audience,
            api,
            tenant_id: Uuid::parse_str(s("tid")?).ok()?,
            app_id: Uuid::parse_str(s("appid")?).ok()?,
            subject,
            roles,
            scopes,
            expires: claims.get("exp").and_then(Value::as_i64)?,
            claims: claims.clone(),
        })
    }
}

/// What is needed to mint an access token.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub resource: Resource,
    pub tenant_id: Uuid,
    pub app_id: Uuid,
    pub app_display_name: String,
    /// `appidacr`: 0 public client, 1 secret, 2 certificate.
    pub client_auth: u8,
    pub subject: Subject,
    pub roles: BTreeSet<String>,
    pub scopes: BTreeSet<String>,
    pub issued_at: i64,
    pub lifetime_secs: i64,
}

impl TokenGrant {
    /// The v1.0 access-token claims Microsoft issues for Graph and Exchange Online.
    pub fn claims(&self) -> Value {
        let tid = self.tenant_id.to_string();
        let mut claims = json!({
            "aud": self.resource.uri,
            "iss": format!("https://sts.windows.net/{tid}/"),
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.issued_at + self.lifetime_secs,
            "app_displayname": self.app_display_name,
            "appid": self.app_id.to_string(),
            "appidacr": self.client_auth.to_string(),
            "idp": format!("https://sts.windows.net/{tid}/"),
            "tid": tid,
            "uti": crate::crypto::random_token(16),
            "ver": "1.0",
        });
        let obj = claims.as_object_mut();
        if let Some(obj) = obj {
            match &self.subject {
                Subject::App {
                    service_principal_id,
                } => {
                    obj.insert("oid".into(), json!(service_principal_id.to_string()));
                    obj.insert("sub".into(), json!(service_principal_id.to_string()));
                    obj.insert("idtyp".into(), json!("app"));
                    if !self.roles.is_empty() {
                        obj.insert("roles".into(), json!(self.roles));
                    }
                }
                Subject::User {
                    object_id,
                    upn,
                    name,
                } => {
                    obj.insert("oid".into(), json!(object_id.to_string()));
                    obj.insert(
                        "sub".into(),
                        json!(crate::crypto::b64url(&crate::crypto::sha256(
                            format!("{object_id}{}", self.app_id).as_bytes()
                        ))),
                    );
                    obj.insert("idtyp".into(), json!("user"));
                    obj.insert("upn".into(), json!(upn));
                    obj.insert("unique_name".into(), json!(upn));
                    obj.insert("name".into(), json!(name));
                    obj.insert(
                        "scp".into(),
                        json!(self.scopes.iter().cloned().collect::<Vec<_>>().join(" ")),
                    );
                }
            }
        }
        claims
    }
}

/// Why a presented access token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the token is not a JWT or a known ticket")]
    Malformed,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not yet valid")]
    NotYetValid,
}

/// Parses and checks a bearer token's signature and lifetime against `now`.
pub(crate) fn validate_jwt(
    token: &str,
    key: &crate::crypto::SigningKey,
    now: i64,
) -> Result<AccessToken, TokenRejection> {
    let jwt = Jwt::parse(token).ok_or(TokenRejection::Malformed)?;
    if !key.verify(&jwt) {
        return Err(TokenRejection::BadSignature);
    }
    let token = AccessToken::from_claims(&jwt.claims).ok_or(TokenRejection::Malformed)?;
    if jwt.claim_i64("nbf").is_some_and(|nbf| now < nbf) {
        return Err(TokenRejection::NotYetValid);
    }
    if now >= token.expires {
        return Err(TokenRejection::Expired);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_scope_names_are_graph_and_outlook_prefixes_are_exchange() {
        let s = ScopeSet::parse(
            "offline_access IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send https://outlook.office.com/IMAP.AccessAsUser.All",
        );
        assert!(s.offline_access());
        assert_eq!(s.resources.len(), 2);
        assert_eq!(s.resources[0].0, Resource::graph());
        assert!(s.resources[0].1.contains("IMAP.AccessAsUser.All"));
        assert_eq!(s.resources[1].0.uri, "https://outlook.office.com");
        assert_eq!(s.resources[1].1.len(), 2);
    }

    #[test]
    fn unknown_resource_is_reported() {
        let s = ScopeSet::parse("https://example.contoso.com/activity.read");
        assert_eq!(s.unknown_resources, vec!["https://example.contoso.com"]);
        assert!(s.resources.is_empty());
    }

    #[test]
    fn default_scope_for_exchange() {
        let s = ScopeSet::parse("https://outlook.office365.com/.default");
        assert_eq!(
            s.resources,
            vec![(
                Resource::exchange(),
                BTreeSet::from([".default".to_owned()])
            )]
        );
    }
}
