//! API tokens: how they look, how they are kept, and how a request proves one.
//!
//! A token is `mbt_` followed by 43 characters of base64url (32 random bytes). Only
//! its SHA-256 is stored ([`TokenHash`]): a database that leaks gives no usable
//! token, and because a token has 256 bits of randomness a fast hash is enough (a
//! password needs a slow one; a token does not). The token itself is shown once, when
//! it is made. A request sends it as `Authorization: Bearer mbt_...`; [`Caller`] is
//! the extractor that checks it and carries the token's role to the handler, which
//! asks [`mailbridge_types::access::allowed`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lc_rs::digest;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use mailbridge_types::access::{Action, Role, allowed};
use secrecy::{ExposeSecret as _, SecretString};

use crate::AppState;
use crate::problem::Problem;

/// The prefix of every token (lets secret scanners find leaked ones).
pub const PREFIX: &str = "mbt_";

/// A new token: shown once, then only its hash is kept.
/// Fails only when the operating system gives no randomness (then no token may be
/// made at all).
pub fn generate() -> Result<SecretString, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(SecretString::from(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// The SHA-256 of a token, as 64 hex digits: what the store keeps and looks up.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &SecretString) -> Self {
        let hash = digest::digest(&digest::SHA256, token.expose_secret().as_bytes());
        let mut hex = String::with_capacity(64);
        for b in hash.as_ref() {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        Self(hex)
    }

    /// A stored hash read back.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hash as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret, but long; the start is enough to tell two apart.
        write!(f, "TokenHash({}…)", self.0.get(..8).unwrap_or(""))
    }
}

/// What is known about a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's stable id (not the token).
    pub id: String,
    /// Its name, as its maker called it.
    pub name: String,
    pub role: Role,
    /// The user it acts for (a user's own accounts), if any.
    pub user: Option<String>,
}

/// Why a token could not be checked.
#[derive(Debug, thiserror::Error)]
#[error("the API tokens could not be read")]
pub struct TokenLookupError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Boxed future of a token lookup.
pub type Lookup<'a> =
    Pin<Box<dyn Future<Output = Result<Option<TokenRecord>, TokenLookupError>> + Send + 'a>>;

/// Where tokens are kept (the store).
pub trait ApiTokens: Send + Sync {
    /// The token with this hash, if it exists and is not revoked or expired.
    fn find<'a>(&'a self, hash: &'a TokenHash) -> Lookup<'a>;
}

/// The caller of a request, proven by its token (or, for the web UI's pages, by a
/// person's session: [`Caller::person`]).
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenRecord,
    /// An API token or a person of the web UI (for the audit log).
    pub kind: mailbridge_store::Actor,
    /// The client's address ("unknown" when the server was not given it).
    pub from: String,
}

impl Caller {
    /// A person of the web UI, signed in from `from`, as the caller of the same
    /// functions the API's handlers call: their role, and their name as the user
    /// whose accounts they own.
    pub fn person(user: &mailbridge_store::User, from: &str) -> Self {
        Self {
            token: TokenRecord {
                id: user.id.to_string(),
                name: user.name.clone(),
                role: user.role,
                user: Some(user.name.clone()),
            },
            kind: mailbridge_store::Actor::Person,
            from: from.to_owned(),
        }
    }

    /// `Ok` when the caller's role allows `action`, else the 403 to answer.
    pub fn require(&self, action: Action) -> Result<(), Problem> {
        if allowed(self.token.role, action) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "the token \"{}\" has the role {}, which may not {}",
                self.token.name,
                self.token.role.as_str(),
                describe(action)
            )))
        }
    }
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::ReadSystem => "read system settings",
        Action::Administer => "change system settings (an administrator's token is needed)",
        Action::ReadAccount { .. } => "read this account",
        Action::WriteAccount { .. } => "change this account",
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Problem::unauthenticated(
                "send an API token as Authorization: Bearer mbt_... (create one with `mailbridge token add`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| t.starts_with(PREFIX))
            .ok_or_else(|| {
                Problem::unauthenticated(
                    "the Authorization header is not \"Bearer mbt_...\" with a mailbridge API token",
                )
            })?;
        let hash = TokenHash::of(&SecretString::from(token.to_owned()));
        let from = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        match state.tokens.find(&hash).await {
            Ok(Some(record)) => Ok(Caller {
                token: record,
                kind: mailbridge_store::Actor::Token,
                from,
            }),
            Ok(None) => Err(Problem::unauthenticated(
                "this API token is not known to mailbridge (revoked, expired or mistyped)",
            )),
            Err(e) => {
                tracing::error!(error = %mailbridge_types::error_chain(&e), "API token lookup failed");
                Err(Problem::internal(None))
            }
        }
    }
}

/// Tokens held in memory, for tests of the HTTP layer and for embedding the API in
/// another program; the daemon keeps its tokens in the store.
#[derive(Debug, Default)]
pub struct MemoryTokens {
    tokens: std::sync::RwLock<std::collections::HashMap<TokenHash, TokenRecord>>,
}

impl MemoryTokens {
    /// Adds a token; returns it (shown once).
    pub fn add(
        &self,
        name: &str,
        role: Role,
        user: Option<&str>,
    ) -> Result<SecretString, getrandom::Error> {
        let token = generate()?;
        let record = TokenRecord {
            id: format!("tok-{}", self.tokens.read().map_or(0, |t| t.len()) + 1),
            name: name.to_owned(),
            role,
            user: user.map(str::to_owned),
        };
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.insert(TokenHash::of(&token), record);
        }
        Ok(token)
    }
}

impl ApiTokens for MemoryTokens {
    fn find<'a>(&'a self, hash: &'a TokenHash) -> Lookup<'a> {
        let found = self.tokens.read().ok().and_then(|t| t.get(hash).cloned());
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(a.expose_secret().starts_with(PREFIX));
        assert_eq!(a.expose_secret().len(), PREFIX.len() + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(TokenHash::of(&a), TokenHash::of(&b));
        assert_eq!(TokenHash::of(&a).as_str().len(), 64);
        // Debug shows neither the token nor the whole hash.
        assert!(!format!("{:?}", TokenHash::of(&a)).contains(TokenHash::of(&a).as_str()));
    }
}
