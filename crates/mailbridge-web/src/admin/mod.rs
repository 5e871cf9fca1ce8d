//! The administration pages: the navigation every signed-in page shows, and the
//! pages of apps, providers, the outbox, parked deliveries, users and tokens,
//! settings and the audit log.
//!
//! Each page asks [`mailbridge_types::access::allowed`] for the signed-in person's
//! role (administrators change, auditors read, users see only what the API lets a
//! user see), and each change goes through the function the REST API's handler
//! calls, with the person as the caller, so the rules, the validation and the audit
//! log entry are the API's.

use mailbridge_types::access::{Action, allowed};

use crate::i18n::Tr;
use crate::pages::Who;

/// One link of the navigation.
#[derive(Debug)]
pub(crate) struct NavLink {
    pub(crate) href: &'static str,
    pub(crate) label: String,
}

/// The pages of the navigation, in order: address, message id, and what the role
/// must be allowed to open it.
const NAV: [(&str, &str, Action); 9] = [
    (
        "/",
        "admin-nav-dashboard",
        Action::ReadAccount { own: true },
    ),
    (
        "/accounts",
        "admin-nav-accounts",
        Action::ReadAccount { own: true },
    ),
    ("/apps", "admin-nav-apps", Action::ReadSystem),
    ("/providers", "admin-nav-providers", Action::ReadSystem),
    (
        "/outbox",
        "admin-nav-outbox",
        Action::ReadAccount { own: true },
    ),
    (
        "/parked",
        "admin-nav-parked",
        Action::ReadAccount { own: true },
    ),
    ("/users", "admin-nav-users", Action::ReadSystem),
    ("/settings", "admin-nav-settings", Action::ReadSystem),
    ("/audit", "admin-nav-audit", Action::ReadSystem),
];

impl Who {
    /// The links of the navigation this person's role may open.
    pub(crate) fn nav(&self, t: &Tr) -> Vec<NavLink> {
        NAV.iter()
            .filter(|(_, _, action)| allowed(self.role, *action))
            .map(|(href, id, _)| NavLink {
                href,
                label: t.get(id),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mailbridge_types::access::Role;

    use super::*;

    fn hrefs(role: Role) -> Vec<&'static str> {
        let who = Who {
            line: String::new(),
            csrf: String::new(),
            role,
        };
        who.nav(&Tr::new("en")).iter().map(|l| l.href).collect()
    }

    #[test]
    fn the_navigation_shows_only_what_the_role_may_open() {
        assert_eq!(hrefs(Role::Administrator).len(), NAV.len());
        assert_eq!(hrefs(Role::Auditor).len(), NAV.len());
        assert_eq!(hrefs(Role::User), ["/", "/accounts", "/outbox", "/parked"]);
    }
}
