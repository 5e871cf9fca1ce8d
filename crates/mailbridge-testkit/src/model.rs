//! The tenant model: tenants, users and their mailboxes, app registrations, consents,
//! Exchange service principals, mailbox permissions and access policies.
//!
//! Built in code with [`TenantModel::builder`] or read from TOML with
//! [`TenantModel::from_toml`]. The emulator keeps it behind a lock so a test can change
//! it while the emulator runs (grant consent, register a service principal, disable
//! SMTP AUTH) and watch the answers change, honouring the propagation delay knob for
//! Exchange-side changes.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::knobs::Knobs;

/// Application id of Microsoft Graph (the resource of `https://graph.microsoft.com`).
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Application id of Office 365 Exchange Online (`https://outlook.office.com`).
pub const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// Tenant id of personal Microsoft accounts.
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The whole emulated world: one or more tenants and the knobs.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantModel {
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub knobs: Knobs,
}

/// National cloud a tenant lives in (the same type mailbridge's configuration uses).
pub use mailbridge_types::config::Cloud;

/// A Microsoft Entra directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each bool is one tenant-wide admin switch"
)]
pub struct Tenant {
    /// Tenant GUID.
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    pub display_name: String,
    /// Verified domains; the first is the default (`contoso.onmicrosoft.com` style).
    pub domains: Vec<String>,
    #[serde(default)]
    pub cloud: Cloud,
    /// True for the personal-account directory (`consumers`): its tokens are opaque.
    #[serde(default)]
    pub personal: bool,
    /// Tenant-wide `Set-TransportConfig -SmtpClientAuthenticationDisabled`.
    #[serde(default)]
    pub smtp_auth_disabled: bool,
    /// Whether IMAP, POP and SMTP accept passwords (PLAIN/LOGIN). Exchange Online has
    /// Basic auth off (the default); turn it on to model an on-premises or generic server.
    #[serde(default)]
    pub basic_auth_enabled: bool,
    /// Whether users may consent to apps themselves (else admin approval is required).
    #[serde(default = "yes")]
    pub user_consent_allowed: bool,
    /// Client ids blocked by a Conditional Access policy (AADSTS53003).
    #[serde(default)]
    pub conditional_access_blocked_apps: Vec<String>,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    #[serde(default, rename = "app")]
    pub apps: Vec<AppRegistration>,
    #[serde(default, rename = "consent")]
    pub user_consents: Vec<UserConsent>,
    /// `New-ServicePrincipal -AppId -ObjectId` as run in Exchange Online.
    #[serde(default, rename = "exchange_service_principal")]
    pub exchange_service_principals: Vec<ExchangeServicePrincipal>,
    #[serde(default, rename = "mailbox_permission")]
    pub mailbox_permissions: Vec<MailboxPermission>,
    /// `New-ApplicationAccessPolicy` / RBAC for Applications scopes for app-only Graph and EWS.
    #[serde(default, rename = "access_policy")]
    pub access_policies: Vec<ApplicationAccessPolicy>,
    /// `Set-OrganizationConfig` EWS switches.
    #[serde(default)]
    pub ews: EwsOrganizationConfig,
}

/// `Set-OrganizationConfig -EwsEnabled -EwsApplicationAccessPolicy -EwsAllowedAppIDs
/// -EwsBlockedAppIDs` (`microsoft-protocols.md` §4.9).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwsOrganizationConfig {
    /// `-EwsEnabled`: `None` (not set) leaves EWS on.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `-EwsApplicationAccessPolicy`.
    #[serde(default)]
    pub app_policy: Option<EwsAppPolicy>,
    /// `-EwsAllowedAppIDs` (client ids), read under `EnforceAllowList`.
    #[serde(default)]
    pub allowed_app_ids: Vec<Uuid>,
    /// `-EwsBlockedAppIDs` (client ids), read under `EnforceBlockList`.
    #[serde(default)]
    pub blocked_app_ids: Vec<Uuid>,
}

/// `-EwsApplicationAccessPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EwsAppPolicy {
    EnforceAllowList,
    EnforceBlockList,
}

fn yes() -> bool {
    true
}

/// A user and the mailbox behind them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User principal name, also the primary SMTP address.
    pub upn: String,
    pub display_name: String,
    pub password: String,
    #[serde(default = "Uuid::new_v4")]
    pub object_id: Uuid,
    /// Multi-factor authentication required at sign-in (and on refresh once it is turned on).
    #[serde(default)]
    pub mfa_required: bool,
    /// The code the emulated MFA step accepts.
    #[serde(default = "default_mfa_code")]
    pub mfa_code: String,
    /// May grant tenant-wide admin consent.
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default)]
    pub mailbox: MailboxSettings,
}

fn default_mfa_code() -> String {
    "123456".to_owned()
}

/// `Set-CASMailbox` style switches and licensing of a user's mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each bool is one Set-CASMailbox switch"
)]
pub struct MailboxSettings {
    /// An Exchange Online licence is assigned (else Graph answers `MailboxNotEnabledForRESTAPI`).
    #[serde(default = "yes")]
    pub licensed: bool,
    #[serde(default = "yes")]
    pub imap_enabled: bool,
    #[serde(default = "yes")]
    pub pop_enabled: bool,
    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled`: `None` follows the tenant.
    #[serde(default)]
    pub smtp_auth_disabled: Option<bool>,
    #[serde(default = "yes")]
    pub ews_enabled: bool,
}

impl Default for MailboxSettings {
    fn default() -> Self {
        Self {
            licensed: true,
            imap_enabled: true,
            pop_enabled: true,
            smtp_auth_disabled: None,
            ews_enabled: true,
        }
    }
}

/// Who may sign in to an app registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignInAudience {
    /// `AzureADMyOrg`: only the home tenant.
    #[default]
    SingleTenant,
    /// `AzureADMultipleOrgs`.
    MultiTenant,
    /// `AzureADandPersonalMicrosoftAccount`.
    MultiTenantAndPersonal,
    /// `PersonalMicrosoftAccount`.
    PersonalOnly,
}

/// An app registration with its enterprise application (service principal) in the home tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRegistration {
    pub display_name: String,
    /// Application (client) ID.
    #[serde(default = "Uuid::new_v4")]
    pub client_id: Uuid,
    /// Object ID shown on the App registrations overview page.
    #[serde(default = "Uuid::new_v4")]
    pub object_id: Uuid,
    /// Object ID shown on the Enterprise applications page: the one Exchange's
    /// `New-ServicePrincipal -ObjectId` needs.
    #[serde(default = "Uuid::new_v4")]
    pub service_principal_id: Uuid,
    #[serde(default)]
    pub audience: SignInAudience,
    /// "Allow public client flows" (device code, ROPC, loopback without secret).
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, rename = "secret")]
    pub secrets: Vec<ClientSecret>,
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<AppCertificate>,
    #[serde(default, rename = "redirect_uri")]
    pub redirect_uris: Vec<RedirectUri>,
    #[serde(default, rename = "permission")]
    pub permissions: Vec<RequiredPermission>,
    /// "Grant admin consent for &lt;tenant&gt;" was pressed for the listed permissions.
    #[serde(default)]
    pub admin_consent_granted: bool,
}

/// A client secret: the portal shows its Value once and its Secret ID forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSecret {
    /// Secret ID (a GUID), what admins paste by mistake.
    #[serde(default = "Uuid::new_v4")]
    pub id: Uuid,
    /// Value.
    pub value: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// A certificate credential registered on the app (public part only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCertificate {
    /// The certificate in PEM form.
    pub certificate_pem: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

/// The platform a redirect URI is registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    Web,
    /// "Mobile and desktop applications": public client, loopback allowed.
    MobileDesktop,
    Spa,
}

/// A registered redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectUri {
    pub platform: Platform,
    pub uri: String,
}

/// The API a permission belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// Microsoft Graph.
    Graph,
    /// Office 365 Exchange Online.
    ExchangeOnline,
}

impl Api {
    /// The resource application id.
    pub fn app_id(self) -> &'static str {
        match self {
            Api::Graph => GRAPH_APP_ID,
            Api::ExchangeOnline => EXCHANGE_APP_ID,
        }
    }

    /// The name shown in the portal's "API permissions" list.
    pub fn portal_name(self) -> &'static str {
        match self {
            Api::Graph => "Microsoft Graph",
            Api::ExchangeOnline => "Office 365 Exchange Online",
        }
    }
}

/// Delegated (a user signs in) or application (app-only) permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionKind {
    Delegated,
    Application,
}

/// One entry of the app's "API permissions" (`requiredResourceAccess`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredPermission {
    pub api: Api,
    pub kind: PermissionKind,
    /// `Mail.ReadWrite`, `IMAP.AccessAsApp`, `full_access_as_app`, ...
    pub value: String,
}

/// A user's own consent to delegated scopes of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConsent {
    pub user: String,
    pub client_id: Uuid,
    /// Permission values (`IMAP.AccessAsUser.All`, `Mail.Read`, `offline_access`, ...).
    pub scopes: Vec<String>,
}

/// `New-ServicePrincipal -AppId <client id> -ObjectId <object id>` in Exchange Online.
///
/// Only the enterprise application's object id makes the registration work; the app
/// registration's object id is accepted by the cmdlet but the service principal then
/// matches no token (the most common mistake).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeServicePrincipal {
    pub app_id: Uuid,
    pub object_id: Uuid,
    /// When the change was made; it takes effect after the propagation delay knob.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub added_at: Option<OffsetDateTime>,
}

/// Mailbox permission kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxRight {
    /// `Add-MailboxPermission -AccessRights FullAccess`.
    FullAccess,
    /// `Add-RecipientPermission -AccessRights SendAs`.
    SendAs,
}

/// A mailbox permission for a user (by UPN) or a service principal (by app id or object id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxPermission {
    pub mailbox: String,
    /// A UPN, or the service principal's app id / object id.
    pub trustee: String,
    pub right: MailboxRight,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub added_at: Option<OffsetDateTime>,
}

/// Whether an access policy allows only the listed mailboxes or denies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AccessPolicyMode {
    #[default]
    RestrictAccess,
    DenyAccess,
}

/// `New-ApplicationAccessPolicy -AppId -PolicyScopeGroupId -AccessRight`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationAccessPolicy {
    pub app_id: Uuid,
    #[serde(default)]
    pub mode: AccessPolicyMode,
    /// Mailboxes (UPNs) of the policy's scope group.
    pub mailboxes: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub added_at: Option<OffsetDateTime>,
}

/// Error reading a tenant model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("tenant model is not valid TOML")]
    Toml(#[from] toml::de::Error),
    #[error("tenant model is inconsistent: {0}")]
    Inconsistent(String),
}

impl TenantModel {
    /// Starts a builder.
    pub fn builder() -> TenantModelBuilder {
        TenantModelBuilder::default()
    }

    /// The sandbox tenant (`sandbox.toml` in this crate): the five product scenarios
    /// with working demo accounts and apps.
    pub fn sandbox() -> Self {
        Self::from_toml(include_str!("../sandbox.toml")).unwrap_or_default()
    }

    /// Reads a model from TOML (see `docs/testkit.md` for the format).
    pub fn from_toml(text: &str) -> Result<Self, ModelError> {
        let model: TenantModel = toml::from_str(text)?;
        model.check()?;
        Ok(model)
    }

    /// Writes the model as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks cross references (unique ids and addresses, known trustees).
    pub fn check(&self) -> Result<(), ModelError> {
        let mut upns = std::collections::BTreeSet::new();
        let mut domains = std::collections::BTreeSet::new();
        for t in &self.tenants {
            if t.domains.is_empty() {
                return Err(ModelError::Inconsistent(format!(
                    "tenant {} has no verified domain",
                    t.display_name
                )));
            }
            for d in &t.domains {
                if !domains.insert(d.to_ascii_lowercase()) {
                    return Err(ModelError::Inconsistent(format!(
                        "domain {d} is verified in two tenants"
                    )));
                }
            }
            for u in &t.users {
                if !upns.insert(u.upn.to_ascii_lowercase()) {
                    return Err(ModelError::Inconsistent(format!(
                        "user {} is defined twice",
                        u.upn
                    )));
                }
            }
        }
        Ok(())
    }

    /// The tenant with this GUID or verified domain.
    pub fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.matches(id_or_domain))
    }

    /// Mutable access to the tenant with this GUID or verified domain.
    pub fn tenant_mut(&mut self, id_or_domain: &str) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.matches(id_or_domain))
    }

    /// The personal-account tenant, if the model has one.
    pub fn consumers(&self) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.personal)
    }

    /// The user with this UPN (any tenant) and their tenant.
    pub fn user(&self, upn: &str) -> Option<(&Tenant, &User)> {
        self.tenants
            .iter()
            .find_map(|t| t.user(upn).map(|u| (t, u)))
    }

    /// The app with this client id (any tenant) and its home tenant.
    pub fn app(&self, client_id: &str) -> Option<(&Tenant, &AppRegistration)> {
        self.tenants
            .iter()
            .find_map(|t| t.app(client_id).map(|a| (t, a)))
    }
}

impl Tenant {
    /// True when `id_or_domain` is this tenant's GUID or one of its verified domains.
    pub fn matches(&self, id_or_domain: &str) -> bool {
        self.id.to_string().eq_ignore_ascii_case(id_or_domain)
            || self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(id_or_domain))
    }

    /// The default (first) verified domain.
    pub fn default_domain(&self) -> &str {
        self.domains.first().map_or("", String::as_str)
    }

    /// The user with this UPN.
    pub fn user(&self, upn: &str) -> Option<&User> {
        self.users.iter().find(|u| u.upn.eq_ignore_ascii_case(upn))
    }

    /// The user with this UPN or object id.
    pub fn user_by_id_or_upn(&self, id_or_upn: &str) -> Option<&User> {
        self.users.iter().find(|u| {
            u.upn.eq_ignore_ascii_case(id_or_upn)
                || u.object_id.to_string().eq_ignore_ascii_case(id_or_upn)
        })
    }

    /// Mutable access to the user with this UPN.
    pub fn user_mut(&mut self, upn: &str) -> Option<&mut User> {
        self.users
            .iter_mut()
            .find(|u| u.upn.eq_ignore_ascii_case(upn))
    }

    /// The app registration with this client id.
    pub fn app(&self, client_id: &str) -> Option<&AppRegistration> {
        self.apps
            .iter()
            .find(|a| a.client_id.to_string().eq_ignore_ascii_case(client_id))
    }

    /// Mutable access to the app registration with this client id.
    pub fn app_mut(&mut self, client_id: &str) -> Option<&mut AppRegistration> {
        self.apps
            .iter_mut()
            .find(|a| a.client_id.to_string().eq_ignore_ascii_case(client_id))
    }

    /// True when `mailbox` is a user of this tenant with a licensed mailbox.
    pub fn has_licensed_mailbox(&self, mailbox: &str) -> bool {
        self.user(mailbox).is_some_and(|u| u.mailbox.licensed)
    }
}

impl AppRegistration {
    /// The permissions of `kind` listed for `api`.
    pub fn permissions_for(&self, api: Api, kind: PermissionKind) -> impl Iterator<Item = &str> {
        self.permissions
            .iter()
            .filter(move |p| p.api == api && p.kind == kind)
            .map(|p| p.value.as_str())
    }

    /// Whether a redirect URI is registered, and under which platform.
    ///
    /// Loopback `http://localhost` and `http://127.0.0.1` URIs match ignoring the port
    /// (RFC 8252 §7.3); the path must still match.
    pub fn redirect_platform(&self, requested: &str) -> Option<Platform> {
        let requested_url = url::Url::parse(requested).ok()?;
        self.redirect_uris.iter().find_map(|r| {
            let registered = url::Url::parse(&r.uri).ok()?;
            let loopback = |u: &url::Url| {
                u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1"))
            };
            let same = if loopback(&registered) && loopback(&requested_url) {
                registered.host_str() == requested_url.host_str()
                    && registered.path() == requested_url.path()
                    && registered.query() == requested_url.query()
            } else {
                registered.as_str() == requested_url.as_str()
            };
            same.then_some(r.platform)
        })
    }
}

/// Builds a [`TenantModel`] in code.
#[derive(Debug, Default)]
pub struct TenantModelBuilder {
    model: TenantModel,
}

impl TenantModelBuilder {
    /// Adds a tenant (see [`Tenant::new`]).
    #[must_use]
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.model.tenants.push(tenant);
        self
    }

    /// Sets the knobs.
    #[must_use]
    pub fn knobs(mut self, knobs: Knobs) -> Self {
        self.model.knobs = knobs;
        self
    }

    /// Finishes the model.
    pub fn build(self) -> Result<TenantModel, ModelError> {
        self.model.check()?;
        Ok(self.model)
    }
}

impl Tenant {
    /// A work tenant with one verified domain and nothing in it.
    pub fn new(display_name: &str, domain: &str) -> Self {
        Self {
            id: Uuid::new_v4(),
            display_name: display_name.to_owned(),
            domains: vec![domain.to_owned()],
            cloud: Cloud::Global,
            personal: false,
            smtp_auth_disabled: false,
            basic_auth_enabled: false,
            user_consent_allowed: true,
            conditional_access_blocked_apps: Vec::new(),
            users: Vec::new(),
            apps: Vec::new(),
            user_consents: Vec::new(),
            exchange_service_principals: Vec::new(),
            mailbox_permissions: Vec::new(),
            access_policies: Vec::new(),
            ews: EwsOrganizationConfig::default(),
        }
    }

    /// The personal-account directory (`consumers`, outlook.com addresses).
    pub fn personal_accounts(domain: &str) -> Self {
        let mut t = Self::new("Microsoft Account", domain);
        t.id = Uuid::parse_str(CONSUMERS_TENANT_ID).unwrap_or_default();
        t.personal = true;
        t
    }

    /// Adds a user.
    #[must_use]
    pub fn with_user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds an app registration.
    #[must_use]
    pub fn with_app(mut self, app: AppRegistration) -> Self {
        self.apps.push(app);
        self
    }

    /// Registers the app's service principal in Exchange with its enterprise-app object id
    /// (the right way).
    #[must_use]
    pub fn with_exchange_service_principal(mut self, app: &AppRegistration) -> Self {
        self.exchange_service_principals
            .push(ExchangeServicePrincipal {
                app_id: app.client_id,
                object_id: app.service_principal_id,
                added_at: None,
            });
        self
    }

    /// Adds a mailbox permission.
    #[must_use]
    pub fn with_mailbox_permission(
        mut self,
        mailbox: &str,
        trustee: &str,
        right: MailboxRight,
    ) -> Self {
        self.mailbox_permissions.push(MailboxPermission {
            mailbox: mailbox.to_owned(),
            trustee: trustee.to_owned(),
            right,
            added_at: None,
        });
        self
    }

    /// Adds an access policy.
    #[must_use]
    pub fn with_access_policy(mut self, policy: ApplicationAccessPolicy) -> Self {
        self.access_policies.push(policy);
        self
    }
}

impl User {
    /// A user with a licensed mailbox and every protocol enabled.
    pub fn new(upn: &str, display_name: &str, password: &str) -> Self {
        Self {
            upn: upn.to_owned(),
            display_name: display_name.to_owned(),
            password: password.to_owned(),
            object_id: Uuid::new_v4(),
            mfa_required: false,
            mfa_code: default_mfa_code(),
            is_admin: false,
            mailbox: MailboxSettings::default(),
        }
    }

    /// Makes the user a global administrator (may grant admin consent).
    #[must_use]
    pub fn admin(mut self) -> Self {
        self.is_admin = true;
        self
    }
}

impl AppRegistration {
    /// A single-tenant app with no credentials and no permissions.
    pub fn new(display_name: &str) -> Self {
        Self {
            display_name: display_name.to_owned(),
            client_id: Uuid::new_v4(),
            object_id: Uuid::new_v4(),
            service_principal_id: Uuid::new_v4(),
            audience: SignInAudience::SingleTenant,
            public_client: false,
            disabled: false,
            secrets: Vec::new(),
            certificates: Vec::new(),
            redirect_uris: Vec::new(),
            permissions: Vec::new(),
            admin_consent_granted: false,
        }
    }

    /// Adds a client secret with this value, valid until `expires`.
    #[must_use]
    pub fn with_secret(mut self, value: &str, expires: OffsetDateTime) -> Self {
        self.secrets.push(ClientSecret {
            id: Uuid::new_v4(),
            value: value.to_owned(),
            expires,
        });
        self
    }

    /// Adds a certificate credential.
    #[must_use]
    pub fn with_certificate(mut self, certificate_pem: &str, expires: OffsetDateTime) -> Self {
        self.certificates.push(AppCertificate {
            certificate_pem: certificate_pem.to_owned(),
            expires,
        });
        self
    }

    /// Adds a redirect URI.
    #[must_use]
    pub fn with_redirect(mut self, platform: Platform, uri: &str) -> Self {
        self.redirect_uris.push(RedirectUri {
            platform,
            uri: uri.to_owned(),
        });
        self
    }

    /// Adds an API permission.
    #[must_use]
    pub fn with_permission(mut self, api: Api, kind: PermissionKind, value: &str) -> Self {
        self.permissions.push(RequiredPermission {
            api,
            kind,
            value: value.to_owned(),
        });
        self
    }

    /// Marks admin consent as granted.
    #[must_use]
    pub fn consented(mut self) -> Self {
        self.admin_consent_granted = true;
        self
    }

    /// Turns on "Allow public client flows".
    #[must_use]
    pub fn public(mut self) -> Self {
        self.public_client = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_matches_any_port_but_not_another_path() {
        let app =
            AppRegistration::new("a").with_redirect(Platform::MobileDesktop, "http://localhost");
        assert_eq!(
            app.redirect_platform("http://localhost:53682/"),
            Some(Platform::MobileDesktop)
        );
        assert_eq!(
            app.redirect_platform("http://localhost:1/"),
            Some(Platform::MobileDesktop)
        );
        assert_eq!(app.redirect_platform("http://localhost:1/cb"), None);
        assert_eq!(app.redirect_platform("http://127.0.0.1:1/"), None);
        assert_eq!(app.redirect_platform("https://example.com/"), None);
    }

    #[test]
    fn toml_round_trip_keeps_ids() {
        let t = Tenant::new("Contoso", "contoso.example").with_user(User::new(
            "alice@contoso.example",
            "Alice",
            "pw",
        ));
        let model = TenantModel::builder().tenant(t).build().unwrap();
        let text = model.to_toml();
        let back = TenantModel::from_toml(&text).unwrap();
        assert_eq!(back.tenants[0].id, model.tenants[0].id);
        assert_eq!(
            back.tenants[0].users[0].object_id,
            model.tenants[0].users[0].object_id
        );
    }

    #[test]
    fn sandbox_tenant_parses_and_has_every_scenario() {
        let model = TenantModel::from_toml(include_str!("../sandbox.toml")).unwrap();
        let contoso = model.tenant("contoso.example").unwrap();
        assert_eq!(contoso.apps.len(), 4);
        assert!(contoso.user("bob@contoso.example").unwrap().mfa_required);
        assert!(model.consumers().is_some());
        assert!(
            TenantModel::sandbox()
                .tenant("contoso.onmicrosoft.example")
                .is_some()
        );
    }

    #[test]
    fn duplicate_domain_is_rejected() {
        let err = TenantModel::builder()
            .tenant(Tenant::new("A", "a.example"))
            .tenant(Tenant::new("B", "A.example"))
            .build()
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("a.example"),
            "{err}"
        );
    }
}
