//! AADSTS diagnosis: what an identity-platform error means and what to change.
//!
//! The catalogue covers every code of `microsoft-protocols.md` §1.6 (Microsoft's
//! "Microsoft Entra authentication and authorization error codes"). Programs should act
//! on the OAuth `error` and the class; the AADSTS number picks the explanation. Codes
//! not in the catalogue keep their number and Microsoft's text, classed from the OAuth
//! `error`.

#![expect(
    clippy::unreadable_literal,
    reason = "AADSTS codes are written as Microsoft prints them"
)]

use mailbridge_types::ErrorClass;
use serde_json::Value;

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AadstsEntry {
    pub code: u32,
    /// Microsoft's short name for the code.
    pub name: &'static str,
    pub class: ErrorClass,
    /// What went wrong, for a person.
    pub cause: &'static str,
    /// What to change, in the words of the screen the admin uses.
    pub fix: &'static str,
}

use ErrorClass::{Misconfigured, NeedsAdmin, NeedsSignIn, Permanent, Transient};

/// The catalogue, sorted by code.
pub const CATALOGUE: &[AadstsEntry] = &[
    e(
        28002,
        "InvalidScope",
        Misconfigured,
        "the scope requested with the authorization code is not valid",
        "request scopes of one resource only, fully qualified (for example https://outlook.office.com/IMAP.AccessAsUser.All) plus offline_access",
    ),
    e(
        28003,
        "EmptyScope",
        Misconfigured,
        "no scope was sent when redeeming the authorization code",
        "send the scope parameter when redeeming the code",
    ),
    e(
        50011,
        "InvalidReplyTo",
        Misconfigured,
        "the redirect URI sent does not match one registered for the app",
        "in App registrations -> Authentication -> Add a platform -> Mobile and desktop applications, add exactly the redirect URI mailbridge uses (http://localhost for the loopback sign-in; the port is ignored)",
    ),
    e(
        50020,
        "UserUnauthorized",
        NeedsAdmin,
        "the account does not exist in this tenant and cannot use the app (a personal or guest account on a tenant endpoint)",
        "sign in with an account of the tenant, invite the user as a guest, or use the common or consumers authority for personal accounts",
    ),
    e(
        50027,
        "InvalidJwtToken",
        Misconfigured,
        "the client assertion (certificate JWT) is malformed or has the wrong audience or issuer",
        "build the assertion with aud = the token endpoint of the same tenant used in the request, and iss = sub = the Application (client) ID",
    ),
    e(
        50034,
        "UserAccountNotFound",
        NeedsSignIn,
        "the user account does not exist in this directory",
        "check the user name for typos and that the tenant is the user's home tenant",
    ),
    e(
        50048,
        "SubjectMismatchesIssuer",
        Misconfigured,
        "the client assertion's subject does not match its issuer",
        "set both iss and sub of the client assertion to the Application (client) ID",
    ),
    e(
        50053,
        "IdsLocked",
        NeedsAdmin,
        "the account is locked (smart lockout) or sign-in from this address is blocked",
        "wait for the lockout to end or have an admin unlock the user in Entra ID -> Users",
    ),
    e(
        50055,
        "InvalidPasswordExpiredPassword",
        NeedsSignIn,
        "the user's password has expired",
        "the user changes the password, then signs in to mailbridge again",
    ),
    e(
        50057,
        "UserDisabled",
        NeedsAdmin,
        "the user account is disabled",
        "enable the account in Entra ID -> Users -> the user -> Account enabled",
    ),
    e(
        50058,
        "UserInformationNotProvided",
        NeedsSignIn,
        "a silent sign-in was attempted but no user is signed in",
        "sign in interactively: mailbridge auth login <account>",
    ),
    e(
        50076,
        "UserStrongAuthClientAuthNRequired",
        NeedsSignIn,
        "multi-factor authentication is now required and a refresh cannot satisfy it",
        "sign in again interactively (browser or device code) and complete the MFA prompt",
    ),
    e(
        50079,
        "UserStrongAuthEnrollmentRequired",
        NeedsSignIn,
        "the user must register for multi-factor authentication",
        "the user registers MFA at https://aka.ms/mfasetup, then signs in to mailbridge again",
    ),
    e(
        50126,
        "InvalidUserNameOrPassword",
        NeedsSignIn,
        "the user name or password is wrong",
        "check the user name and password and sign in again",
    ),
    e(
        50173,
        "FreshTokenNeeded",
        NeedsSignIn,
        "the grant was revoked (password changed or sessions revoked)",
        "sign in again: mailbridge auth login <account>",
    ),
    e(
        50194,
        "Invalid multi-tenant application",
        Misconfigured,
        "a single-tenant app was used with the common or organizations authority",
        "use the tenant ID (Directory (tenant) ID on the app's Overview page) or a verified domain as the authority, or make the app multi-tenant in App registrations -> Authentication -> Supported account types",
    ),
    e(
        50196,
        "LoopDetected",
        Transient,
        "the client sent requests in a tight loop",
        "slow down: retries must back off",
    ),
    e(
        53000,
        "DeviceNotCompliant",
        NeedsAdmin,
        "Conditional Access requires a compliant device",
        "an admin reviews the Conditional Access policy in Entra ID -> Security -> Conditional Access (sign-in logs show which one) and excludes this app or satisfies it",
    ),
    e(
        53001,
        "DeviceNotDomainJoined",
        NeedsAdmin,
        "Conditional Access requires a domain-joined device",
        "an admin reviews the Conditional Access policy in Entra ID -> Security -> Conditional Access",
    ),
    e(
        53002,
        "ApplicationUsedIsNotAnApprovedApp",
        NeedsAdmin,
        "Conditional Access requires an approved client app",
        "an admin reviews the Conditional Access policy in Entra ID -> Security -> Conditional Access",
    ),
    e(
        53003,
        "BlockedByConditionalAccess",
        NeedsAdmin,
        "a Conditional Access policy blocked the sign-in",
        "an admin opens Entra ID -> Sign-in logs -> this sign-in -> Conditional Access tab, and excludes the app (or the service principal, for app-only) from the blocking policy or satisfies it",
    ),
    e(
        54005,
        "OAuth2 Authorization code was already redeemed",
        Misconfigured,
        "the authorization code was used twice",
        "start the sign-in again; each code works once",
    ),
    e(
        65001,
        "DelegationDoesNotExist",
        NeedsAdmin,
        "the user or administrator has not consented to the permissions requested",
        "in App registrations -> API permissions press \"Grant admin consent for <tenant>\", or sign in again so the user can accept the consent page",
    ),
    e(
        65004,
        "UserDeclinedConsent",
        NeedsSignIn,
        "the user declined the consent page",
        "sign in again and press Accept on the permissions page",
    ),
    e(
        65005,
        "MisconfiguredApplication",
        Misconfigured,
        "the app asked for a resource or permission it does not list in API permissions",
        "in App registrations -> API permissions -> Add a permission, add the permission mailbridge requests (for IMAP/POP/SMTP app-only: APIs my organization uses -> Office 365 Exchange Online -> Application permissions), then grant admin consent",
    ),
    e(
        70000,
        "InvalidGrant",
        NeedsSignIn,
        "the authorization code or refresh token is not valid, or a scope is no longer consented",
        "sign in again: mailbridge auth login <account>",
    ),
    e(
        70002,
        "InvalidClient",
        Misconfigured,
        "the client secret does not match",
        "in App registrations -> Certificates & secrets create a new client secret and copy its Value (not its Secret ID)",
    ),
    e(
        70003,
        "UnsupportedGrantType",
        Misconfigured,
        "the app requested a grant type the identity platform does not support here",
        "check the sign-in method of the account",
    ),
    e(
        70008,
        "ExpiredOrRevokedGrant",
        NeedsSignIn,
        "the refresh token or code expired due to inactivity",
        "sign in again: mailbridge auth login <account>",
    ),
    e(
        70011,
        "InvalidScope",
        Misconfigured,
        "the scope is not valid for this flow (app-only needs <resource>/.default)",
        "for app-only use https://graph.microsoft.com/.default (Graph) or https://outlook.office365.com/.default (IMAP, POP, SMTP, EWS); permission names such as Mail.Read or IMAP.AccessAsApp are not scopes there",
    ),
    e(
        70016,
        "AuthorizationPending",
        Transient,
        "the user has not finished the device-code sign-in yet",
        "keep polling at the given interval",
    ),
    e(
        70018,
        "BadVerificationCode",
        Permanent,
        "the device code is not recognised",
        "start the device-code sign-in again",
    ),
    e(
        70019,
        "CodeExpired",
        NeedsSignIn,
        "the verification code expired",
        "start the device-code sign-in again",
    ),
    e(
        70020,
        "ExpiredToken",
        NeedsSignIn,
        "the device code expired before the user finished signing in",
        "start the device-code sign-in again and enter the code within 15 minutes",
    ),
    e(
        70043,
        "BadTokenDueToSignInFrequency",
        NeedsSignIn,
        "the refresh token expired under a sign-in frequency policy",
        "sign in again; an admin may relax the sign-in frequency in Conditional Access -> Session",
    ),
    e(
        90002,
        "InvalidTenantName",
        Misconfigured,
        "the tenant was not found (typo in the tenant ID or domain, or the wrong cloud)",
        "copy the Directory (tenant) ID from the app's Overview page in App registrations, and check the cloud (global, US Government, China)",
    ),
    e(
        90008,
        "TokenForItselfRequiresGraphPermission",
        NeedsAdmin,
        "the app requires admin approval",
        "an admin grants consent in App registrations -> API permissions -> Grant admin consent for <tenant>",
    ),
    e(
        90014,
        "MissingRequiredField",
        Misconfigured,
        "a required field is missing from the request",
        "this is a mailbridge bug or a proxy stripping fields; report it with the request id",
    ),
    e(
        90038,
        "NationalCloudTenantRedirection",
        Misconfigured,
        "the tenant belongs to a national cloud",
        "set the account's cloud (US Government or China) so mailbridge uses that cloud's sign-in host",
    ),
    e(
        90094,
        "AdminConsentRequired",
        NeedsAdmin,
        "the tenant does not let users consent to this app",
        "an admin grants consent in App registrations -> API permissions -> Grant admin consent for <tenant>, or approves the admin consent request",
    ),
    e(
        90120,
        "InvalidDeviceFlowRequest",
        Permanent,
        "the device code was already used or declined",
        "start the device-code sign-in again",
    ),
    e(
        500011,
        "InvalidResourceServicePrincipalNotFound",
        NeedsAdmin,
        "the resource (for example Exchange Online) is not available in the tenant",
        "check the resource URL for typos; the tenant needs an Exchange Online subscription for IMAP/POP/SMTP/EWS",
    ),
    e(
        500113,
        "NoReplyAddressesRegistered",
        Misconfigured,
        "the app has no redirect URI",
        "in App registrations -> Authentication -> Add a platform -> Mobile and desktop applications, add http://localhost",
    ),
    e(
        501481,
        "InvalidCodeVerifier",
        Misconfigured,
        "the PKCE code verifier does not match the challenge",
        "start the sign-in again; this is a mailbridge bug if it repeats",
    ),
    e(
        530035,
        "BlockedBySecurityDefaults",
        NeedsAdmin,
        "security defaults blocked the sign-in",
        "an admin reviews Entra ID -> Properties -> Manage security defaults, or moves to Conditional Access",
    ),
    e(
        650052,
        "AppNeedsServiceSubscription",
        NeedsAdmin,
        "the app needs a service the organization has not subscribed to",
        "the tenant needs the service's licence (for mail: Exchange Online)",
    ),
    e(
        650056,
        "MisconfiguredApplication",
        Misconfigured,
        "the app lists no permissions for the requested resource, or consent was not granted",
        "in App registrations -> API permissions add the permission for the API mailbridge uses, then press Grant admin consent",
    ),
    e(
        650057,
        "InvalidResource",
        Misconfigured,
        "the app requested a resource not listed in its API permissions",
        "in App registrations -> API permissions -> Add a permission, add the API (Microsoft Graph, or APIs my organization uses -> Office 365 Exchange Online), then grant admin consent",
    ),
    e(
        700005,
        "InvalidGrantRedeemAgainstWrongTenant",
        Misconfigured,
        "the authorization code was issued for another tenant",
        "use the same tenant (authority) for the sign-in and the token request",
    ),
    e(
        700016,
        "UnauthorizedClient_DoesNotMatchRequest",
        Misconfigured,
        "the application (client) ID was not found in the tenant",
        "copy the Application (client) ID from the app's Overview page in App registrations (not the Object ID), and check the tenant ID",
    ),
    e(
        700022,
        "InvalidMultipleResourcesScope",
        Misconfigured,
        "scopes of more than one resource were requested in one token request",
        "request Graph and Exchange (outlook.office365.com) scopes in separate token requests",
    ),
    e(
        700024,
        "ClientAssertionNotWithinValidTimeRange",
        Misconfigured,
        "the client assertion is outside its valid time range (clock skew or a reused assertion)",
        "synchronise this machine's clock (NTP); mailbridge mints a fresh assertion with a 10-minute lifetime per request",
    ),
    e(
        700025,
        "InvalidClientPublicClientWithCredential",
        Misconfigured,
        "a client secret was sent for a public-client sign-in",
        "remove the client secret from the account, or register the redirect URI under Web instead of Mobile and desktop applications",
    ),
    e(
        700027,
        "Client assertion failed signature validation",
        Misconfigured,
        "the certificate that signed the client assertion is not registered on the app, has expired, or the signature is wrong",
        "in App registrations -> Certificates & secrets -> Certificates upload the certificate whose thumbprint mailbridge prints, and check its expiry",
    ),
    e(
        700054,
        "ResponseTypeIdTokenNotEnabled",
        Misconfigured,
        "id_token is not enabled for the app",
        "request the code flow; mailbridge does not need implicit grant",
    ),
    e(
        700082,
        "ExpiredOrRevokedGrantInactiveToken",
        NeedsSignIn,
        "the refresh token expired because it was not used for 90 days",
        "sign in again: mailbridge auth login <account>",
    ),
    e(
        900023,
        "InvalidTenantIdentifier",
        Misconfigured,
        "the tenant identifier is neither a GUID nor a valid domain",
        "set the tenant to the Directory (tenant) ID or a verified domain, without https:// or spaces",
    ),
    e(
        900144,
        "InvalidRequestParameter",
        Misconfigured,
        "a required parameter is missing from the request",
        "check the account's client id and scopes; report it if they are set",
    ),
    e(
        900971,
        "NoReplyAddress",
        Misconfigured,
        "no redirect URI was provided",
        "this is a mailbridge bug; report it",
    ),
    e(
        7000112,
        "UnauthorizedClientApplicationDisabled",
        NeedsAdmin,
        "the application is disabled",
        "an admin enables it in Enterprise applications -> the app -> Properties -> Enabled for users to sign-in",
    ),
    e(
        7000215,
        "InvalidClientSecretProvided",
        Misconfigured,
        "the secret is wrong",
        "in App registrations -> Certificates & secrets copy the secret's Value, not its Secret ID (create a new secret if the value is no longer shown)",
    ),
    e(
        7000218,
        "InvalidClientNoCredential",
        Misconfigured,
        "no client secret or certificate was sent, and the app is not a public client",
        "for device code or browser sign-in without a secret, set App registrations -> Authentication -> Allow public client flows = Yes (and register http://localhost under Mobile and desktop applications); otherwise add the client secret to the account",
    ),
    e(
        7000222,
        "InvalidClientSecretExpiredKeysProvided",
        Misconfigured,
        "the client secret has expired",
        "in App registrations -> Certificates & secrets -> New client secret, then update the account with the new Value",
    ),
    e(
        9001023,
        "GrantTypeNotSupported over common",
        Misconfigured,
        "app-only (client credentials) sign-in was sent to the common or consumers authority",
        "use the tenant ID (Directory (tenant) ID) or a verified domain as the authority for app-only sign-in",
    ),
    e(
        9002313,
        "InvalidRequest",
        Misconfigured,
        "the request or token was malformed",
        "sign in again; report it if it repeats",
    ),
    e(
        9002331,
        "Application configured for Microsoft Account users only",
        Misconfigured,
        "the app accepts only personal Microsoft accounts but a work tenant was used",
        "use the consumers authority, or change Supported account types in App registrations -> Authentication",
    ),
    e(
        9002332,
        "Application configured for Azure AD users only",
        Misconfigured,
        "the app accepts only work or school accounts but the consumers authority was used",
        "use the tenant authority, or change Supported account types to include personal Microsoft accounts",
    ),
];

const fn e(
    code: u32,
    name: &'static str,
    class: ErrorClass,
    cause: &'static str,
    fix: &'static str,
) -> AadstsEntry {
    AadstsEntry {
        code,
        name,
        class,
        cause,
        fix,
    }
}

/// The catalogue entry for an AADSTS code.
pub fn lookup(code: u32) -> Option<&'static AadstsEntry> {
    CATALOGUE
        .binary_search_by_key(&code, |entry| entry.code)
        .ok()
        .and_then(|i| CATALOGUE.get(i))
}

/// An error answer of the token or device-code endpoint, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// The OAuth `error`.
    pub error: String,
    /// The AADSTS number (`error_codes[0]`, else the `AADSTSnnnn:` prefix of the description).
    pub code: Option<u32>,
    /// The first line of `error_description`, without the Trace ID lines.
    pub message: String,
    pub suberror: Option<String>,
    /// A claims challenge to pass to the next interactive sign-in.
    pub claims: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl TokenError {
    /// Parses Microsoft's error JSON; `None` when the body is not such an answer.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let error = s("error")?;
        let description = s("error_description").unwrap_or_default();
        let message = description.lines().next().unwrap_or_default().to_owned();
        let code = v
            .get("error_codes")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .or_else(|| {
                let rest = message.strip_prefix("AADSTS")?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            });
        Some(Self {
            error,
            code,
            message,
            suberror: s("suberror"),
            claims: s("claims"),
            trace_id: s("trace_id"),
            correlation_id: s("correlation_id"),
        })
    }

    /// What to do about it.
    pub fn diagnose(&self) -> Diagnosis {
        if let Some(entry) = self.code.and_then(lookup) {
            return Diagnosis {
                code: Some(entry.code),
                class: entry.class,
                cause: entry.cause.to_owned(),
                fix: entry.fix.to_owned(),
                server_message: self.message.clone(),
            };
        }
        let class = match self.error.as_str() {
            "temporarily_unavailable" | "authorization_pending" | "slow_down" => Transient,
            "invalid_grant"
            | "interaction_required"
            | "expired_token"
            | "authorization_declined" => NeedsSignIn,
            "consent_required" => NeedsAdmin,
            "invalid_client"
            | "invalid_scope"
            | "invalid_request"
            | "unauthorized_client"
            | "invalid_resource"
            | "unsupported_grant_type" => Misconfigured,
            _ => Permanent,
        };
        Diagnosis {
            code: self.code,
            class,
            cause: format!("the identity platform answered {}", self.error),
            fix: "see the server message; look the code up at https://login.microsoftonline.com/error".to_owned(),
            server_message: self.message.clone(),
        }
    }
}

/// The explanation of an error for a person, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub code: Option<u32>,
    pub class: ErrorClass,
    pub cause: String,
    pub fix: String,
    /// Microsoft's own text, kept verbatim.
    pub server_message: String,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(code) = self.code {
            write!(f, "AADSTS{code}: ")?;
        }
        write!(f, "{}. Fix: {}", self.cause, self.fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_sorted_unique_and_complete() {
        assert!(CATALOGUE.windows(2).all(|w| w[0].code < w[1].code));
        for entry in CATALOGUE {
            assert!(
                !entry.cause.is_empty() && !entry.fix.is_empty(),
                "{}",
                entry.code
            );
            assert_eq!(lookup(entry.code), Some(entry));
        }
        // Every code named in microsoft-protocols.md §1.6.
        let notes = [
            700016, 7000215, 7000222, 7000218, 700025, 90002, 900023, 90038, 65001, 65004, 90094,
            90008, 50126, 50076, 50079, 70011, 700022, 28002, 28003, 700024, 700027, 50027, 50011,
            500113, 900971, 53003, 53000, 53001, 53002, 530035, 500011, 650052, 65005, 650056,
            650057, 50194, 9001023, 9002332, 9002331, 50020, 50034, 50053, 50055, 50057, 50058,
            50173, 700082, 70008, 54005, 70000, 700005, 90014, 900144, 70003, 70002, 90120, 70019,
            7000112, 700054, 50196, 70016, 70018, 70020, 501481, 50048, 70043, 9002313,
        ];
        for code in notes {
            assert!(
                lookup(code).is_some(),
                "AADSTS{code} missing from the catalogue"
            );
        }
    }

    #[test]
    fn secret_id_instead_of_value_names_the_portal_fix() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'x'.\r\nTrace ID: a\r\nCorrelation ID: b\r\nTimestamp: 2024-01-01 00:00:00Z","error_codes":[7000215],"trace_id":"a","correlation_id":"b"}"#;
        let err = TokenError::parse(body).unwrap();
        assert_eq!(err.code, Some(7_000_215));
        assert!(
            err.message
                .starts_with("AADSTS7000215: Invalid client secret")
        );
        assert!(!err.message.contains("Trace ID"));
        let d = err.diagnose();
        assert_eq!(d.class, ErrorClass::Misconfigured);
        assert!(
            d.to_string()
                .contains("copy the secret's Value, not its Secret ID"),
            "{d}"
        );
    }

    #[test]
    fn unknown_code_keeps_its_number_and_text() {
        let body =
            br#"{"error":"invalid_grant","error_description":"AADSTS1234567: Something new."}"#;
        let d = TokenError::parse(body).unwrap().diagnose();
        assert_eq!(d.code, Some(1_234_567));
        assert_eq!(d.class, ErrorClass::NeedsSignIn);
        assert_eq!(d.server_message, "AADSTS1234567: Something new.");
    }

    #[test]
    fn transient_and_mfa_classes() {
        assert_eq!(lookup(70016).unwrap().class, ErrorClass::Transient);
        assert_eq!(lookup(50076).unwrap().class, ErrorClass::NeedsSignIn);
        assert_eq!(lookup(65001).unwrap().class, ErrorClass::NeedsAdmin);
        let d = TokenError::parse(br#"{"error":"temporarily_unavailable"}"#)
            .unwrap()
            .diagnose();
        assert!(d.class.is_retryable());
    }

    #[test]
    fn non_error_bodies_are_not_token_errors() {
        for body in [&b""[..], b"{}", b"[1]", b"\xff\xfe", br#"{"error":5}"#] {
            assert!(TokenError::parse(body).is_none());
        }
    }
}
