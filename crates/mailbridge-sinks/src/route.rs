//! Routes: ordered rules that choose the sinks of a received message, and what is done
//! with it at the source once every sink accepted it.
//!
//! A rule matches on the sender, a recipient, the subject, whether it has
//! attachments, its size and the folder it came from; every condition set must hold.
//! Text conditions are wildcard patterns (`*` any run, `?` one character) compared
//! without case: `*@contoso.com`, `*invoice*`. The first rule that matches decides
//! (its sinks and its source action); a message no rule matches goes nowhere and its
//! source is left as it is. Matching is linear in the pattern and text lengths, so a
//! hostile subject cannot make it slow.

use serde::{Deserialize, Serialize};

use crate::summary::Summary;

/// What happens at the source after every sink of a message accepted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum SourceAction {
    /// Leave the message as it is.
    #[default]
    Keep,
    /// Mark it read.
    MarkRead,
    /// Move it to this folder.
    Move { folder: String },
    /// Delete it.
    Delete,
}

/// The conditions of a rule; an unset one always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conditions {
    /// A pattern one `From` address must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A pattern one `To` or `Cc` address must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// A pattern the subject must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_attachments: Option<bool>,
    /// At least this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// At most this many bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// A pattern the folder's name must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Shown in events and the API.
    pub name: String,
    #[serde(default)]
    pub when: Conditions,
    /// The names of the sinks the message goes to (all of them).
    pub sinks: Vec<String>,
    /// Done at the source after every sink accepted the message.
    #[serde(default)]
    pub then: SourceAction,
}

/// The first route of `routes` that matches a message from `folder`.
pub fn choose<'r>(routes: &'r [Route], folder: &str, message: &Summary) -> Option<&'r Route> {
    routes.iter().find(|r| r.when.matches(folder, message))
}

impl Conditions {
    /// Whether a message from `folder` meets every condition.
    pub fn matches(&self, folder: &str, message: &Summary) -> bool {
        let any_address = |pattern: &Option<String>, lists: &[&[crate::summary::Mailbox]]| {
            pattern.as_deref().is_none_or(|p| {
                lists
                    .iter()
                    .flat_map(|l| l.iter())
                    .filter_map(|m| m.address.as_deref())
                    .any(|a| wildcard(p, a))
            })
        };
        any_address(&self.from, &[&message.from])
            && any_address(&self.to, &[&message.to, &message.cc])
            && self
                .subject
                .as_deref()
                .is_none_or(|p| wildcard(p, message.subject.as_deref().unwrap_or("")))
            && self
                .has_attachments
                .is_none_or(|want| want != message.attachments.is_empty())
            && self.min_size.is_none_or(|min| message.size >= min)
            && self.max_size.is_none_or(|max| message.size <= max)
            && self.folder.as_deref().is_none_or(|p| wildcard(p, folder))
    }
}

/// `text` matches `pattern` (`*` any run of characters, `?` one), ignoring case.
/// Greedy with one backtrack point: O(pattern × text) at worst, no recursion.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{AttachmentInfo, Mailbox};

    fn message() -> Summary {
        Summary {
            from: vec![Mailbox {
                name: Some("Alice".into()),
                address: Some("Alice@Contoso.com".into()),
            }],
            to: vec![Mailbox {
                name: None,
                address: Some("helpdesk@fabrikam.example".into()),
            }],
            cc: vec![Mailbox {
                name: None,
                address: Some("docs@fabrikam.example".into()),
            }],
            subject: Some("Invoice 2026-12 for ACME".into()),
            size: 5000,
            attachments: vec![AttachmentInfo {
                name: Some("i.pdf".into()),
                content_type: "application/pdf".into(),
                size: 4000,
            }],
            ..Summary::default()
        }
    }

    #[test]
    fn wildcards_match_as_expected() {
        for (p, t, want) in [
            ("*@contoso.com", "alice@CONTOSO.com", true),
            ("*@contoso.com", "alice@contoso.com.evil", false),
            ("*invoice*", "Your Invoice is ready", true),
            ("inv?ice", "invoice", true),
            ("inv?ice", "invoce", false),
            ("", "", true),
            ("", "x", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("Zażółć*", "ZAŻÓŁĆ gęślą", true),
        ] {
            assert_eq!(wildcard(p, t), want, "{p:?} {t:?}");
        }
    }

    #[test]
    fn a_hostile_pattern_stays_fast() {
        // Exponential for a naive backtracking matcher; linear-ish here.
        let text = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!wildcard(&pattern, &text));
    }

    #[test]
    fn every_condition_must_hold() {
        let m = message();
        let all = Conditions {
            from: Some("*@contoso.com".into()),
            to: Some("docs@*".into()),
            subject: Some("invoice*".into()),
            has_attachments: Some(true),
            min_size: Some(1000),
            max_size: Some(10_000),
            folder: Some("INBOX".into()),
        };
        assert!(all.matches("INBOX", &m));
        assert!(!all.matches("Archive", &m));
        for broken in [
            Conditions {
                from: Some("*@fabrikam.example".into()),
                ..all.clone()
            },
            Conditions {
                to: Some("sales@*".into()),
                ..all.clone()
            },
            Conditions {
                subject: Some("receipt*".into()),
                ..all.clone()
            },
            Conditions {
                has_attachments: Some(false),
                ..all.clone()
            },
            Conditions {
                min_size: Some(5001),
                ..all.clone()
            },
            Conditions {
                max_size: Some(4999),
                ..all.clone()
            },
        ] {
            assert!(!broken.matches("INBOX", &m), "{broken:?}");
        }
        assert!(Conditions::default().matches("anything", &m));
    }

    #[test]
    fn the_first_matching_route_decides() {
        let routes: Vec<Route> = toml::from_str::<std::collections::BTreeMap<String, Vec<Route>>>(
            r#"
            [[route]]
            name = "invoices to documents"
            when = { subject = "*invoice*", has_attachments = true }
            sinks = ["attachments", "archive"]
            then = { action = "move", folder = "Processed" }

            [[route]]
            name = "everything else to the helpdesk"
            sinks = ["helpdesk-webhook"]
            then = { action = "mark-read" }
            "#,
        )
        .unwrap()
        .remove("route")
        .unwrap();
        let chosen = choose(&routes, "INBOX", &message()).unwrap();
        assert_eq!(chosen.name, "invoices to documents");
        assert_eq!(
            chosen.then,
            SourceAction::Move {
                folder: "Processed".into()
            }
        );
        let mut plain = message();
        plain.attachments.clear();
        assert_eq!(
            choose(&routes, "INBOX", &plain).unwrap().sinks,
            ["helpdesk-webhook"]
        );
        assert!(choose(&routes[..1], "INBOX", &plain).is_none());
    }

    #[test]
    fn unknown_conditions_are_refused() {
        let e = toml::from_str::<Route>("name = \"x\"\nsinks = []\nwhen = { sender = \"a\" }\n")
            .unwrap_err();
        assert!(e.to_string().contains("sender"), "{e}");
    }
}
