//! Who may do what: the roles of people and API tokens, and the one rule every
//! endpoint and page asks.
//!
//! - An **administrator** manages everything: providers and the domain table, apps,
//!   users, settings, and every account.
//! - A **user** manages their own accounts (and reads them).
//! - An **auditor** reads everything an administrator can see, changes nothing.

use serde::{Deserialize, Serialize};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Administrator,
    User,
    Auditor,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::User => "user",
            Role::Auditor => "auditor",
        }
    }

    /// The role called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "administrator" => Some(Role::Administrator),
            "user" => Some(Role::User),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read something that is not an account's (providers, apps, settings, the audit
    /// log, the list of users).
    ReadSystem,
    /// Change providers, the domain table, apps, users, tokens of others, settings.
    Administer,
    /// Read one account (its settings, state, messages, deliveries).
    ReadAccount { own: bool },
    /// Change one account (settings, routes, sinks, outbox, parked deliveries).
    WriteAccount { own: bool },
}

/// Whether `role` may do `action`. Every endpoint and page asks this one function.
pub fn allowed(role: Role, action: Action) -> bool {
    match (role, action) {
        (Role::Administrator, _)
        | (Role::Auditor, Action::ReadSystem | Action::ReadAccount { .. })
        | (Role::User, Action::ReadAccount { own: true } | Action::WriteAccount { own: true }) => {
            true
        }
        (Role::Auditor | Role::User, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table() {
        use Action::*;
        let actions = [
            ReadSystem,
            Administer,
            ReadAccount { own: true },
            ReadAccount { own: false },
            WriteAccount { own: true },
            WriteAccount { own: false },
        ];
        let table = [
            (Role::Administrator, [true, true, true, true, true, true]),
            (Role::Auditor, [true, false, true, true, false, false]),
            (Role::User, [false, false, true, false, true, false]),
        ];
        for (role, expected) in table {
            for (action, want) in actions.iter().zip(expected) {
                assert_eq!(allowed(role, *action), want, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for role in [Role::Administrator, Role::User, Role::Auditor] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
