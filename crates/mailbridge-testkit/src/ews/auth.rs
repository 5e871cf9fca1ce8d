//! Who is calling EWS and which mailboxes they may open (`microsoft-protocols.md` §4.1,
//! §4.7, §4.9 and the EWS column of §8.2).
//!
//! - Bearer tokens are validated with [`Emulator::validate_access_token`]; a bad one is
//!   answered with HTTP 401, the `WWW-Authenticate: Bearer …` challenge and an
//!   `x-ms-diagnostics` reason (2000001 signature, 2000003 audience, 2000004 tenant,
//!   2000005 expiry, 2000008 no permissions).
//! - App-only tokens need the `full_access_as_app` role and the `ExchangeImpersonation`
//!   header; the impersonated mailbox is then checked against the application access
//!   policies. Delegated tokens need `EWS.AccessAsUser.All` and open the user's own
//!   mailbox, or one the user has FullAccess on.
//! - `Set-OrganizationConfig` switches (`Tenant::ews`): EWS off, or the app outside the
//!   EWS allow list / on the block list, is `ErrorAccessDenied` (HTTP 403).
//! - Basic authentication works only for a tenant with `basic_auth_enabled` (an
//!   on-premises-style Exchange); Exchange Online answers 401.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

use super::soap::{ConnectingSid, Fault, ItemError};
use crate::emulator::Emulator;
use crate::model::{AccessPolicyMode, Api, EwsAppPolicy, MailboxRight};
use crate::tokens::{AccessToken, TokenRejection};

/// The application permission app-only EWS needs.
pub const FULL_ACCESS_AS_APP: &str = "full_access_as_app";
/// The delegated scope EWS needs.
pub const EWS_ACCESS_AS_USER: &str = "EWS.AccessAsUser.All";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An app-only token.
    App { tenant_id: Uuid, app_id: Uuid },
    /// A delegated token.
    Delegated {
        tenant_id: Uuid,
        app_id: Uuid,
        upn: String,
    },
    /// Basic authentication (on-premises-style tenants only).
    Basic { tenant_id: Uuid, upn: String },
}

/// The 401 answer for a bearer token Exchange does not accept.
fn unauthorized(emulator: &Emulator, diagnostics: Option<String>) -> Response {
    let base = emulator.base_url();
    let mut challenge = format!(
        r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="{base}/common/oauth2/authorize""#
    );
    if diagnostics.is_some() {
        challenge.push_str(r#", error="invalid_token""#);
    }
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    if let Some(d) = diagnostics.and_then(|d| HeaderValue::from_str(&d).ok()) {
        headers.insert("x-ms-diagnostics", d);
    }
    response
}

/// `x-ms-diagnostics` for a token that did not validate.
fn rejection_diagnostics(rejection: TokenRejection) -> String {
    match rejection {
        TokenRejection::Malformed | TokenRejection::BadSignature => {
            r#"2000001;reason="The token has invalid signature.";error_category="invalid_signature""#
                .to_owned()
        }
        TokenRejection::Expired => {
            r#"2000005;reason="The token has expired";error_category="invalid_token""#.to_owned()
        }
        TokenRejection::NotYetValid => {
            r#"2000005;reason="The token is not yet valid";error_category="invalid_token""#
                .to_owned()
        }
    }
}

const NO_PERMISSIONS: &str = r#"2000008;reason="The token contains no permissions, or permissions can not be understood.";error_category="invalid_grant""#;

/// Authenticates a request from its `Authorization` header.
pub fn authenticate(emulator: &Emulator, headers: &HeaderMap) -> Result<Caller, Box<Response>> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Box::new(unauthorized(emulator, None)));
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return basic(emulator, credentials.trim());
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Box::new(unauthorized(emulator, None)));
    }
    let token = emulator
        .validate_access_token(credentials.trim())
        .map_err(|r| Box::new(unauthorized(emulator, Some(rejection_diagnostics(r)))))?;
    check_token(emulator, &token).map_err(|d| Box::new(unauthorized(emulator, Some(d))))
}

fn check_token(emulator: &Emulator, token: &AccessToken) -> Result<Caller, String> {
    if token.api != Api::ExchangeOnline {
        return Err(format!(
            r#"2000003;reason="The audience claim value is invalid '{}'.";error_category="invalid_resource""#,
            token.audience
        ));
    }
    let tenant_id = token.tenant_id;
    if !emulator.read(|m| m.tenant(&tenant_id.to_string()).is_some()) {
        return Err(format!(
            r#"2000004;reason="The tenant for tenant guid '{tenant_id}' does not exist.";error_category="invalid_tenant""#
        ));
    }
    match token.upn() {
        None if token.roles.contains(FULL_ACCESS_AS_APP) => Ok(Caller::App {
            tenant_id,
            app_id: token.app_id,
        }),
        Some(upn) if token.scopes.contains(EWS_ACCESS_AS_USER) => Ok(Caller::Delegated {
            tenant_id,
            app_id: token.app_id,
            upn: upn.to_owned(),
        }),
        _ => Err(NO_PERMISSIONS.to_owned()),
    }
}

fn basic(emulator: &Emulator, credentials: &str) -> Result<Caller, Box<Response>> {
    let refused = || {
        let mut response = unauthorized(emulator, None);
        let realm = emulator
            .base_url()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned();
        if let Ok(v) = HeaderValue::from_str(&format!(r#"Basic realm="{realm}""#)) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
        response
    };
    let decoded = STANDARD
        .decode(credentials)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(Box::new(refused()));
    };
    let found = emulator.read(|m| {
        m.user(user).and_then(|(tenant, u)| {
            (tenant.basic_auth_enabled && u.password == password)
                .then(|| (tenant.id, u.upn.clone()))
        })
    });
    match found {
        Some((tenant_id, upn)) => Ok(Caller::Basic { tenant_id, upn }),
        None => Err(Box::new(refused())),
    }
}

/// What an authenticated, authorised request may touch.
#[derive(Debug, Clone)]
pub struct Access {
    pub caller: Caller,
    /// The mailbox the request acts as: the impersonated one (app-only) or the user's.
    pub mailbox: String,
}

/// A mailbox a caller asked for and how it looks in the model.
struct MailboxFacts {
    exists: bool,
    licensed: bool,
    ews_enabled: bool,
    upn: String,
}

fn mailbox_facts(emulator: &Emulator, tenant_id: Uuid, address: &str) -> MailboxFacts {
    emulator.read(|m| {
        let user = m
            .tenant(&tenant_id.to_string())
            .and_then(|t| t.user(address));
        MailboxFacts {
            exists: user.is_some(),
            licensed: user.is_some_and(|u| u.mailbox.licensed),
            ews_enabled: user.is_some_and(|u| u.mailbox.ews_enabled),
            upn: user.map_or_else(|| address.to_owned(), |u| u.upn.clone()),
        }
    })
}

/// Checks a mailbox exists, has a licence and EWS on.
fn usable_mailbox(emulator: &Emulator, tenant_id: Uuid, address: &str) -> Result<String, Fault> {
    let facts = mailbox_facts(emulator, tenant_id, address);
    if !facts.exists || !facts.licensed {
        return Err(Fault::new("ErrorNonExistentMailbox"));
    }
    if !facts.ews_enabled {
        // `Set-CASMailbox -EwsEnabled $false`: ErrorAccessDenied, HTTP 403 (§4.9).
        let mut fault = Fault::new("ErrorAccessDenied");
        fault.status = StatusCode::FORBIDDEN;
        return Err(fault);
    }
    Ok(facts.upn)
}

/// Whether the application access policies let `app_id` open `mailbox`.
fn policy_allows(emulator: &Emulator, tenant_id: Uuid, app_id: Uuid, mailbox: &str) -> bool {
    let policies = emulator.read(|m| {
        m.tenant(&tenant_id.to_string())
            .map(|t| {
                t.access_policies
                    .iter()
                    .filter(|p| p.app_id == app_id)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    policies
        .iter()
        .filter(|p| emulator.exchange_change_effective(p.added_at))
        .all(|p| {
            let listed = p.mailboxes.iter().any(|m| m.eq_ignore_ascii_case(mailbox));
            match p.mode {
                AccessPolicyMode::RestrictAccess => listed,
                AccessPolicyMode::DenyAccess => !listed,
            }
        })
}

/// Whether `trustee` holds an effective FullAccess permission on `mailbox`.
fn has_full_access(emulator: &Emulator, tenant_id: Uuid, mailbox: &str, trustee: &str) -> bool {
    let grants = emulator.read(|m| {
        m.tenant(&tenant_id.to_string())
            .map(|t| {
                t.mailbox_permissions
                    .iter()
                    .filter(|p| {
                        p.right == MailboxRight::FullAccess
                            && p.mailbox.eq_ignore_ascii_case(mailbox)
                            && p.trustee.eq_ignore_ascii_case(trustee)
                    })
                    .map(|p| p.added_at)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    grants
        .into_iter()
        .any(|at| emulator.exchange_change_effective(at))
}

/// Whether `trustee` holds an effective SendAs permission on `mailbox`.
pub fn has_send_as(emulator: &Emulator, tenant_id: Uuid, mailbox: &str, trustee: &str) -> bool {
    let grants = emulator.read(|m| {
        m.tenant(&tenant_id.to_string())
            .map(|t| {
                t.mailbox_permissions
                    .iter()
                    .filter(|p| {
                        p.right == MailboxRight::SendAs
                            && p.mailbox.eq_ignore_ascii_case(mailbox)
                            && p.trustee.eq_ignore_ascii_case(trustee)
                    })
                    .map(|p| p.added_at)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    grants
        .into_iter()
        .any(|at| emulator.exchange_change_effective(at))
}

/// `Set-OrganizationConfig` EWS switches: EWS off for the organisation, or the app not
/// allowed by the allow/block list, is `ErrorAccessDenied` with HTTP 403 (§4.9).
fn organization_allows(emulator: &Emulator, caller: &Caller) -> Result<(), Fault> {
    let (tenant_id, app_id) = match caller {
        Caller::App { tenant_id, app_id }
        | Caller::Delegated {
            tenant_id, app_id, ..
        } => (*tenant_id, Some(*app_id)),
        Caller::Basic { tenant_id, .. } => (*tenant_id, None),
    };
    let config = emulator.read(|m| m.tenant(&tenant_id.to_string()).map(|t| t.ews.clone()));
    let Some(config) = config else {
        return Ok(());
    };
    let app_allowed = match (config.app_policy, app_id) {
        (Some(EwsAppPolicy::EnforceAllowList), Some(app)) => config.allowed_app_ids.contains(&app),
        (Some(EwsAppPolicy::EnforceBlockList), Some(app)) => !config.blocked_app_ids.contains(&app),
        _ => true,
    };
    if config.enabled == Some(false) || !app_allowed {
        let mut fault = Fault::new("ErrorAccessDenied");
        fault.status = StatusCode::FORBIDDEN;
        return Err(fault);
    }
    Ok(())
}

/// Decides which mailbox a request acts on, from the caller, the impersonation header
/// and `X-AnchorMailbox`.
pub fn resolve(
    emulator: &Emulator,
    caller: Caller,
    impersonation: Option<&ConnectingSid>,
    headers: &HeaderMap,
) -> Result<Access, Fault> {
    organization_allows(emulator, &caller)?;
    match &caller {
        Caller::App { tenant_id, app_id } => {
            let Some(sid) = impersonation else {
                return Err(Fault::new("ErrorInvalidExchangeImpersonationHeaderData"));
            };
            let ConnectingSid::Address(address) = sid else {
                return Err(Fault::new("ErrorNonExistentMailbox"));
            };
            let anchor = headers
                .get("x-anchormailbox")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            if anchor.is_none() && emulator.knobs().ews_require_anchor_mailbox {
                return Err(Fault::new("ErrorNoRespondingCASInDestinationSite"));
            }
            let mailbox = usable_mailbox(emulator, *tenant_id, address)?;
            if !policy_allows(emulator, *tenant_id, *app_id, &mailbox) {
                return Err(Fault::new("ErrorAccessDenied"));
            }
            Ok(Access { caller, mailbox })
        }
        Caller::Delegated { tenant_id, upn, .. } => {
            if impersonation.is_some() {
                return Err(Fault::with_message(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    "ExchangeImpersonation SOAP header must not exist for this type of OAuth token.",
                ));
            }
            let mailbox = usable_mailbox(emulator, *tenant_id, upn)?;
            Ok(Access { caller, mailbox })
        }
        Caller::Basic { tenant_id, upn } => {
            let mailbox = match impersonation {
                None => upn.clone(),
                // ApplicationImpersonation is not modelled for users.
                Some(ConnectingSid::Address(a)) if a.eq_ignore_ascii_case(upn) => upn.clone(),
                Some(_) => return Err(Fault::new("ErrorImpersonateUserDenied")),
            };
            let mailbox = usable_mailbox(emulator, *tenant_id, &mailbox)?;
            Ok(Access { caller, mailbox })
        }
    }
}

impl Access {
    /// The tenant of the caller.
    pub fn tenant_id(&self) -> Uuid {
        match &self.caller {
            Caller::App { tenant_id, .. }
            | Caller::Delegated { tenant_id, .. }
            | Caller::Basic { tenant_id, .. } => *tenant_id,
        }
    }

    /// The user behind a delegated or Basic caller.
    pub fn user(&self) -> Option<&str> {
        match &self.caller {
            Caller::Delegated { upn, .. } | Caller::Basic { upn, .. } => Some(upn),
            Caller::App { .. } => None,
        }
    }

    /// Checks the caller may open `mailbox` (an explicit `<t:Mailbox>` or the mailbox of
    /// an item id); its canonical address.
    pub fn open(&self, emulator: &Emulator, mailbox: &str) -> Result<String, ItemError> {
        if mailbox.eq_ignore_ascii_case(&self.mailbox) {
            return Ok(self.mailbox.clone());
        }
        let facts = mailbox_facts(emulator, self.tenant_id(), mailbox);
        if !facts.exists || !facts.licensed {
            return Err(ItemError::new("ErrorNonExistentMailbox"));
        }
        let allowed = self
            .user()
            .is_some_and(|u| has_full_access(emulator, self.tenant_id(), &facts.upn, u));
        if allowed && facts.ews_enabled {
            Ok(facts.upn)
        } else {
            Err(ItemError::new("ErrorAccessDenied"))
        }
    }
}
