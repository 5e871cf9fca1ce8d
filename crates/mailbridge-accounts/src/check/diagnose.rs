//! From a refusal to the admin's fix: what the token says about itself (audience,
//! `roles`, `scp`, the app's `oid`) read together with the server's answer, per row of
//! the admin-mistake matrix (`microsoft-protocols.md` §8.2).
//!
//! IMAP, POP and SMTP refuse every Exchange-side mistake with the same words, so once
//! the token is known to be right the fix lists the Exchange-side steps that can be
//! missing, filled in with the token's own ids. Graph and EWS name the problem; the
//! token then tells consent problems apart from mailbox-side ones.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailbridge_auth::claims::TokenClaims;
use mailbridge_auth::scopes::Grant;
use mailbridge_types::config::Transport;
use secrecy::{ExposeSecret as _, SecretString};

use super::Fix;

/// The claims of an access token that explain trouble (never the token itself).
#[derive(Debug, Default)]
pub(super) struct TokenView {
    pub claims: Option<TokenClaims>,
    /// `oid`: for an app-only token, the Enterprise application's Object ID.
    pub oid: Option<String>,
}

impl TokenView {
    pub fn of(token: &SecretString) -> Self {
        let raw = token.expose_secret();
        let oid = raw
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("oid").and_then(|o| o.as_str()).map(str::to_owned));
        Self {
            claims: TokenClaims::decode(raw),
            oid,
        }
    }

    fn app_id(&self) -> String {
        self.claims
            .as_ref()
            .and_then(|c| c.app_id.clone())
            .unwrap_or_else(|| "<Application (client) ID>".to_owned())
    }

    fn object_id(&self) -> String {
        self.oid.clone().unwrap_or_else(|| {
            "<Object ID from Enterprise applications, not from App registrations>".to_owned()
        })
    }

    /// The token's own problems for `transport`, joined; `None` when it has none or
    /// cannot be read (an opaque personal-account token). One problem keeps its id.
    fn problems(&self, transport: Transport, grant: Grant) -> Option<Fix> {
        let problems = self.claims.as_ref()?.problems(transport, grant);
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        match problems.as_slice() {
            [] => None,
            [one] => Some(
                one.args
                    .iter()
                    .fold(Fix::new(one.id, text), |f, (k, v)| f.arg(k, v.clone())),
            ),
            _ => Some(Fix::from(text)),
        }
    }
}

/// What the "get token" step shows: audience and roles or scopes, never the token.
pub(super) fn describe_token(token: &SecretString, grant: Grant) -> String {
    let view = TokenView::of(token);
    let Some(c) = view.claims else {
        return "access token issued (opaque, as for personal accounts)".to_owned();
    };
    match grant {
        Grant::AppOnly if c.roles.is_empty() => {
            format!("access token issued for {}, with no roles", c.audience)
        }
        Grant::AppOnly => format!(
            "access token issued for {}, roles {}",
            c.audience,
            c.roles.join(", ")
        ),
        Grant::Delegated => format!(
            "access token issued for {}{}, scopes {}",
            c.audience,
            c.user.map(|u| format!(" as {u}")).unwrap_or_default(),
            c.scopes.join(" ")
        ),
    }
}

fn protocol_switch(transport: Transport, mailbox: &str) -> Option<String> {
    match transport {
        Transport::Imap => Some(format!(
            "IMAP is disabled for the mailbox: `Set-CASMailbox -Identity {mailbox} -ImapEnabled $true`"
        )),
        Transport::Pop3 => Some(format!(
            "POP is disabled for the mailbox: `Set-CASMailbox -Identity {mailbox} -PopEnabled $true`"
        )),
        // SMTP AUTH switched off has its own answer (5.7.139).
        _ => None,
    }
}

const LICENCE: &str = "the mailbox has no Exchange Online licence or is on-premises: Microsoft 365 admin center -> Users -> Active users -> the user -> Licenses and apps, assign a licence that includes Exchange Online";
const PROPAGATION: &str = "the change was made less than 30 minutes ago: Exchange Online takes up to 30 minutes to apply a new service principal or mailbox permission, so test again later";

fn numbered(items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| format!("({}) {s}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A server reply's meaning as a fix: the library's words with the meaning's id.
fn meaning(id: Option<&'static str>, text: &str) -> Fix {
    match id {
        Some(id) if !text.is_empty() => Fix::new(id, text),
        _ => Fix::from(text),
    }
}

/// An IMAP reply's fix (`mailbridge_imap::Meaning::fix`) with its id.
pub(super) fn imap_meaning(m: mailbridge_imap::Meaning) -> Fix {
    use mailbridge_imap::Meaning as M;
    let id = match m {
        M::AuthenticationFailed => Some("imap-authentication-failed"),
        M::Throttled { .. } => Some("imap-throttled"),
        M::Transient => Some("imap-transient"),
        M::Rejected => Some("imap-rejected"),
        _ => None,
    };
    meaning(id, m.fix())
}

/// A POP3 reply's fix (`mailbridge_pop3::Meaning::fix`) with its id.
pub(super) fn pop3_meaning(m: mailbridge_pop3::Meaning) -> Fix {
    use mailbridge_pop3::Meaning as M;
    let id = match m {
        M::AuthenticationFailed => Some("pop3-authentication-failed"),
        M::PopDisabled => Some("pop3-disabled"),
        M::Transient => Some("pop3-transient"),
        M::Rejected => Some("pop3-rejected"),
        _ => None,
    };
    meaning(id, m.fix())
}

/// An SMTP reply's fix (`mailbridge_smtp::Meaning::fix`) with its id.
pub(super) fn smtp_meaning(m: mailbridge_smtp::Meaning) -> Fix {
    use mailbridge_smtp::Meaning as M;
    let id = match m {
        M::SmtpAuthDisabledForTenant => Some("smtp-auth-disabled-for-tenant"),
        M::SmtpAuthDisabledForMailbox => Some("smtp-auth-disabled-for-mailbox"),
        M::BasicAuthDisabled => Some("smtp-basic-auth-disabled"),
        M::AuthenticationFailed => Some("smtp-authentication-failed"),
        M::SendAsDenied => Some("smtp-send-as-denied"),
        M::Throttled => Some("smtp-throttled"),
        M::TooLarge => Some("smtp-too-large"),
        M::Transient => Some("smtp-transient"),
        M::Rejected => Some("smtp-rejected"),
        _ => None,
    };
    meaning(id, m.fix())
}

/// A Graph answer's fix (`mailbridge_graph::Meaning::fix`) with its id.
fn graph_meaning(m: mailbridge_graph::Meaning) -> Fix {
    use mailbridge_graph::Meaning as M;
    let id = match m {
        M::Throttled => Some("graph-throttled"),
        M::NotFound => Some("graph-not-found"),
        M::ResyncRequired => Some("graph-resync-required"),
        M::Transient => Some("graph-transient"),
        M::Rejected => Some("graph-rejected"),
        _ => None,
    };
    meaning(id, m.fix())
}

/// The name of `transport` in a fix id (`imap`, `pop3`, `smtp`).
fn transport_id(transport: Transport) -> &'static str {
    match transport {
        Transport::Imap => "imap",
        Transport::Pop3 => "pop3",
        Transport::Smtp => "smtp",
        Transport::Graph => "graph",
        Transport::Ews => "ews",
    }
}

/// IMAP, POP or SMTP refused the sign-in (`NO AUTHENTICATE failed.`, `-ERR [AUTH]`,
/// `535 5.7.3`): the token's problems if it has any, else the Exchange-side steps.
/// Ids: `mail-refused-password-<transport>`, `mail-refused-app-only-<transport>`,
/// `mail-refused-delegated-<transport>`, `mail-refused-other-user-<transport>`.
pub(super) fn mail_refusal(
    token: Option<(&SecretString, Grant)>,
    transport: Transport,
    mailbox: &str,
    server_fix: Fix,
) -> Fix {
    let protocol = transport_id(transport);
    let Some((token, grant)) = token else {
        let switch = protocol_switch(transport, mailbox)
            .map(|s| format!("; and if the password is right, {s}"))
            .unwrap_or_default();
        return Fix::new(format!("mail-refused-password-{protocol}"), format!(
            "the server refused the login name and password: check both (`mailbridge account edit`; on-premises Exchange may want DOMAIN\\user or the user principal name: `--login-format`); with two-step verification the provider wants an app password instead of the account's own (Outlook.com, Gmail, iCloud, Yahoo); Exchange Online refuses passwords where Basic authentication is disabled (for Microsoft 365 set the account's sign_in to app-only or delegated){switch}"
        ))
        .arg("mailbox", mailbox);
    };
    let view = TokenView::of(token);
    if view.claims.is_none() {
        return server_fix;
    }
    if let Some(problems) = view.problems(transport, grant) {
        return problems;
    }
    let mut items = Vec::new();
    let (lead, id, args) = match grant {
        Grant::AppOnly => {
            let (app, oid) = (view.app_id(), view.object_id());
            items.push(format!(
                "the app's service principal is not registered in Exchange, or was registered with the App registrations Object ID: run `New-ServicePrincipal -AppId {app} -ObjectId {oid}` ({oid} is the Object ID from Enterprise applications, not from App registrations; it is this token's oid)"
            ));
            items.push(format!(
                "the service principal has no FullAccess on the mailbox: `Add-MailboxPermission -Identity {mailbox} -User {oid} -AccessRights FullAccess`"
            ));
            (
                "the token is right (Exchange Online audience with the role), so Exchange refused on its side; missing is one of",
                format!("mail-refused-app-only-{protocol}"),
                vec![("app", app), ("oid", oid)],
            )
        }
        Grant::Delegated => {
            let user = view
                .claims
                .as_ref()
                .and_then(|c| c.user.clone())
                .unwrap_or_default();
            let other_user = !user.is_empty() && !user.eq_ignore_ascii_case(mailbox);
            if other_user {
                items.push(format!(
                    "{user} signed in but the mailbox is {mailbox}: give {user} FullAccess (`Add-MailboxPermission -Identity {mailbox} -User {user} -AccessRights FullAccess`) or sign in as {mailbox}"
                ));
            }
            (
                "the token is right (Exchange Online audience with the scope), so Exchange refused on its side; missing is one of",
                if other_user {
                    format!("mail-refused-other-user-{protocol}")
                } else {
                    format!("mail-refused-delegated-{protocol}")
                },
                if other_user {
                    vec![("user", user)]
                } else {
                    Vec::new()
                },
            )
        }
    };
    items.extend(protocol_switch(transport, mailbox));
    items.push(LICENCE.to_owned());
    items.push(PROPAGATION.to_owned());
    args.into_iter().fold(
        Fix::new(id, format!("{lead}: {}", numbered(&items))).arg("mailbox", mailbox),
        |f, (k, v)| f.arg(k, v),
    )
}

/// The Graph permission an operation needs, for app-only tokens.
fn graph_roles(sending: bool) -> &'static [&'static str] {
    if sending {
        &["Mail.Send"]
    } else {
        &["Mail.ReadWrite", "Mail.Read"]
    }
}

/// True for a Graph token's audience (as `TokenClaims::problems` reads it).
fn is_graph_audience(audience: &str) -> bool {
    let aud = audience.trim_end_matches('/').to_ascii_lowercase();
    aud.contains("graph.") || aud == "00000003-0000-0000-c000-000000000000"
}

/// Graph refused a request.
pub(super) fn graph_refusal(
    token: &SecretString,
    grant: Grant,
    error: &mailbridge_graph::ClientError,
    mailbox: &str,
    sending: bool,
) -> Fix {
    use mailbridge_graph::Meaning;
    let mailbridge_graph::ClientError::Graph(g) = error else {
        return Fix::new(
            "graph-unreachable",
            "check that this machine reaches the Graph root (DNS, proxy, firewall) and that the endpoint's host is the Graph root",
        );
    };
    let view = TokenView::of(token);
    let app = view.app_id();
    let missing_role = match (&view.claims, grant) {
        (Some(c), Grant::AppOnly) => {
            let needed = graph_roles(sending);
            (!needed.iter().any(|n| c.roles.iter().any(|r| r == n))).then(|| {
                let (what, id) = if c.roles.is_empty() {
                    ("the app-only token carries no roles at all".to_owned(), "graph-no-roles")
                } else {
                    (format!("the app-only token has the roles {} but not {}", c.roles.join(", "), needed.join(" or ")), "graph-missing-role")
                };
                Fix::new(id, format!(
                    "{what}. Fix: in App registrations -> API permissions -> Add a permission -> Microsoft Graph -> Application permissions add {}, then press \"Grant admin consent for <tenant>\" (a permission listed but not consented gives a token without the role)",
                    needed.join(" or ")
                ))
                .arg("roles", c.roles.join(", "))
                .arg("needed", needed.join(" / "))
            })
        }
        (Some(c), Grant::Delegated) if sending && !c.scopes.iter().any(|s| s == "Mail.Send") => {
            Some(Fix::new("graph-no-mail-send-scope", format!(
                "the delegated token's scopes ({}) do not include Mail.Send. Fix: add the delegated permission Mail.Send (Microsoft Graph) in App registrations -> API permissions and sign in again so the user (or an admin) consents",
                c.scopes.join(" ")
            ))
            .arg("scopes", c.scopes.join(" ")))
        }
        _ => None,
    };
    // The token's own problems; for sending, its permission is Mail.Send, not the
    // Mail.ReadWrite / Mail.Read that reading needs (a Graph token's audience problem
    // comes first either way).
    let claims_problem = match view.problems(Transport::Graph, grant) {
        Some(_)
            if sending
                && view
                    .claims
                    .as_ref()
                    .is_some_and(|c| is_graph_audience(&c.audience)) =>
        {
            missing_role.clone()
        }
        other => other,
    };
    match g.meaning {
        Meaning::BadToken => claims_problem.unwrap_or_else(|| {
            Fix::new("graph-token-refused", format!("{} (the token's audience and permissions look right, so it expired or is not signed by this tenant: get a new one)", g.meaning.fix()))
        }),
        Meaning::AccessDenied => match (missing_role, claims_problem, grant) {
            (Some(p), _, _) | (None, Some(p), _) => p,
            (None, None, Grant::Delegated) => Fix::new("graph-denied-delegated", format!(
                "the token has the permission, so the signed-in user may not open {mailbox}: give them FullAccess (`Add-MailboxPermission -Identity {mailbox} -User <user> -AccessRights FullAccess`) and request Mail.ReadWrite.Shared / Mail.Send.Shared, or sign in as {mailbox}"
            ))
            .arg("mailbox", mailbox),
            (None, None, Grant::AppOnly) => Fix::new("graph-denied-app-only", format!(
                "the token has the role, so Exchange denies {mailbox} to this app: an RBAC for Applications assignment or application access policy scoped away from it (`Test-ServicePrincipalAuthorization -Identity {app} -Resource {mailbox}`, `Test-ApplicationAccessPolicy -Identity {mailbox} -AppId {app}`)"
            ))
            .arg("mailbox", mailbox)
            .arg("app", app),
        },
        Meaning::OutsideAccessPolicy => Fix::new(
            if missing_role.is_none() {
                "graph-outside-policy-with-role"
            } else {
                "graph-outside-policy"
            },
            format!(
                "the token is right{}, but an application access policy (or an RBAC for Applications scope) leaves {mailbox} outside the app's reach: add {mailbox} to the mail-enabled security group named in the policy (`Get-ApplicationAccessPolicy`, then `Add-DistributionGroupMember -Identity <group> -Member {mailbox}`) or remove a DenyAccess policy that lists it, and check with `Test-ApplicationAccessPolicy -Identity {mailbox} -AppId {app}`; changes can take an hour to apply",
                if missing_role.is_none() { " (it has the Mail role)" } else { "" }
            ),
        )
        .arg("mailbox", mailbox)
        .arg("app", app),
        Meaning::MailboxNotEnabled => Fix::new("graph-mailbox-not-enabled", format!(
            "{mailbox} has no mailbox in Exchange Online: {LICENCE}; a mailbox that is on-premises (hybrid) is reached over EWS on the on-premises server, not Graph"
        ))
        .arg("mailbox", mailbox),
        Meaning::UnknownUser => Fix::new("graph-unknown-user", format!(
            "no user {mailbox} in the token's tenant: check the account's address (the user principal name or the Object ID from Microsoft Entra ID -> Users) and that the app's tenant is the mailbox's tenant"
        ))
        .arg("mailbox", mailbox),
        _ if g.message.contains("/me request is only valid with delegated") => {
            Fix::new("graph-me-app-only", "an app-only token cannot use /me: the account must name the mailbox (address or object id)")
        }
        other => graph_meaning(other),
    }
}

/// EWS refused a request.
pub(super) fn ews_refusal(
    token: Option<(&SecretString, Grant)>,
    error: &mailbridge_ews::EwsError,
    mailbox: &str,
) -> Fix {
    use mailbridge_ews::EwsError;
    let view = token.map(|(t, g)| (TokenView::of(t), g));
    let problems = view
        .as_ref()
        .and_then(|(v, g)| v.problems(Transport::Ews, *g));
    let app = view
        .as_ref()
        .map_or_else(|| "<client id>".to_owned(), |(v, _)| v.app_id());
    match error {
        EwsError::Unauthorized { .. } if view.is_none() => {
            Fix::new("ews-password-refused", "EWS refused the user name and password: check them, and note that Exchange Online accepts only OAuth tokens (Basic works on-premises only)")
        }
        EwsError::Unauthorized { diagnostics } => problems.unwrap_or_else(|| {
            let code = diagnostics
                .as_deref()
                .and_then(|d| d.split(';').next())
                .unwrap_or_default();
            if code == "2000005" {
                Fix::new("ews-token-expired", "the token has expired: get a new one")
            } else {
                Fix::from(error.to_string())
            }
        }),
        EwsError::Response { code, .. } => match code.as_str() {
            "ErrorAccessDenied" => Fix::new("ews-access-denied", format!(
                "the token is right, so Exchange denies EWS to {mailbox} for this app; one of: (1) an application access policy or RBAC scope excludes the mailbox (`Test-ApplicationAccessPolicy -Identity {mailbox} -AppId {app}`; add the mailbox to the policy's group); (2) EWS is off or the app is not allowed for the organisation: `Set-OrganizationConfig -EwsEnabled $true`, and with `-EwsApplicationAccessPolicy EnforceAllowList` add the app: `Set-OrganizationConfig -EwsAllowedAppIDs @{{Add='{app}'}}`; (3) EWS is off for the mailbox: `Set-CASMailbox -Identity {mailbox} -EwsEnabled $true`; changes can take an hour to apply"
            ))
            .arg("mailbox", mailbox)
            .arg("app", app),
            "ErrorImpersonateUserDenied" => Fix::new("ews-impersonation-denied", format!(
                "the app may not impersonate {mailbox}: an application access policy or RBAC scope excludes it (`Test-ApplicationAccessPolicy -Identity {mailbox} -AppId {app}`)"
            ))
            .arg("mailbox", mailbox)
            .arg("app", app),
            "ErrorNonExistentMailbox" => Fix::new("ews-no-mailbox", format!(
                "{mailbox} has no Exchange mailbox here: {LICENCE}; check the account's address"
            ))
            .arg("mailbox", mailbox),
            "ErrorSendAsDenied" => Fix::new("ews-send-as-denied", format!(
                "{mailbox} may not send as this address: `Add-RecipientPermission -Identity <address> -Trustee {mailbox} -AccessRights SendAs`"
            ))
            .arg("mailbox", mailbox),
            _ => Fix::from(error.to_string()),
        },
        EwsError::Http { .. } => {
            Fix::new("ews-unreachable", "check that this machine reaches the EWS URL (DNS, proxy, firewall) and that it ends in /EWS/Exchange.asmx")
        }
        other => Fix::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> SecretString {
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        SecretString::from(format!(
            "{}.{}.c2ln",
            part(&serde_json::json!({"alg": "RS256"})),
            part(claims)
        ))
    }

    #[test]
    fn a_roleless_app_token_lacks_mail_send_for_sending_and_mail_read_for_reading() {
        let t = token(&serde_json::json!({
            "aud": "https://graph.microsoft.com",
            "appid": "11111111-2222-3333-4444-555555555555",
            "oid": "99999999-2222-3333-4444-555555555555",
        }));
        // Graph's 401 for a token it will not take: the token's own problem is the fix.
        let e = mailbridge_graph::ClientError::Graph(mailbridge_graph::GraphError::from_answer(
            401,
            None,
            None,
            br#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token validation failure."}}"#,
        ));
        let sending = graph_refusal(&t, Grant::AppOnly, &e, "alice@contoso.com", true).text;
        assert!(sending.contains("carries no roles"), "{sending}");
        assert!(sending.contains("Mail.Send"), "{sending}");
        assert!(
            !sending.contains("Mail.ReadWrite") && !sending.contains("Mail.Read "),
            "{sending}"
        );
        let reading = graph_refusal(&t, Grant::AppOnly, &e, "alice@contoso.com", false).text;
        assert!(reading.contains("Mail.ReadWrite"), "{reading}");
        assert!(!reading.contains("Mail.Send"), "{reading}");
    }
}
