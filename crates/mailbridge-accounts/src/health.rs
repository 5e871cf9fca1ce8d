//! Credential-expiry health: for every app, when its client secret or certificate
//! expires (and whether the secret is stored); for every account, its sign-in state
//! and how long its refresh token has been idle; each with the warnings a person
//! should act on, in time.

use mailbridge_store::token_store::refresh_token_id;
use mailbridge_store::{AccountState, Store};
use mailbridge_types::config::{AppConfig, AppCredentialConfig, ConfigFile, SignInMethod};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::Result;

/// A secret or certificate that expires within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
/// A refresh token idle for more than this many days is warned about (Microsoft
/// expires it after 90 days of inactivity).
pub const IDLE_WARNING_DAYS: i64 = 60;

/// The health of every app and account of a catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub apps: Vec<AppHealth>,
    pub accounts: Vec<AccountHealth>,
}

/// An app's credential and when it expires.
#[derive(Debug, Clone, Serialize)]
pub struct AppHealth {
    pub name: String,
    pub client_id: String,
    pub tenant: String,
    /// `none`, `client-secret` or `certificate`.
    pub credential: &'static str,
    /// The certificate's SHA-1 thumbprint, as App registrations shows it.
    pub thumbprint: Option<String>,
    /// When the credential expires (RFC 3339).
    pub expires: Option<String>,
    /// Days until it expires (negative: expired).
    pub expires_in_days: Option<i64>,
    pub warnings: Vec<String>,
}

/// An account's sign-in state and its refresh token's idleness.
#[derive(Debug, Clone, Serialize)]
pub struct AccountHealth {
    pub name: String,
    pub address: String,
    pub sign_in: SignInMethod,
    pub app: Option<String>,
    /// `password`, `app-only`, `signed-in`, `needs-sign-in` or `never-signed-in`.
    pub state: &'static str,
    /// Why the account needs a sign-in.
    pub reason: Option<String>,
    /// When the refresh token was last used (RFC 3339).
    pub refresh_token_last_used: Option<String>,
    pub refresh_token_idle_days: Option<i64>,
    pub warnings: Vec<String>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The notAfter of the first certificate in a PEM text.
pub fn certificate_not_after(pem: &str) -> Option<OffsetDateTime> {
    mailbridge_auth::credential::certificate_not_after(pem)
}

fn app_health(app: &AppConfig, now: OffsetDateTime, secret_stored: bool) -> AppHealth {
    let mut thumbprint = None;
    let (kind, expires) = match &app.credential {
        AppCredentialConfig::None => ("none", None),
        AppCredentialConfig::Secret { expires } => ("client-secret", *expires),
        AppCredentialConfig::Certificate {
            certificate_file, ..
        } => {
            let pem = std::fs::read_to_string(certificate_file).ok();
            thumbprint = pem
                .as_deref()
                .and_then(mailbridge_auth::credential::certificate_thumbprint);
            (
                "certificate",
                pem.as_deref().and_then(certificate_not_after),
            )
        }
    };
    let days = expires.map(|e| (e - now).whole_days());
    let mut warnings = Vec::new();
    if let Some(d) = days {
        if d < 0 {
            warnings.push(format!(
                "the {kind} expired {} days ago: create a new one in App registrations -> Certificates & secrets",
                -d
            ));
        } else if d <= EXPIRY_WARNING_DAYS {
            warnings.push(format!(
                "the {kind} expires in {d} days: create a new one in App registrations -> Certificates & secrets before then"
            ));
        }
    }
    if kind == "client-secret" && !secret_stored {
        warnings.push(format!(
            "no client secret stored: run `mailbridge secrets set-app-secret {}`",
            app.name
        ));
    }
    AppHealth {
        name: app.name.clone(),
        client_id: app.client_id.clone(),
        tenant: app.tenant.clone(),
        credential: kind,
        thumbprint,
        expires: expires.map(rfc3339),
        expires_in_days: days,
        warnings,
    }
}

/// The health of every app and account of `catalog`, at the store's clock.
pub async fn health(catalog: &ConfigFile, store: &Store) -> Result<Health> {
    let now = store.now();
    let secrets = store.secrets().await?;
    let apps = catalog
        .apps
        .iter()
        .map(|app| app_health(app, now, secrets.iter().any(|s| s.id == app.secret_id())))
        .collect();
    let mut accounts = Vec::new();
    for acc in &catalog.accounts {
        let state = store.account_state(&acc.name).await?;
        let rt = secrets.iter().find(|s| s.id == refresh_token_id(&acc.name));
        let last_used = rt.and_then(|s| s.last_used_at.or(Some(s.updated_at)));
        let idle_days = last_used.map(|t| (now - t).whole_days());
        let (state_name, reason) = match (&state, acc.sign_in) {
            (_, SignInMethod::Password) => ("password", None),
            (_, SignInMethod::AppOnly) => ("app-only", None),
            (Some(AccountState::NeedsSignIn { reason }), _) => {
                ("needs-sign-in", Some(reason.clone()))
            }
            (Some(AccountState::SignedIn), _) if rt.is_some() => ("signed-in", None),
            _ => ("never-signed-in", None),
        };
        let mut warnings = Vec::new();
        if let Some(d) = idle_days.filter(|d| *d > IDLE_WARNING_DAYS) {
            warnings.push(format!(
                "the refresh token has not been used for {d} days; Microsoft expires it after 90 days of inactivity"
            ));
        }
        if state_name == "needs-sign-in" || state_name == "never-signed-in" {
            warnings.push(format!("run `mailbridge auth login {}`", acc.name));
        }
        accounts.push(AccountHealth {
            name: acc.name.clone(),
            address: acc.address.clone(),
            sign_in: acc.sign_in,
            app: acc.app.clone(),
            state: state_name,
            reason,
            refresh_token_last_used: last_used.map(rfc3339),
            refresh_token_idle_days: idle_days,
            warnings,
        });
    }
    Ok(Health { apps, accounts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(credential: AppCredentialConfig) -> AppConfig {
        let mut a: AppConfig = serde_json::from_value(serde_json::json!({
            "name": "connector", "tenant": "contoso.example",
            "client_id": "00000000-0000-4000-8000-000000000001",
        }))
        .unwrap();
        a.credential = credential;
        a
    }

    #[test]
    fn a_secret_is_warned_about_within_30_days_and_once_expired() {
        let now = time::macros::datetime!(2026-12-07 12:00 UTC);
        let in_days = |d| AppCredentialConfig::Secret {
            expires: Some(now + time::Duration::days(d)),
        };
        let h = app_health(&app(in_days(31)), now, true);
        assert_eq!((h.expires_in_days, h.warnings.len()), (Some(31), 0));
        let h = app_health(&app(in_days(30)), now, true);
        assert!(h.warnings[0].contains("expires in 30 days"), "{h:?}");
        let h = app_health(&app(in_days(-3)), now, true);
        assert!(h.warnings[0].contains("expired 3 days ago"), "{h:?}");
        let h = app_health(&app(in_days(300)), now, false);
        assert!(
            h.warnings[0].contains("mailbridge secrets set-app-secret connector"),
            "{h:?}"
        );
        assert_eq!(h.credential, "client-secret");
    }
}
