//! Exchange Online's rules for IMAP, POP and SMTP AUTH, as plain functions over the
//! tenant model and a validated access token (`microsoft-protocols.md` §2.2-2.7, §5.2-5.6).
//!
//! Each denial names its cause ([`Denial`]) so tests can assert *why*; what the client
//! sees is Exchange's deliberately vague text ([`client_text`]).

use time::OffsetDateTime;

use crate::model::{Api, MailboxRight, Tenant, TenantModel, User};
use crate::tokens::{AccessToken, Subject, TokenRejection};

/// The host name Exchange puts in brackets at the end of its SMTP replies.
pub const FRONTEND_HOST: &str = "SN4PR0501CA0123.namprd05.prod.outlook.com";

/// The protocol a credential is presented to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Imap,
    Pop3,
    Smtp,
}

impl Service {
    /// From Dovecot's `service` field (`imap`, `pop3`, `smtp`, `submission`).
    pub fn from_dovecot(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "imap" => Some(Self::Imap),
            "pop3" => Some(Self::Pop3),
            "smtp" | "submission" => Some(Self::Smtp),
            _ => None,
        }
    }

    /// `imap`, `pop3` or `smtp`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
            Self::Smtp => "smtp",
        }
    }

    /// The delegated scope a user token needs.
    pub fn delegated_scope(self) -> &'static str {
        match self {
            Self::Imap => "IMAP.AccessAsUser.All",
            Self::Pop3 => "POP.AccessAsUser.All",
            Self::Smtp => "SMTP.Send",
        }
    }

    /// The application role an app-only token needs.
    pub fn app_role(self) -> &'static str {
        match self {
            Self::Imap => "IMAP.AccessAsApp",
            Self::Pop3 => "POP.AccessAsApp",
            Self::Smtp => "SMTP.SendAsApp",
        }
    }
}

/// Who authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user (delegated token or password), by UPN.
    User(String),
    /// An application (app-only token): client id and the enterprise-app object id.
    App {
        app_id: uuid::Uuid,
        service_principal_id: uuid::Uuid,
    },
    /// The emulator's own mail store.
    Store,
}

impl Principal {
    /// A stable text form for the request log (`user:alice@…`, `app:<client id>`, `store`).
    pub fn label(&self) -> String {
        match self {
            Self::User(upn) => format!("user:{}", upn.to_ascii_lowercase()),
            Self::App {
                app_id,
                service_principal_id,
            } => format!("app:{app_id}:{service_principal_id}"),
            Self::Store => "store".to_owned(),
        }
    }

    /// Reads [`Principal::label`] back.
    pub fn from_label(label: &str) -> Option<Self> {
        if label == "store" {
            return Some(Self::Store);
        }
        if let Some(upn) = label.strip_prefix("user:") {
            return Some(Self::User(upn.to_owned()));
        }
        let rest = label.strip_prefix("app:")?;
        let (app, sp) = rest.split_once(':')?;
        Some(Self::App {
            app_id: uuid::Uuid::parse_str(app).ok()?,
            service_principal_id: uuid::Uuid::parse_str(sp).ok()?,
        })
    }

    /// Whether a mailbox-permission trustee names this principal (UPN for users; app id
    /// or service-principal object id for apps).
    fn is_trustee(&self, trustee: &str) -> bool {
        match self {
            Self::User(upn) => trustee.eq_ignore_ascii_case(upn),
            Self::App {
                app_id,
                service_principal_id,
            } => {
                trustee.eq_ignore_ascii_case(&app_id.to_string())
                    || trustee.eq_ignore_ascii_case(&service_principal_id.to_string())
            }
            Self::Store => false,
        }
    }
}

/// Why Exchange refuses (the judge logs it; the client only sees [`client_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Signature, expiry or format.
    TokenInvalid(TokenRejection),
    /// The token is for Microsoft Graph (or another API), not Exchange Online.
    WrongAudience(String),
    /// The token's tenant is not in the model.
    UnknownTenant,
    /// `user=` names no mailbox of the token's tenant.
    MailboxNotFound,
    /// The mailbox has no Exchange Online licence.
    Unlicensed,
    /// Delegated token without the service's scope.
    MissingScope(&'static str),
    /// App-only token without the service's role (admin consent missing or wrong API).
    MissingRole(&'static str),
    /// `New-ServicePrincipal` was never run for the app.
    ServicePrincipalMissing,
    /// `New-ServicePrincipal` was run with the app registration's object id (or another
    /// wrong one) instead of the enterprise application's.
    ServicePrincipalWrongObjectId,
    /// A needed Exchange change was made but has not propagated yet.
    NotYetEffective(&'static str),
    /// No FullAccess on the mailbox for this principal.
    NoFullAccess,
    ImapDisabled,
    PopDisabled,
    SmtpAuthDisabledForTenant,
    SmtpAuthDisabledForMailbox,
    /// Password authentication on a tenant where Basic auth is off (Exchange Online).
    BasicAuthDisabled,
    /// Wrong password (Basic auth tenants).
    BadPassword,
    /// A mechanism Exchange does not take for this credential.
    UnsupportedMechanism(String),
}

impl Denial {
    /// A short stable code for tests (`no-full-access`, `missing-role`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenInvalid(TokenRejection::Expired) => "token-expired",
            Self::TokenInvalid(_) => "token-invalid",
            Self::WrongAudience(_) => "wrong-audience",
            Self::UnknownTenant => "unknown-tenant",
            Self::MailboxNotFound => "mailbox-not-found",
            Self::Unlicensed => "mailbox-unlicensed",
            Self::MissingScope(_) => "missing-scope",
            Self::MissingRole(_) => "missing-role",
            Self::ServicePrincipalMissing => "service-principal-missing",
            Self::ServicePrincipalWrongObjectId => "service-principal-wrong-object-id",
            Self::NotYetEffective(_) => "not-yet-effective",
            Self::NoFullAccess => "no-full-access",
            Self::ImapDisabled => "imap-disabled",
            Self::PopDisabled => "pop-disabled",
            Self::SmtpAuthDisabledForTenant => "smtp-auth-disabled-tenant",
            Self::SmtpAuthDisabledForMailbox => "smtp-auth-disabled-mailbox",
            Self::BasicAuthDisabled => "basic-auth-disabled",
            Self::BadPassword => "bad-password",
            Self::UnsupportedMechanism(_) => "unsupported-mechanism",
        }
    }

    /// What an administrator would read in a diagnostic log.
    pub fn explain(&self) -> String {
        match self {
            Self::TokenInvalid(r) => format!("access token rejected: {r}"),
            Self::WrongAudience(aud) => format!(
                "access token audience is {aud}, not Office 365 Exchange Online (request https://outlook.office.com/... scopes)"
            ),
            Self::UnknownTenant => "access token is for a tenant the emulator does not know".to_owned(),
            Self::MailboxNotFound => "user= names no mailbox in the token's tenant".to_owned(),
            Self::Unlicensed => "the mailbox has no Exchange Online licence".to_owned(),
            Self::MissingScope(s) => format!("delegated token lacks the {s} scope"),
            Self::MissingRole(r) => format!(
                "app-only token lacks the {r} role (add it under Office 365 Exchange Online and grant admin consent)"
            ),
            Self::ServicePrincipalMissing => {
                "the app's service principal is not registered in Exchange (New-ServicePrincipal)".to_owned()
            }
            Self::ServicePrincipalWrongObjectId => "New-ServicePrincipal was run with the wrong ObjectId (use the Enterprise applications object id, not the App registrations one)".to_owned(),
            Self::NotYetEffective(what) => format!("{what} has not propagated yet"),
            Self::NoFullAccess => "no FullAccess permission on the mailbox (Add-MailboxPermission)".to_owned(),
            Self::ImapDisabled => "IMAP is disabled for the mailbox (Set-CASMailbox -ImapEnabled $false)".to_owned(),
            Self::PopDisabled => "POP is disabled for the mailbox (Set-CASMailbox -PopEnabled $false)".to_owned(),
            Self::SmtpAuthDisabledForTenant => "SMTP AUTH is disabled for the tenant (Set-TransportConfig -SmtpClientAuthenticationDisabled $true)".to_owned(),
            Self::SmtpAuthDisabledForMailbox => "SMTP AUTH is disabled for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $true)".to_owned(),
            Self::BasicAuthDisabled => "Basic authentication (password) is disabled in Exchange Online".to_owned(),
            Self::BadPassword => "the user credentials were incorrect".to_owned(),
            Self::UnsupportedMechanism(m) => format!("mechanism {m} is not accepted"),
        }
    }
}

/// The text the client sees for a denial, as Exchange words it for `service`.
///
/// Dovecot and Postfix add their own framing around it (see `docs/testkit-mail.md`).
pub fn client_text(service: Service, denial: &Denial, password: bool) -> String {
    match service {
        Service::Imap if password => "LOGIN failed.".to_owned(),
        Service::Imap => "AUTHENTICATE failed.".to_owned(),
        Service::Pop3 => "Authentication failure: unknown user name or bad password.".to_owned(),
        Service::Smtp => match denial {
            Denial::SmtpAuthDisabledForTenant => format!(
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [{FRONTEND_HOST}]"
            ),
            Denial::SmtpAuthDisabledForMailbox => format!(
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. [{FRONTEND_HOST}]"
            ),
            Denial::BasicAuthDisabled => format!(
                "5.7.139 Authentication unsuccessful, basic authentication is disabled. [{FRONTEND_HOST}]"
            ),
            Denial::BadPassword => format!(
                "5.7.139 Authentication unsuccessful, the user credentials were incorrect. [{FRONTEND_HOST}]"
            ),
            _ => format!("5.7.3 Authentication unsuccessful [{FRONTEND_HOST}]"),
        },
    }
}

/// Context for a judgement: the model plus the propagation check.
pub struct Context<'a> {
    pub model: &'a TenantModel,
    /// Whether an Exchange-side change stamped `added_at` has taken effect
    /// ([`crate::Emulator::exchange_change_effective`]).
    pub effective: &'a dyn Fn(Option<OffsetDateTime>) -> bool,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

fn mailbox<'m>(
    model: &'m TenantModel,
    tenant_id: Option<uuid::Uuid>,
    user: &str,
) -> Result<(&'m Tenant, &'m User), Denial> {
    let (tenant, mailbox) = model.user(user).ok_or(Denial::MailboxNotFound)?;
    if tenant_id.is_some_and(|tid| tid != tenant.id) {
        return Err(Denial::MailboxNotFound);
    }
    if !mailbox.mailbox.licensed {
        return Err(Denial::Unlicensed);
    }
    Ok((tenant, mailbox))
}

fn protocol_enabled(tenant: &Tenant, mailbox: &User, service: Service) -> Result<(), Denial> {
    match service {
        Service::Imap if !mailbox.mailbox.imap_enabled => Err(Denial::ImapDisabled),
        Service::Pop3 if !mailbox.mailbox.pop_enabled => Err(Denial::PopDisabled),
        Service::Smtp => match mailbox.mailbox.smtp_auth_disabled {
            Some(true) => Err(Denial::SmtpAuthDisabledForMailbox),
            None if tenant.smtp_auth_disabled => Err(Denial::SmtpAuthDisabledForTenant),
            Some(false) | None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Whether `principal` holds `right` on `mailbox` (taking propagation into account).
pub fn has_mailbox_right(
    ctx: &Context<'_>,
    tenant: &Tenant,
    mailbox: &str,
    principal: &Principal,
    right: MailboxRight,
) -> Result<(), Denial> {
    let mut pending = false;
    for p in &tenant.mailbox_permissions {
        if p.right == right
            && p.mailbox.eq_ignore_ascii_case(mailbox)
            && principal.is_trustee(&p.trustee)
        {
            if (ctx.effective)(p.added_at) {
                return Ok(());
            }
            pending = true;
        }
    }
    Err(if pending {
        Denial::NotYetEffective("the mailbox permission")
    } else {
        Denial::NoFullAccess
    })
}

/// Judges a bearer token (XOAUTH2, OAUTHBEARER) presented for mailbox `user` over
/// `service`. The token must already have passed signature and lifetime checks.
pub fn judge_token(
    ctx: &Context<'_>,
    token: &AccessToken,
    user: &str,
    service: Service,
) -> Result<Principal, Denial> {
    if token.api != Api::ExchangeOnline {
        return Err(Denial::WrongAudience(token.audience.clone()));
    }
    let tenant = ctx
        .model
        .tenants
        .iter()
        .find(|t| t.id == token.tenant_id)
        .ok_or(Denial::UnknownTenant)?;
    let (_, mailbox) = mailbox(ctx.model, Some(tenant.id), user)?;
    protocol_enabled(tenant, mailbox, service)?;
    match &token.subject {
        Subject::User { upn, .. } => {
            if !token.scopes.contains(service.delegated_scope()) {
                return Err(Denial::MissingScope(service.delegated_scope()));
            }
            let principal = Principal::User(upn.clone());
            if !upn.eq_ignore_ascii_case(&mailbox.upn) {
                has_mailbox_right(
                    ctx,
                    tenant,
                    &mailbox.upn,
                    &principal,
                    MailboxRight::FullAccess,
                )?;
            }
            Ok(principal)
        }
        Subject::App {
            service_principal_id,
        } => {
            if !token.roles.contains(service.app_role()) {
                return Err(Denial::MissingRole(service.app_role()));
            }
            let registered: Vec<_> = tenant
                .exchange_service_principals
                .iter()
                .filter(|sp| sp.app_id == token.app_id)
                .collect();
            if registered.is_empty() {
                return Err(Denial::ServicePrincipalMissing);
            }
            let right_one: Vec<_> = registered
                .iter()
                .filter(|sp| sp.object_id == *service_principal_id)
                .collect();
            if right_one.is_empty() {
                return Err(Denial::ServicePrincipalWrongObjectId);
            }
            if !right_one.iter().any(|sp| (ctx.effective)(sp.added_at)) {
                return Err(Denial::NotYetEffective("New-ServicePrincipal"));
            }
            let principal = Principal::App {
                app_id: token.app_id,
                service_principal_id: *service_principal_id,
            };
            has_mailbox_right(
                ctx,
                tenant,
                &mailbox.upn,
                &principal,
                MailboxRight::FullAccess,
            )?;
            Ok(principal)
        }
    }
}

/// Judges a password (PLAIN, LOGIN): refused unless the tenant allows Basic auth.
pub fn judge_password(
    ctx: &Context<'_>,
    user: &str,
    password: &str,
    service: Service,
) -> Result<Principal, Denial> {
    let (tenant, mailbox) = mailbox(ctx.model, None, user)?;
    if !tenant.basic_auth_enabled {
        return Err(Denial::BasicAuthDisabled);
    }
    if !constant_time_eq(password.as_bytes(), mailbox.password.as_bytes()) {
        return Err(Denial::BadPassword);
    }
    protocol_enabled(tenant, mailbox, service)?;
    Ok(Principal::User(mailbox.upn.clone()))
}

/// Whether `principal`, authenticated for mailbox `authenticated`, may use `sender` as
/// `MAIL FROM`: its own mailbox always; another only with SendAs on it.
pub fn may_send_as(
    ctx: &Context<'_>,
    principal: &Principal,
    authenticated: &str,
    sender: &str,
) -> Result<(), Denial> {
    if sender.is_empty()
        || sender.eq_ignore_ascii_case(authenticated)
        || *principal == Principal::Store
    {
        return Ok(());
    }
    let Some((tenant, _)) = ctx.model.user(sender) else {
        return Err(Denial::MailboxNotFound);
    };
    has_mailbox_right(ctx, tenant, sender, principal, MailboxRight::SendAs)
}

/// Compares secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::{AppRegistration, ExchangeServicePrincipal, PermissionKind, User};
    use crate::tokens::{Resource, TokenGrant};

    fn always(_: Option<OffsetDateTime>) -> bool {
        true
    }

    fn never(at: Option<OffsetDateTime>) -> bool {
        at.is_none()
    }

    struct World {
        model: TenantModel,
        app: AppRegistration,
    }

    fn world() -> World {
        let app = AppRegistration::new("Connector")
            .with_permission(
                Api::ExchangeOnline,
                PermissionKind::Application,
                "IMAP.AccessAsApp",
            )
            .consented();
        let tenant = Tenant::new("Contoso", "contoso.example")
            .with_user(User::new("alice@contoso.example", "Alice", "pw"))
            .with_user(User::new("shared@contoso.example", "Shared", "pw"))
            .with_app(app.clone())
            .with_exchange_service_principal(&app)
            .with_mailbox_permission(
                "alice@contoso.example",
                &app.service_principal_id.to_string(),
                MailboxRight::FullAccess,
            );
        World {
            model: TenantModel::builder().tenant(tenant).build().unwrap(),
            app,
        }
    }

    fn token(w: &World, api: Api, subject: Subject, perms: &[&str]) -> AccessToken {
        let perms: BTreeSet<String> = perms.iter().map(|p| (*p).to_owned()).collect();
        let app_only = matches!(subject, Subject::App { .. });
        let grant = TokenGrant {
            resource: if api == Api::Graph {
                Resource::graph()
            } else {
                Resource::exchange()
            },
            tenant_id: w.model.tenants[0].id,
            app_id: w.app.client_id,
            app_display_name: w.app.display_name.clone(),
            client_auth: 1,
            subject,
            roles: if app_only {
                perms.clone()
            } else {
                BTreeSet::new()
            },
            scopes: if app_only { BTreeSet::new() } else { perms },
            issued_at: 0,
            lifetime_secs: 3600,
        };
        AccessToken::from_claims(&grant.claims()).unwrap()
    }

    fn app_subject(w: &World) -> Subject {
        Subject::App {
            service_principal_id: w.app.service_principal_id,
        }
    }

    fn alice(w: &World) -> Subject {
        let u = &w.model.tenants[0].users[0];
        Subject::User {
            object_id: u.object_id,
            upn: u.upn.clone(),
            name: u.display_name.clone(),
        }
    }

    #[test]
    fn app_only_with_everything_in_place_is_allowed() {
        let w = world();
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        let t = token(
            &w,
            Api::ExchangeOnline,
            app_subject(&w),
            &["IMAP.AccessAsApp"],
        );
        let p = judge_token(&ctx, &t, "alice@contoso.example", Service::Imap).unwrap();
        assert!(matches!(p, Principal::App { .. }));
    }

    #[test]
    fn each_missing_step_gives_its_own_denial() {
        let mut w = world();
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        let t = token(&w, Api::ExchangeOnline, app_subject(&w), &[]);
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Imap),
            Err(Denial::MissingRole("IMAP.AccessAsApp"))
        );
        let t = token(&w, Api::Graph, app_subject(&w), &["IMAP.AccessAsApp"]);
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Imap)
                .unwrap_err()
                .code(),
            "wrong-audience"
        );
        let t = token(
            &w,
            Api::ExchangeOnline,
            app_subject(&w),
            &["IMAP.AccessAsApp"],
        );
        assert_eq!(
            judge_token(&ctx, &t, "shared@contoso.example", Service::Imap),
            Err(Denial::NoFullAccess)
        );
        assert_eq!(
            judge_token(&ctx, &t, "nobody@contoso.example", Service::Imap),
            Err(Denial::MailboxNotFound)
        );

        w.model.tenants[0].exchange_service_principals = vec![ExchangeServicePrincipal {
            app_id: w.app.client_id,
            object_id: w.app.object_id,
            added_at: None,
        }];
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Imap),
            Err(Denial::ServicePrincipalWrongObjectId)
        );
        w.model.tenants[0].exchange_service_principals.clear();
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Imap),
            Err(Denial::ServicePrincipalMissing)
        );
    }

    #[test]
    fn pending_changes_are_not_effective() {
        let mut w = world();
        w.model.tenants[0].exchange_service_principals[0].added_at =
            Some(OffsetDateTime::UNIX_EPOCH);
        let ctx = Context {
            model: &w.model,
            effective: &never,
        };
        let t = token(
            &w,
            Api::ExchangeOnline,
            app_subject(&w),
            &["IMAP.AccessAsApp"],
        );
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Imap),
            Err(Denial::NotYetEffective("New-ServicePrincipal"))
        );
    }

    #[test]
    fn delegated_needs_scope_and_full_access_for_other_mailboxes() {
        let mut w = world();
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        let t = token(
            &w,
            Api::ExchangeOnline,
            alice(&w),
            &["IMAP.AccessAsUser.All"],
        );
        assert!(judge_token(&ctx, &t, "ALICE@contoso.example", Service::Imap).is_ok());
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Smtp),
            Err(Denial::MissingScope("SMTP.Send"))
        );
        assert_eq!(
            judge_token(&ctx, &t, "shared@contoso.example", Service::Imap),
            Err(Denial::NoFullAccess)
        );
        w.model.tenants[0]
            .mailbox_permissions
            .push(crate::model::MailboxPermission {
                mailbox: "shared@contoso.example".into(),
                trustee: "alice@contoso.example".into(),
                right: MailboxRight::FullAccess,
                added_at: None,
            });
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert!(judge_token(&ctx, &t, "shared@contoso.example", Service::Imap).is_ok());
    }

    #[test]
    fn mailbox_switches_override_the_tenant() {
        let mut w = world();
        let t = token(
            &w,
            Api::ExchangeOnline,
            alice(&w),
            &["SMTP.Send", "POP.AccessAsUser.All"],
        );
        w.model.tenants[0].smtp_auth_disabled = true;
        {
            let ctx = Context {
                model: &w.model,
                effective: &always,
            };
            assert_eq!(
                judge_token(&ctx, &t, "alice@contoso.example", Service::Smtp),
                Err(Denial::SmtpAuthDisabledForTenant)
            );
        }
        w.model.tenants[0].users[0].mailbox.smtp_auth_disabled = Some(false);
        {
            let ctx = Context {
                model: &w.model,
                effective: &always,
            };
            assert!(judge_token(&ctx, &t, "alice@contoso.example", Service::Smtp).is_ok());
        }
        w.model.tenants[0].users[0].mailbox.pop_enabled = false;
        w.model.tenants[0].users[0].mailbox.licensed = true;
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert_eq!(
            judge_token(&ctx, &t, "alice@contoso.example", Service::Pop3),
            Err(Denial::PopDisabled)
        );
    }

    #[test]
    fn passwords_only_for_basic_auth_tenants() {
        let mut w = world();
        {
            let ctx = Context {
                model: &w.model,
                effective: &always,
            };
            assert_eq!(
                judge_password(&ctx, "alice@contoso.example", "pw", Service::Imap),
                Err(Denial::BasicAuthDisabled)
            );
        }
        w.model.tenants[0].basic_auth_enabled = true;
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert!(judge_password(&ctx, "alice@contoso.example", "pw", Service::Imap).is_ok());
        assert_eq!(
            judge_password(&ctx, "alice@contoso.example", "px", Service::Imap),
            Err(Denial::BadPassword)
        );
    }

    #[test]
    fn send_as_needs_the_permission() {
        let mut w = world();
        let alice = Principal::User("alice@contoso.example".into());
        {
            let ctx = Context {
                model: &w.model,
                effective: &always,
            };
            assert!(
                may_send_as(
                    &ctx,
                    &alice,
                    "alice@contoso.example",
                    "Alice@contoso.example"
                )
                .is_ok()
            );
            assert!(may_send_as(&ctx, &alice, "alice@contoso.example", "").is_ok());
            assert!(
                may_send_as(
                    &ctx,
                    &alice,
                    "alice@contoso.example",
                    "shared@contoso.example"
                )
                .is_err()
            );
        }
        w.model.tenants[0]
            .mailbox_permissions
            .push(crate::model::MailboxPermission {
                mailbox: "shared@contoso.example".into(),
                trustee: "alice@contoso.example".into(),
                right: MailboxRight::SendAs,
                added_at: None,
            });
        let ctx = Context {
            model: &w.model,
            effective: &always,
        };
        assert!(
            may_send_as(
                &ctx,
                &alice,
                "alice@contoso.example",
                "shared@contoso.example"
            )
            .is_ok()
        );
    }

    #[test]
    fn principal_labels_round_trip() {
        let w = world();
        for p in [
            Principal::User("alice@contoso.example".into()),
            Principal::App {
                app_id: w.app.client_id,
                service_principal_id: w.app.service_principal_id,
            },
            Principal::Store,
        ] {
            assert_eq!(Principal::from_label(&p.label()), Some(p));
        }
    }

    #[test]
    fn smtp_texts_carry_exchanges_status_codes() {
        assert!(
            client_text(Service::Smtp, &Denial::NoFullAccess, false)
                .starts_with("5.7.3 Authentication unsuccessful [")
        );
        assert!(
            client_text(Service::Smtp, &Denial::SmtpAuthDisabledForTenant, false)
                .starts_with("5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.")
        );
        assert_eq!(
            client_text(Service::Imap, &Denial::NoFullAccess, false),
            "AUTHENTICATE failed."
        );
    }
}
