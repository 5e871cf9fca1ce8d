//! The AADSTS errors the emulated identity platform answers, with Microsoft's texts
//! (`microsoft-protocols.md` §1.3-§1.6). Long forms ("does not", "is not") as the live
//! servers write them. Texts the notes do not give are marked "(text inferred)".

use axum::http::StatusCode;

use crate::aad::AadError;

const BAD: StatusCode = StatusCode::BAD_REQUEST;
const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

/// AADSTS900023 (text inferred).
pub fn malformed_tenant(segment: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        900_023,
        format!(
            "Specified tenant identifier '{segment}' is neither a valid DNS name, nor a valid external domain."
        ),
    )
}

/// AADSTS90002: `invalid_tenant` on discovery, `invalid_request` elsewhere.
pub fn tenant_not_found(segment: &str, on_discovery: bool) -> AadError {
    AadError::new(
        BAD,
        if on_discovery {
            "invalid_tenant"
        } else {
            "invalid_request"
        },
        90002,
        format!(
            "Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// AADSTS900144: a required parameter is missing.
pub fn missing_parameter(name: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        900_144,
        format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// AADSTS700016: unknown application.
pub fn app_not_found(client_id: &str, directory: &str) -> AadError {
    AadError::new(
        BAD,
        "unauthorized_client",
        700_016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{directory}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

/// AADSTS7000112: disabled application.
pub fn app_disabled(client_id: &str, name: &str) -> AadError {
    AadError::new(
        BAD,
        "unauthorized_client",
        7_000_112,
        format!("Application '{client_id}'({name}) is disabled."),
    )
}

/// AADSTS50194: single-tenant app on `common` / `organizations`.
pub fn not_multi_tenant(client_id: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        50194,
        format!(
            "Application '{client_id}' is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant."
        ),
    )
}

/// AADSTS9002331: personal-account-only app used with a work tenant endpoint.
pub fn msa_only_app(client_id: &str, name: &str) -> AadError {
    AadError::new(
        BAD,
        "unauthorized_client",
        9_002_331,
        format!(
            "Application '{client_id}'({name}) is configured for use by Microsoft Account users only. Please use the /consumers endpoint to serve this request."
        ),
    )
}

/// AADSTS9002332: work-and-school-only app used with `consumers`.
pub fn org_only_app(client_id: &str, name: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        9_002_332,
        format!(
            "Application '{client_id}'({name}) is configured for use by Azure Active Directory users only. Please do not use the /consumers endpoint to serve this request."
        ),
    )
}

/// AADSTS50011: redirect URI not registered.
pub fn redirect_mismatch(redirect_uri: &str, client_id: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        50011,
        format!(
            "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
        ),
    )
}

/// AADSTS500113: the app has no redirect URI at all.
pub fn no_reply_address() -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        500_113,
        "No reply address is registered for the application.",
    )
}

/// AADSTS70003.
pub fn unsupported_grant_type() -> AadError {
    AadError::new(
        BAD,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type.",
    )
}

/// AADSTS700054 / 700051: a response type other than `code`.
pub fn unsupported_response_type(response_type: &str) -> AadError {
    let code = if response_type.split_whitespace().any(|t| t == "token") {
        700_051
    } else {
        700_054
    };
    AadError::new(
        BAD,
        "unsupported_response_type",
        code,
        format!("response_type '{response_type}' is not enabled for the application."),
    )
}

/// AADSTS70011: invalid scope.
pub fn invalid_scope(scope: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_scope",
        70011,
        format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

/// AADSTS700022: more than one resource in one token request.
pub fn multiple_resources() -> AadError {
    AadError::new(
        BAD,
        "invalid_scope",
        700_022,
        "The provided value for the input parameter scope is not valid because it contains more than one resource.",
    )
}

/// AADSTS500011: the resource does not exist in the tenant.
pub fn resource_not_found(resource: &str, directory: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_resource",
        500_011,
        format!(
            "The resource principal named {resource} was not found in the tenant named {directory}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    )
}

/// AADSTS9001023: client credentials on `common` / `consumers`.
pub fn grant_not_on_common() -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        9_001_023,
        "The grant type is not supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
    )
}

/// AADSTS7000215: wrong secret (or the secret ID pasted instead of its value).
pub fn invalid_secret(client_id: &str) -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        7_000_215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
        ),
    )
}

/// AADSTS7000222: the secret has expired.
pub fn secret_expired(client_id: &str) -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        7_000_222,
        format!(
            "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
        ),
    )
}

/// AADSTS7000218: a confidential client sent no credential.
pub fn credential_required() -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        7_000_218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

/// AADSTS700025: a public client sent a credential.
pub fn public_client_with_credential() -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        700_025,
        "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    )
}

/// AADSTS700027: the assertion's certificate is not registered on the app.
pub fn assertion_key_not_registered() -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        700_027,
        "The certificate with identifier used to sign the client assertion is not registered on application.",
    )
}

/// AADSTS700027: bad assertion signature.
pub fn assertion_bad_signature() -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        700_027,
        "Client assertion failed signature validation.",
    )
}

/// AADSTS700027: the assertion's certificate has expired (text inferred).
pub fn assertion_key_expired(thumbprint_hex: &str, expired: &str) -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        700_027,
        format!(
            "Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{thumbprint_hex}', Found key 'End={expired}']"
        ),
    )
}

/// AADSTS50027: malformed assertion or unexpected audience / issuer (text inferred).
pub fn invalid_jwt(detail: &str) -> AadError {
    let message = if detail.is_empty() {
        "JWT token is invalid or malformed.".to_owned()
    } else {
        format!("Invalid JWT token. {detail}")
    };
    AadError::new(UNAUTHORIZED, "invalid_client", 50027, message)
}

/// AADSTS50048: `sub` differs from `iss` (text inferred).
pub fn subject_mismatch(sub: &str, iss: &str) -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        50048,
        format!(
            "Subject mismatches Issuer claim in the client assertion. Subject: '{sub}', Issuer: '{iss}'."
        ),
    )
}

/// AADSTS700024 with Microsoft's exact text (times in .NET round-trip form).
pub fn assertion_time_range(now: &str, valid_from: &str, expiry: &str) -> AadError {
    AadError::new(
        UNAUTHORIZED,
        "invalid_client",
        700_024,
        format!(
            "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {valid_from}, expiry time of assertion {expiry}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
        ),
    )
}

/// AADSTS53003: blocked by Conditional Access.
pub fn conditional_access_blocked() -> AadError {
    AadError::new(
        BAD,
        "interaction_required",
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
    )
    .suberror("message_only")
}

/// AADSTS70000: unknown code.
pub fn invalid_code() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        70000,
        "The provided value for the 'code' parameter is not valid.",
    )
}

/// AADSTS70008: expired code.
pub fn code_expired() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
    )
}

/// AADSTS54005: code already redeemed.
pub fn code_redeemed() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
    )
}

/// AADSTS700005: code redeemed at another tenant segment.
pub fn code_other_tenant() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        700_005,
        "Provided Authorization Code is intended to use against other tenant, thus rejected.",
    )
}

/// AADSTS501481: PKCE verifier mismatch.
pub fn pkce_mismatch() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        501_481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    )
}

/// AADSTS500112: the redirect URI differs from the one of the authorization request
/// (text inferred).
pub fn reply_address_mismatch(given: &str, original: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        500_112,
        format!(
            "The reply address '{given}' does not match the reply address '{original}' provided when requesting Authorization code."
        ),
    )
}

/// AADSTS9002313: unknown or malformed refresh token.
pub fn invalid_refresh_token() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        9_002_313,
        "Invalid request. Request is malformed or invalid.",
    )
}

/// AADSTS70000: a rotated refresh token used again while rotation revokes (text inferred).
pub fn refresh_token_revoked() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        70000,
        "The provided value for the 'refresh_token' parameter is not valid. The refresh token has been revoked.",
    )
}

/// AADSTS700082: idle refresh token.
pub fn refresh_token_idle(issued: &str, idle: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        700_082,
        format!(
            "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for {idle}."
        ),
    )
}

/// AADSTS65001 `consent_required`.
pub fn consent_required(client_id: &str, name: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' named '{name}'. Send an interactive authorization request for this user and resource."
        ),
    )
    .suberror("consent_required")
}

/// AADSTS50076 `basic_action` with a claims challenge.
pub fn mfa_required(resource_app_id: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        50076,
        format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{resource_app_id}'."
        ),
    )
    .suberror("basic_action")
    .claims(r#"{"access_token":{"capolids":{"essential":true,"values":["5f3f6b0e-6f5c-4a3e-9e0b-9f4f0d6c2a11"]}}}"#)
}

/// AADSTS70016 `authorization_pending`.
pub fn authorization_pending() -> AadError {
    AadError::new(
        BAD,
        "authorization_pending",
        70016,
        "The provided request has not yet been authorized by the user. The user must input their code.",
    )
}

/// AADSTS70020 `expired_token`.
pub fn device_code_expired() -> AadError {
    AadError::new(
        BAD,
        "expired_token",
        70020,
        "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
    )
}

/// AADSTS70018 `bad_verification_code` (text inferred).
pub fn bad_verification_code() -> AadError {
    AadError::new(
        BAD,
        "bad_verification_code",
        70018,
        "The provided value for the input parameter 'device_code' is not valid.",
    )
}

/// `authorization_declined`: Microsoft documents no number; AADSTS65004 is the
/// code of the same decision on /authorize.
pub fn authorization_declined() -> AadError {
    AadError::new(
        BAD,
        "authorization_declined",
        65004,
        "User declined to consent to access the app.",
    )
}

/// AADSTS90120: polling a device code that was already authorized or declined.
pub fn device_code_finished() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        90120,
        "The request was already authorized or declined.",
    )
}

/// AADSTS65004 `access_denied`: the user pressed Cancel on the consent page.
pub fn consent_declined() -> AadError {
    AadError::new(
        BAD,
        "access_denied",
        65004,
        "User declined to consent to access the app.",
    )
}

/// AADSTS50126: wrong password.
pub fn wrong_password() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        50126,
        "Error validating credentials due to invalid username or password.",
    )
}

/// AADSTS50034: no such user in the directory.
pub fn user_not_found(upn: &str, directory: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        50034,
        format!(
            "The user account {upn} does not exist in the {directory} directory. To sign into this application, the account must be added to the directory."
        ),
    )
}

/// AADSTS50020: a user of another directory (or a personal account) on this endpoint.
pub fn user_from_other_idp(
    upn: &str,
    idp: &str,
    directory: &str,
    client_id: &str,
    app: &str,
) -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        50020,
        format!(
            "User account '{upn}' from identity provider '{idp}' does not exist in tenant '{directory}' and cannot access the application '{client_id}'({app}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account."
        ),
    )
}

/// AADSTS500121: wrong MFA code (text inferred).
pub fn wrong_mfa_code() -> AadError {
    AadError::new(
        BAD,
        "invalid_grant",
        500_121,
        "Authentication failed during strong authentication request. The verification code you entered is not correct.",
    )
}

/// AADSTS90094: admin approval needed.
pub fn admin_approval_required() -> AadError {
    AadError::new(
        BAD,
        "access_denied",
        90094,
        "The grant requires admin permission.",
    )
}

/// AADSTS50058 `login_required` for `prompt=none` without a session.
pub fn login_required() -> AadError {
    AadError::new(
        BAD,
        "login_required",
        50058,
        "A silent sign-in request was sent but no user is signed in.",
    )
}

/// `consent_required` for `prompt=none` (AADSTS65001 text).
pub fn consent_required_silent(client_id: &str, name: &str) -> AadError {
    let mut e = consent_required(client_id, name);
    e.error = "consent_required";
    e.suberror = None;
    e
}

/// `interaction_required` for `prompt=none` when MFA is still needed (AADSTS50076).
pub fn interaction_required_mfa(resource_app_id: &str) -> AadError {
    let mut e = mfa_required(resource_app_id);
    e.error = "interaction_required";
    e.claims = None;
    e.suberror = None;
    e
}

/// PKCE required but no `code_challenge` (Microsoft's SPA text; knob `require_pkce`).
pub fn pkce_required() -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        9_002_325,
        "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
    )
}

/// An invalid value of a named parameter (text inferred).
pub fn invalid_parameter(name: &str, value: &str) -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        900_144,
        format!("The provided value '{value}' for the input parameter '{name}' is not valid."),
    )
}

/// The interactive flow id was unknown or already used (text inferred).
pub fn flow_expired() -> AadError {
    AadError::new(
        BAD,
        "invalid_request",
        50_000,
        "There was an issue with your sign-in session: the page has expired or was already submitted. Start the sign-in again.",
    )
}

/// AADSTS90094 for a non-admin on the admin-consent endpoint (text inferred).
pub fn admin_required_for_admin_consent(upn: &str) -> AadError {
    AadError::new(
        BAD,
        "access_denied",
        90094,
        format!(
            "The grant requires admin permission. The account '{upn}' is not an administrator of the tenant."
        ),
    )
}
