//! Which scopes to request for each transport and sign-in method
//! (`microsoft-protocols.md` §1.8): one resource per token request.

use serde::{Deserialize, Serialize};

pub use mailbridge_types::config::Transport;

/// OpenID Connect scopes added to every delegated sign-in (browser, paste, device code)
/// so that the answer carries an ID token naming the user who signed in.
pub const IDENTITY_SCOPES: [&str; 2] = ["openid", "profile"];

/// `scopes` with [`IDENTITY_SCOPES`] added (once).
pub fn with_identity_scopes(scopes: &[String]) -> Vec<String> {
    let mut all = scopes.to_vec();
    for s in IDENTITY_SCOPES {
        if !all.iter().any(|x| x == s) {
            all.push(s.to_owned());
        }
    }
    all
}

/// Delegated (a user signs in) or app-only (client credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    Delegated,
    AppOnly,
}

/// The scopes for a transport, sorted, for a token request.
///
/// `graph_root` is the Graph resource of the account's cloud
/// (`https://graph.microsoft.com` by default).
pub fn scopes_for(transport: Transport, grant: Grant, graph_root: &str) -> Vec<String> {
    let graph = graph_root.trim_end_matches('/');
    let mut scopes: Vec<String> = match (transport, grant) {
        (Transport::Graph, Grant::AppOnly) => vec![format!("{graph}/.default")],
        (Transport::Graph, Grant::Delegated) => vec![
            format!("{graph}/Mail.ReadWrite"),
            format!("{graph}/Mail.Send"),
            "offline_access".to_owned(),
        ],
        (_, Grant::AppOnly) => vec!["https://outlook.office365.com/.default".to_owned()],
        (Transport::Imap, Grant::Delegated) => delegated_outlook("IMAP.AccessAsUser.All"),
        (Transport::Pop3, Grant::Delegated) => delegated_outlook("POP.AccessAsUser.All"),
        (Transport::Smtp, Grant::Delegated) => delegated_outlook("SMTP.Send"),
        (Transport::Ews, Grant::Delegated) => delegated_outlook("EWS.AccessAsUser.All"),
    };
    scopes.sort();
    scopes
}

fn delegated_outlook(permission: &str) -> Vec<String> {
    vec![
        format!("https://outlook.office.com/{permission}"),
        "offline_access".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_cheat_sheet() {
        let g = "https://graph.microsoft.com";
        assert_eq!(
            scopes_for(Transport::Graph, Grant::AppOnly, g),
            ["https://graph.microsoft.com/.default"]
        );
        assert_eq!(
            scopes_for(Transport::Imap, Grant::AppOnly, g),
            ["https://outlook.office365.com/.default"]
        );
        assert_eq!(
            scopes_for(Transport::Imap, Grant::Delegated, g),
            [
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access"
            ]
        );
        assert_eq!(
            scopes_for(Transport::Smtp, Grant::Delegated, g),
            ["https://outlook.office.com/SMTP.Send", "offline_access"]
        );
        assert_eq!(
            scopes_for(
                Transport::Graph,
                Grant::Delegated,
                "https://graph.microsoft.us/"
            ),
            [
                "https://graph.microsoft.us/Mail.ReadWrite",
                "https://graph.microsoft.us/Mail.Send",
                "offline_access"
            ]
        );
    }
}
