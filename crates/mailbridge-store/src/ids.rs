//! Stable ids of apps, accounts, providers and sinks: a UUID given when the record is first
//! stored, kept when its name is edited, never reused.
//!
//! UUIDs rather than integers: they are the same in SQLite and PostgreSQL (no
//! sequence to carry over when a database moves), a record keeps its id when exported
//! from one instance and imported into another, a deleted account's id is never handed
//! to a new one (its checkpoints and leases cannot be mistaken for the new account's),
//! and an id in an API path says nothing about how many records there are.

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub(crate) fn generate() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id from its UUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID of the id.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// The stable id of an app registration.
    AppId
);
id_type!(
    /// The stable id of an account.
    AccountId
);
id_type!(
    /// The stable id of a user-defined provider.
    ProviderId
);
id_type!(
    /// The stable id of a sink.
    SinkId
);
