//! Who may open which mailbox through Graph: bearer-token checks (§3.7's 401 texts),
//! `Mail.*` roles and scopes (§3), application access policies (§3.9) and licensing
//! (§8.2).
//!
//! <https://learn.microsoft.com/graph/permissions-reference>

use axum::http::{HeaderMap, StatusCode, header};

use super::errors::GraphError;
use crate::emulator::Emulator;
use crate::model::{AccessPolicyMode, Api, MailboxRight};
use crate::tokens::{AccessToken, TokenRejection};

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// List, get, `$value`, delta, attachments.
    Read,
    /// Mark read, move, delete, drafts, attachments.
    Write,
    /// `sendMail`, `messages/{id}/send`.
    Send,
}

impl Need {
    /// The app roles (or scopes) that allow this, on one's own mailbox.
    fn permissions(self) -> &'static [&'static str] {
        match self {
            Need::Read => &["Mail.Read", "Mail.ReadWrite"],
            Need::Write => &["Mail.ReadWrite"],
            Need::Send => &["Mail.Send"],
        }
    }

    /// Delegated scopes that allow this on another user's mailbox.
    fn shared_scopes(self) -> &'static [&'static str] {
        match self {
            Need::Read => &["Mail.Read.Shared", "Mail.ReadWrite.Shared"],
            Need::Write => &["Mail.ReadWrite.Shared"],
            Need::Send => &["Mail.Send.Shared"],
        }
    }
}

/// Which mailbox a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/me`.
    Me,
    /// `/users/{id | userPrincipalName}`.
    User(String),
}

/// A mailbox the caller may open.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The owner's UPN as the model spells it (the store's mailbox name).
    pub upn: String,
    pub display_name: String,
    pub object_id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    /// The segment that addressed it (`me` or the id/UPN used), for `@odata.context`.
    pub addressed_as: String,
}

/// Validates the bearer token of a request (signature, lifetime, audience).
pub fn authenticate(emulator: &Emulator, headers: &HeaderMap) -> Result<AccessToken, GraphError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ if value.is_empty() => "",
        _ => value,
    };
    if token.is_empty() {
        return Err(GraphError::invalid_token("Access token is empty."));
    }
    let opaque = token.starts_with("EwB");
    let access = emulator.validate_access_token(token).map_err(|r| match r {
        TokenRejection::Expired | TokenRejection::NotYetValid if opaque => {
            GraphError::invalid_token("CompactToken validation failed with reason code: 80049228.")
        }
        TokenRejection::Expired | TokenRejection::NotYetValid => {
            GraphError::invalid_token("Access token has expired or is not yet valid.")
        }
        TokenRejection::Malformed => {
            GraphError::invalid_token("CompactToken parsing failed with error code: 80049217")
        }
        TokenRejection::BadSignature => {
            GraphError::invalid_token("Access token validation failure.")
        }
    })?;
    if access.api != Api::Graph {
        return Err(GraphError::invalid_token(
            "Access token validation failure. Invalid audience.",
        ));
    }
    Ok(access)
}

/// True when an Exchange-side rule made at `added_at` is in force.
fn effective(emulator: &Emulator, added_at: Option<time::OffsetDateTime>) -> bool {
    emulator.exchange_change_effective(added_at)
}

/// Resolves the addressed mailbox and checks that the token may do `need` there.
pub fn open_mailbox(
    emulator: &Emulator,
    token: &AccessToken,
    target: &Target,
    need: Need,
) -> Result<Mailbox, GraphError> {
    let user_key = match target {
        Target::Me => {
            let Some(upn) = token.upn() else {
                return Err(GraphError::bad_request(
                    "/me request is only valid with delegated authentication flow.",
                ));
            };
            upn.to_owned()
        }
        Target::User(id) => id.clone(),
    };
    // Pending changes are judged against the model as it is now; the propagation
    // delay knob decides whether Exchange-side rules already apply.
    let snapshot = emulator.read(|model| {
        let tenant = model.tenant(&token.tenant_id.to_string())?;
        let user = tenant.user_by_id_or_upn(&user_key)?;
        let own = user.object_id == token.object_id();
        let right = if need == Need::Send {
            MailboxRight::SendAs
        } else {
            MailboxRight::FullAccess
        };
        let delegated_right = tenant.mailbox_permissions.iter().any(|p| {
            p.right == right
                && p.mailbox.eq_ignore_ascii_case(&user.upn)
                && token
                    .upn()
                    .is_some_and(|upn| p.trustee.eq_ignore_ascii_case(upn))
                && effective(emulator, p.added_at)
        });
        let policies: Vec<(AccessPolicyMode, bool)> = tenant
            .access_policies
            .iter()
            .filter(|p| p.app_id == token.app_id && effective(emulator, p.added_at))
            .map(|p| {
                (
                    p.mode,
                    p.mailboxes
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(&user.upn)),
                )
            })
            .collect();
        Some((
            Mailbox {
                upn: user.upn.clone(),
                display_name: user.display_name.clone(),
                object_id: user.object_id,
                tenant_id: tenant.id,
                addressed_as: match target {
                    Target::Me => "me".to_owned(),
                    Target::User(id) => id.clone(),
                },
            },
            own,
            delegated_right,
            policies,
            user.mailbox.licensed,
        ))
    });
    let permitted = |names: &[&str]| names.iter().any(|p| token.has_permission(p));
    if token.is_app_only() {
        if !permitted(need.permissions()) {
            return Err(GraphError::access_denied());
        }
    } else if !permitted(need.permissions()) && !permitted(need.shared_scopes()) {
        return Err(GraphError::access_denied());
    }
    let Some((mailbox, own, delegated_right, policies, licensed)) = snapshot else {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
            format!("The requested user '{user_key}' is invalid."),
        ));
    };
    if token.is_app_only() {
        let denied = policies
            .iter()
            .any(|(mode, listed)| *mode == AccessPolicyMode::DenyAccess && *listed);
        let restricted = policies
            .iter()
            .any(|(mode, _)| *mode == AccessPolicyMode::RestrictAccess);
        let allowed = policies
            .iter()
            .any(|(mode, listed)| *mode == AccessPolicyMode::RestrictAccess && *listed);
        if denied || (restricted && !allowed) {
            return Err(GraphError::odata_disabled());
        }
    } else if !own && need == Need::Send && !delegated_right {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorSendAsDenied",
            "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account.",
        ));
    } else if !own && (!delegated_right || !permitted(need.shared_scopes())) {
        return Err(GraphError::access_denied());
    }
    if !licensed {
        return Err(GraphError::new(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    }
    Ok(mailbox)
}
