//! Consent rules and the token answer (`microsoft-protocols.md` §1.4, §1.7, §1.8):
//! which delegated permissions a user has consented to, and minting access, refresh and
//! ID tokens for the delegated grants (authorization code, refresh token, device code).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use uuid::Uuid;

use super::Segment;
use super::errors;
use super::state::{RefreshToken, SignedIn};
use crate::aad::AadError;
use crate::crypto::{b64url, random_token, sha256};
use crate::emulator::Emulator;
use crate::model::{Api, AppRegistration, PermissionKind, TenantModel};
use crate::tokens::{Resource, ScopeSet, Subject, TokenGrant};

/// Delegated IMAP/POP/SMTP permissions are published by Microsoft Graph but grant the
/// Outlook resource: the portal lists them under either API.
const CROSS_API: [&str; 3] = ["IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send"];

/// The app's delegated permissions usable for `api`.
pub(crate) fn app_delegated(app: &AppRegistration, api: Api) -> BTreeSet<String> {
    app.permissions
        .iter()
        .filter(|p| {
            p.kind == PermissionKind::Delegated
                && (p.api == api || CROSS_API.contains(&p.value.as_str()))
        })
        .map(|p| p.value.clone())
        .collect()
}

/// The permission values requested for one resource, with `.default` expanded to the
/// app's listed delegated permissions.
pub(crate) fn expand(
    app: &AppRegistration,
    api: Api,
    values: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = values
        .iter()
        .filter(|v| *v != ".default")
        .cloned()
        .collect();
    if values.contains(".default") {
        out.extend(app_delegated(app, api));
    }
    out
}

/// Whether the user (UPN in the tenant `user_tenant`) may use delegated `value` of `api`
/// through `app`: admin consent in the app's home tenant, or the user's own consent.
pub(crate) fn consented(
    model: &TenantModel,
    user_tenant: Uuid,
    upn: &str,
    app: &AppRegistration,
    api: Api,
    value: &str,
) -> bool {
    let Some(tenant) = model.tenant(&user_tenant.to_string()) else {
        return false;
    };
    let home = tenant.app(&app.client_id.to_string()).is_some();
    if home && app.admin_consent_granted && app_delegated(app, api).contains(value) {
        return true;
    }
    tenant.user_consents.iter().any(|c| {
        c.client_id == app.client_id
            && c.user.eq_ignore_ascii_case(upn)
            && c.scopes.iter().any(|s| s.eq_ignore_ascii_case(value))
    })
}

/// Requested delegated permissions (all resources of `scope`) the user has not
/// consented to, as (API, value).
pub(crate) fn missing_consent(
    model: &TenantModel,
    user: &SignedIn,
    app: &AppRegistration,
    scope: &str,
) -> Vec<(Api, String)> {
    let set = ScopeSet::parse(scope);
    let mut missing = Vec::new();
    for (resource, values) in &set.resources {
        for v in expand(app, resource.api, values) {
            if !consented(model, user.tenant_id, &user.upn, app, resource.api, &v) {
                missing.push((resource.api, v));
            }
        }
    }
    missing
}

/// What a delegated grant needs to mint tokens.
#[derive(Debug, Clone)]
pub(crate) struct Delegated {
    pub client_id: Uuid,
    pub user: SignedIn,
    pub segment: Segment,
    /// The client is public (no credential).
    pub public: bool,
    /// `appidacr`: 0 public, 1 secret, 2 certificate.
    pub client_auth: u8,
    pub client_info: bool,
    pub nonce: Option<String>,
}

/// How to read a multi-resource `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MultiResource {
    /// AADSTS700022 (the request's own `scope` on /token).
    Reject,
    /// A token for the first resource (refresh, or the scope stored with a code).
    First,
}

fn scope_string(resource: &Resource, scp: &BTreeSet<String>, oidc: &BTreeSet<String>) -> String {
    let mut parts: Vec<String> = if resource.api == Api::Graph {
        scp.iter().cloned().collect()
    } else {
        scp.iter()
            .map(|v| format!("{}/{v}", resource.uri))
            .collect()
    };
    if resource.api == Api::Graph {
        for o in ["profile", "openid", "email"] {
            if oidc.contains(o) {
                parts.push(o.to_owned());
            }
        }
    }
    parts.join(" ")
}

/// Mints the token answer of a delegated grant, checking Conditional Access (the user's
/// tenant blocks the app: AADSTS53003), consent (AADSTS65001) and, with `check_mfa`,
/// that MFA has not been turned on since sign-in (AADSTS50076).
/// `always_refresh` returns a refresh token even without `offline_access` (refresh grant).
pub(crate) fn delegated_token(
    emulator: &Emulator,
    d: &Delegated,
    scope: &str,
    multi: MultiResource,
    check_mfa: bool,
    always_refresh: bool,
) -> Result<Value, AadError> {
    let set = ScopeSet::parse(scope);
    let directory = emulator.read(|m| d.segment.directory_name(m));
    if let Some(unknown) = set.unknown_resources.first() {
        return Err(errors::resource_not_found(unknown, &directory));
    }
    if multi == MultiResource::Reject && set.resources.len() > 1 {
        return Err(errors::multiple_resources());
    }
    let (resource, values) = set
        .resources
        .first()
        .cloned()
        .unwrap_or_else(|| (Resource::graph(), BTreeSet::new()));
    let now = emulator.now();
    let lifetime = emulator.knobs().access_token_lifetime_secs;

    let looked_up = emulator.read(|m| {
        let tenant = m.tenant(&d.user.tenant_id.to_string())?;
        let user = tenant.user(&d.user.upn)?.clone();
        let (_, app) = m.app(&d.client_id.to_string())?;
        let requested = expand(app, resource.api, &values);
        let missing: Vec<String> = requested
            .iter()
            .filter(|v| !consented(m, tenant.id, &user.upn, app, resource.api, v))
            .cloned()
            .collect();
        let mut scp = requested.clone();
        scp.extend(
            app_delegated(app, resource.api)
                .into_iter()
                .filter(|v| consented(m, tenant.id, &user.upn, app, resource.api, v)),
        );
        let blocked = tenant
            .conditional_access_blocked_apps
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&app.client_id.to_string()));
        Some((tenant.personal, user, app.clone(), missing, scp, blocked))
    });
    let Some((personal, user, app, missing, scp, blocked)) = looked_up else {
        return Err(errors::user_not_found(&d.user.upn, &directory));
    };
    if blocked {
        return Err(errors::conditional_access_blocked());
    }
    if !missing.is_empty() {
        return Err(errors::consent_required(
            &app.client_id.to_string(),
            &app.display_name,
        ));
    }
    if check_mfa && user.mfa_required && !d.user.mfa_done {
        return Err(errors::mfa_required(resource.api.app_id()));
    }

    let grant = TokenGrant {
        resource: resource.clone(),
        tenant_id: d.user.tenant_id,
        app_id: app.client_id,
        app_display_name: app.display_name.clone(),
        client_auth: d.client_auth,
        subject: Subject::User {
            object_id: user.object_id,
            upn: user.upn.clone(),
            name: user.display_name.clone(),
        },
        roles: BTreeSet::new(),
        scopes: scp.clone(),
        issued_at: now.unix_timestamp(),
        lifetime_secs: lifetime,
    };
    let access_token = emulator.issue_access_token(&grant, personal);
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope_string(&resource, &scp, &set.oidc),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    let Some(obj) = body.as_object_mut() else {
        return Ok(body);
    };
    if set.offline_access() || always_refresh {
        let rt = if personal {
            format!("M.C540_BAY.0.U.-{}", random_token(96))
        } else {
            format!("0.A{}", random_token(160))
        };
        emulator.identity_state().refresh_tokens.insert(
            rt.clone(),
            RefreshToken {
                client_id: app.client_id,
                user: d.user.clone(),
                segment: d.segment,
                scope: scope.to_owned(),
                public: d.public,
                issued: now,
                last_used: now,
                revoked: false,
            },
        );
        obj.insert("refresh_token".into(), json!(rt));
    }
    if set.oidc.contains("openid") {
        let pairwise = b64url(&sha256(
            format!("{}{}", user.object_id, app.client_id).as_bytes(),
        ));
        let iat = now.unix_timestamp();
        let mut claims = json!({
            "aud": app.client_id.to_string(),
            "iss": format!("{}/{}/v2.0", emulator.base_url(), d.user.tenant_id),
            "iat": iat,
            "nbf": iat,
            "exp": iat + 3600,
            "name": user.display_name,
            "oid": user.object_id.to_string(),
            "preferred_username": user.upn,
            "sub": pairwise,
            "tid": d.user.tenant_id.to_string(),
            "uti": random_token(16),
            "ver": "2.0",
        });
        if let Some(c) = claims.as_object_mut() {
            if let Some(n) = &d.nonce {
                c.insert("nonce".into(), json!(n));
            }
            if set.oidc.contains("email") {
                c.insert("email".into(), json!(user.upn));
            }
        }
        let key = emulator.signing_key();
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": key.kid});
        if let Ok(id_token) = key.sign_jwt(&header, &claims) {
            obj.insert("id_token".into(), json!(id_token));
        }
    }
    if d.client_info {
        let info = json!({"uid": user.object_id.to_string(), "utid": d.user.tenant_id.to_string()});
        obj.insert(
            "client_info".into(),
            json!(b64url(info.to_string().as_bytes())),
        );
    }
    Ok(body)
}
