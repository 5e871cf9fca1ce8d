//! Reading an access token's claims (without trusting them) to explain trouble: a
//! token without the role a transport needs means admin consent is missing for that
//! permission on that API; a token for another audience means the wrong scope was
//! requested. Personal-account tokens are opaque and are not decoded.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::scopes::{Grant, Transport};

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `aud`.
    pub audience: String,
    /// `roles` (app-only).
    pub roles: Vec<String>,
    /// `scp` (delegated), split.
    pub scopes: Vec<String>,
    /// `upn` / `preferred_username`, when present.
    pub user: Option<String>,
    /// `appid` / `azp`.
    pub app_id: Option<String>,
    /// `exp`.
    pub expires: Option<i64>,
}

/// A problem found in a token, with the fix in the portal's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenProblem {
    pub what: String,
    pub fix: String,
    /// A stable id of the problem (`token-not-graph`, `token-not-exchange`,
    /// `token-no-roles-graph`, `token-missing-role-exchange`, ...): pages say it in the
    /// viewer's language from the id and [`args`](Self::args).
    pub id: &'static str,
    /// The values the texts name (`audience`, `transport`, `roles`, `scopes`,
    /// `needed`).
    pub args: Vec<(&'static str, String)>,
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}. Fix: {}", self.what, self.fix)
    }
}

/// The longest token whose claims are read (Microsoft's tokens are a few KiB).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The claims of a JWT (`header.payload.signature`), decoded without verifying; `None`
/// for opaque tokens, anything that is not a JWT, or more than [`MAX_TOKEN_LEN`] bytes.
pub fn jwt_payload(token: &str) -> Option<Value> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

/// Who signed in, as the sign-in service's answer says, and which token said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    /// The user name (`preferred_username`, `upn` or `email`).
    pub name: String,
    pub source: UserSource,
}

/// The token a [`SignedInUser`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    /// The ID token (`openid` was requested).
    IdToken,
    /// The access token's `upn` / `preferred_username` (no ID token came back).
    AccessToken,
}

impl SignedInUser {
    /// Whether this is the user `name` (an address or login; case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.trim())
    }
}

/// The user who signed in: from the ID token (`preferred_username`, else `upn`, else
/// `email`), else from the access token (`upn`, else `preferred_username`). `None`
/// when neither names one (opaque personal-account tokens without an ID token): never
/// guessed. Names with control characters are not taken (they are shown on a
/// terminal). The tokens are not verified: the name is only shown back to the person
/// who just signed in and compared with the account's mailbox.
pub fn signed_in_user(id_token: Option<&str>, access_token: &str) -> Option<SignedInUser> {
    let read = |token: &str, keys: &[&str]| {
        let v = jwt_payload(token)?;
        keys.iter().find_map(|k| {
            v.get(*k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty() && n.len() <= 320 && !n.chars().any(char::is_control))
                .map(str::to_owned)
        })
    };
    if let Some(name) = id_token.and_then(|t| read(t, &["preferred_username", "upn", "email"])) {
        return Some(SignedInUser {
            name,
            source: UserSource::IdToken,
        });
    }
    read(access_token, &["upn", "preferred_username"]).map(|name| SignedInUser {
        name,
        source: UserSource::AccessToken,
    })
}

impl TokenClaims {
    /// Decodes a JWT access token's payload; `None` for opaque tokens (personal
    /// accounts) or anything that is not a JWT.
    pub fn decode(token: &str) -> Option<Self> {
        let v = jwt_payload(token)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            audience: s("aud")?,
            roles: v
                .get("roles")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            scopes: s("scp")
                .map(|scp| scp.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            user: s("upn").or_else(|| s("preferred_username")),
            app_id: s("appid").or_else(|| s("azp")),
            expires: v.get("exp").and_then(Value::as_i64),
        })
    }

    /// What is wrong with this token for `transport` under `grant`, if anything.
    pub fn problems(&self, transport: Transport, grant: Grant) -> Vec<TokenProblem> {
        let mut out = Vec::new();
        let graph = transport == Transport::Graph;
        let aud = self.audience.trim_end_matches('/').to_ascii_lowercase();
        let aud_is_graph = aud.contains("graph.") || aud == "00000003-0000-0000-c000-000000000000";
        let aud_is_exchange = aud.starts_with("https://outlook.office")
            || aud == "00000002-0000-0ff1-ce00-000000000000";
        if graph && !aud_is_graph {
            out.push(TokenProblem {
                what: format!("the token is for {} but Microsoft Graph needs a Graph token", self.audience),
                fix: "request https://graph.microsoft.com/.default (app-only) or Graph permissions such as Mail.ReadWrite (delegated)".into(),
                id: "token-not-graph",
                args: vec![("audience", self.audience.clone())],
            });
            return out;
        }
        if !graph && !aud_is_exchange {
            out.push(TokenProblem {
                what: format!(
                    "the token is for {} but {} needs an Exchange Online token (https://outlook.office365.com)",
                    self.audience,
                    transport_name(transport)
                ),
                fix: "request https://outlook.office365.com/.default (app-only), or the fully qualified https://outlook.office.com/... scopes (delegated): a bare IMAP.AccessAsUser.All is read as a Graph scope".into(),
                id: "token-not-exchange",
                args: vec![
                    ("audience", self.audience.clone()),
                    ("transport", transport_name(transport).to_owned()),
                ],
            });
            return out;
        }
        let (needed, api) = needed_permission(transport, grant);
        match grant {
            Grant::AppOnly => {
                if !needed.iter().any(|n| self.roles.iter().any(|r| r == n)) {
                    let what = if self.roles.is_empty() {
                        "the app-only token carries no roles at all".to_owned()
                    } else {
                        format!(
                            "the app-only token has the roles {} but not {}",
                            self.roles.join(", "),
                            needed.join(" or ")
                        )
                    };
                    out.push(TokenProblem {
                        what,
                        fix: format!(
                            "in App registrations -> API permissions -> Add a permission -> {api} -> Application permissions add {}, then press \"Grant admin consent for <tenant>\" (a permission listed but not consented gives a token without the role)",
                            needed.join(" or ")
                        ),
                        id: match (self.roles.is_empty(), api == EXO) {
                            (true, true) => "token-no-roles-exchange",
                            (true, false) => "token-no-roles-graph",
                            (false, true) => "token-missing-role-exchange",
                            (false, false) => "token-missing-role-graph",
                        },
                        args: vec![
                            ("roles", self.roles.join(", ")),
                            ("needed", needed.join(" / ")),
                        ],
                    });
                }
            }
            Grant::Delegated => {
                if !needed.iter().any(|n| self.scopes.iter().any(|s| s == n)) {
                    out.push(TokenProblem {
                        what: format!(
                            "the delegated token's scopes ({}) do not include {}",
                            self.scopes.join(" "),
                            needed.join(" or ")
                        ),
                        fix: format!(
                            "add the delegated permission {} ({api}) in App registrations -> API permissions and sign in again so the user (or an admin) consents",
                            needed.join(" or ")
                        ),
                        id: if api == EXO {
                            "token-missing-scope-exchange"
                        } else {
                            "token-missing-scope-graph"
                        },
                        args: vec![
                            ("scopes", self.scopes.join(" ")),
                            ("needed", needed.join(" / ")),
                        ],
                    });
                }
            }
        }
        out
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Graph => "Microsoft Graph",
        Transport::Imap => "IMAP",
        Transport::Pop3 => "POP",
        Transport::Smtp => "SMTP",
        Transport::Ews => "EWS",
    }
}

/// The portal's path to the Exchange Online API (other permissions are Microsoft Graph's).
const EXO: &str = "APIs my organization uses -> Office 365 Exchange Online";

fn needed_permission(t: Transport, g: Grant) -> (Vec<&'static str>, &'static str) {
    match (t, g) {
        (Transport::Graph, _) => (vec!["Mail.ReadWrite", "Mail.Read"], "Microsoft Graph"),
        (Transport::Imap, Grant::AppOnly) => (vec!["IMAP.AccessAsApp"], EXO),
        (Transport::Pop3, Grant::AppOnly) => (vec!["POP.AccessAsApp"], EXO),
        (Transport::Smtp, Grant::AppOnly) => (vec!["SMTP.SendAsApp"], EXO),
        (Transport::Ews, Grant::AppOnly) => (vec!["full_access_as_app"], EXO),
        (Transport::Imap, Grant::Delegated) => (vec!["IMAP.AccessAsUser.All"], "Microsoft Graph"),
        (Transport::Pop3, Grant::Delegated) => (vec!["POP.AccessAsUser.All"], "Microsoft Graph"),
        (Transport::Smtp, Grant::Delegated) => (vec!["SMTP.Send"], "Microsoft Graph"),
        (Transport::Ews, Grant::Delegated) => (vec!["EWS.AccessAsUser.All"], EXO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn the_signed_in_user_is_read_never_guessed() {
        let id = jwt(r#"{"preferred_username":"bob@contoso.example","upn":"x@y"}"#);
        let at = jwt(r#"{"aud":"https://outlook.office.com","upn":"carol@contoso.example"}"#);
        let u = signed_in_user(Some(&id), &at).unwrap();
        assert_eq!(u.name, "bob@contoso.example");
        assert_eq!(u.source, UserSource::IdToken);
        assert!(u.is("Bob@Contoso.example "));
        assert!(!u.is("alice@contoso.example"));
        // No ID token (or one without a name): the access token's upn.
        for id in [
            None,
            Some("opaque"),
            Some(jwt(r#"{"name":"Bob"}"#).as_str()),
        ] {
            let u = signed_in_user(id, &at).unwrap();
            assert_eq!(
                (u.name.as_str(), u.source),
                ("carol@contoso.example", UserSource::AccessToken)
            );
        }
        let at = jwt(r#"{"aud":"x","preferred_username":"dave@contoso.example"}"#);
        assert_eq!(
            signed_in_user(None, &at).unwrap().name,
            "dave@contoso.example"
        );
        // Opaque personal-account token, no ID token: nobody.
        assert_eq!(signed_in_user(None, "EwBIA+l3BAAU..."), None);
        // Names that would write to the terminal, or are empty, are not names.
        let evil = jwt(r#"{"preferred_username":"a[2Jb","upn":" "}"#);
        assert_eq!(signed_in_user(Some(&evil), "opaque"), None);
        assert_eq!(signed_in_user(Some(&"a.".repeat(40_000)), "x"), None);
    }

    #[test]
    fn opaque_tokens_are_not_decoded() {
        assert!(TokenClaims::decode("EwBIA+l3BAAU...").is_none());
        assert!(TokenClaims::decode("a.b").is_none());
        assert!(TokenClaims::decode(&jwt("not json")).is_none());
    }

    #[test]
    fn graph_token_at_imap_is_a_wrong_scope() {
        let c = TokenClaims::decode(&jwt(
            r#"{"aud":"https://graph.microsoft.com","scp":"IMAP.AccessAsUser.All"}"#,
        ))
        .unwrap();
        let p = c.problems(Transport::Imap, Grant::Delegated);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string()
                .contains("bare IMAP.AccessAsUser.All is read as a Graph scope"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn good_tokens_have_no_problems() {
        let c = TokenClaims::decode(&jwt(
            r#"{"aud":"https://outlook.office365.com","roles":["IMAP.AccessAsApp"]}"#,
        ))
        .unwrap();
        assert!(c.problems(Transport::Imap, Grant::AppOnly).is_empty());
        let c = TokenClaims::decode(&jwt(
            r#"{"aud":"https://outlook.office.com","scp":"SMTP.Send IMAP.AccessAsUser.All"}"#,
        ))
        .unwrap();
        assert!(c.problems(Transport::Smtp, Grant::Delegated).is_empty());
    }
}
