//! mailbridge-auth: signing in to Microsoft 365 and other OAuth2 providers.
//!
//! Parts (this step has the first one; flows, the token cache and SASL arrive next):
//! - [`diagnosis`]: every AADSTS code of the identity platform mapped to an
//!   [`ErrorClass`](mailbridge_types::ErrorClass), its cause, and the fix in the words
//!   of the Azure portal or Exchange Online PowerShell; and [`diagnosis::TokenError`],
//!   the parsed error answer of the token endpoint.

pub mod diagnosis;
