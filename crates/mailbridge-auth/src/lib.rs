//! mailbridge-auth: signing in to Microsoft 365 and other OAuth2 providers.
//!
//! Parts:
//! - [`authority`]: clouds, sign-in hosts and tenant segments (every host injectable);
//!   [`scopes`]: the scopes of each transport and grant, one resource per request.
//! - [`credential`]: client secrets and certificates (PS256 / RS256 client assertions).
//! - [`client`]: the token client: client credentials, authorization code + PKCE,
//!   refresh (with rotation), device code; [`token`]: token sets and [`token::AuthError`]
//!   with its [`ErrorClass`](mailbridge_types::ErrorClass).
//! - [`cache`]: the access-token cache (5-minute margin, `refresh_in`, single flight,
//!   bounded backoff); [`session`]: tokens per account with refresh-token rotation
//!   persisted through a [`session::TokenStore`], and "needs sign-in" marking;
//!   [`source`]: [`source::TokenSource`], what every transport holds instead of a
//!   token (an account's tokens from the sessions, refreshed before expiry and once
//!   after a 401, or a fixed token);
//!   [`interactive`]: PKCE, the loopback browser sign-in and paste-the-URL.
//! - [`claims`]: an access token's claims read without trusting them, to name the
//!   missing admin consent or the wrong scope.
//! - [`diagnosis`]: every AADSTS code of the identity platform mapped to an
//!   [`ErrorClass`](mailbridge_types::ErrorClass), its cause, and the fix in the words
//!   of the Azure portal or Exchange Online PowerShell; and [`diagnosis::TokenError`],
//!   the parsed error answer of the token endpoint.

pub mod authority;
pub mod cache;
pub mod claims;
pub mod client;
pub mod credential;
pub mod diagnosis;
pub mod interactive;
pub mod scopes;
pub mod session;
pub mod source;
pub mod token;
