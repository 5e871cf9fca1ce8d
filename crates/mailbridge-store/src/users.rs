//! The people of the web UI, their sessions, and the first run's setup link. Tables:
//! `migrations/sqlite/0010_users.sql`, `migrations/postgres/0007_users.sql`.
//!
//! - A **user** has a unique name, a role ([`Role`]), an optional language, and a
//!   password kept only as an Argon2id PHC string ([`PasswordHash`]). Hashing and
//!   verifying happen in the caller (`mailbridge-web`), never in SQL. A disabled user
//!   keeps the row but cannot sign in, and their sessions are ended.
//! - A **web session** is kept by the SHA-256 of its id (the id itself lives only in
//!   the browser's cookie), with the user, the CSRF token of its forms, and when it was
//!   made, when it expires and when it was last seen.
//! - A **setup token** is the one-time link `mailbridge serve` prints while the store
//!   has no user: kept by its SHA-256, it expires, and [`Store::add_first_user_with_setup_token`]
//!   uses it once, in the same transaction that makes the first administrator.

use std::fmt;

use mailbridge_types::access::Role;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::{Store, StoreError, from_unix, on_db, unix};

/// A person who signs in to the web UI (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    /// Unique among users.
    pub name: String,
    pub role: Role,
    /// Their language tag (`en`, `pl`, ...), when they chose one.
    pub language: Option<String>,
    pub created_at: OffsetDateTime,
    /// A disabled user cannot sign in.
    pub disabled: bool,
}

/// A password hash as stored: an Argon2id PHC string. Not the password, but still kept
/// out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string made by the caller.
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for verifying.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// A web session as stored (found by the SHA-256 of its id).
#[derive(Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The signed-in user.
    pub user: User,
    /// The token every form of this session carries.
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("user", &self.user)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish()
    }
}

type Row = (Uuid, String, String, Option<String>, i64, bool);
type RowWithHash = (Uuid, String, String, Option<String>, i64, bool, String);

macro_rules! columns {
    () => {
        "users.id, users.name, users.role, users.language, users.created_at, users.disabled"
    };
}

fn from_row((id, name, role, language, created, disabled): Row) -> Result<User, StoreError> {
    let role = Role::parse(&role).ok_or_else(|| StoreError::Record {
        id: format!("user:{id}"),
        source: serde::de::Error::custom(format!("unknown role {role:?}")),
    })?;
    Ok(User {
        id,
        name,
        role,
        language,
        created_at: from_unix(created),
        disabled,
    })
}

const INSERT: &str =
    "INSERT INTO users (id, name, password_hash, role, language, created_at, disabled)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (name) DO NOTHING
     RETURNING id";

const INSERT_FIRST: &str =
    "INSERT INTO users (id, name, password_hash, role, language, created_at, disabled)
     SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM users)
     ON CONFLICT (name) DO NOTHING
     RETURNING id";

/// What a new user is made of.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub role: Role,
    pub password: &'a PasswordHash,
    pub language: Option<&'a str>,
}

impl Store {
    /// Stores a new user. Fails with [`StoreError::Exists`] when the name is taken.
    pub async fn add_user(&self, new: NewUser<'_>) -> Result<User, StoreError> {
        let now = unix(self.now());
        let id = Uuid::new_v4();
        let inserted: Option<Uuid> = on_db!(&self.db, pool => {
            sqlx::query_scalar(INSERT)
                .bind(id)
                .bind(new.name)
                .bind(new.password.as_str())
                .bind(new.role.as_str())
                .bind(new.language)
                .bind(now)
                .bind(false)
                .fetch_optional(pool)
                .await?
        });
        match inserted {
            Some(id) => Ok(new_user(id, &new, now)),
            None => Err(StoreError::Exists {
                kind: "user",
                name: new.name.to_owned(),
            }),
        }
    }

    /// Stores a setup token (its SHA-256) valid until `expires_at`; the tokens made
    /// before are removed, so only the last printed link works.
    pub async fn put_setup_token(
        &self,
        sha256: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM setup_tokens").execute(&mut *tx).await?;
            sqlx::query("INSERT INTO setup_tokens (sha256, created_at, expires_at) VALUES ($1, $2, $3)")
                .bind(sha256)
                .bind(now)
                .bind(unix(expires_at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether a setup token with this SHA-256 is unused and not expired.
    pub async fn setup_token_valid(&self, sha256: &str) -> Result<bool, StoreError> {
        let now = unix(self.now());
        let n: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM setup_tokens WHERE sha256 = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(sha256)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(n > 0)
    }

    /// Uses the setup token with this SHA-256 to make the first user, in one
    /// transaction: the token must be unused and not expired and the store must have
    /// no user. `None` (and nothing changed) otherwise.
    pub async fn add_first_user_with_setup_token(
        &self,
        sha256: &str,
        new: NewUser<'_>,
    ) -> Result<Option<User>, StoreError> {
        let now = unix(self.now());
        let id = Uuid::new_v4();
        let inserted: Option<Uuid> = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let used = sqlx::query(
                "UPDATE setup_tokens SET used_at = $1 WHERE sha256 = $2 AND used_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(sha256)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used == 1 {
                let inserted: Option<Uuid> = sqlx::query_scalar(INSERT_FIRST)
                    .bind(id)
                    .bind(new.name)
                    .bind(new.password.as_str())
                    .bind(new.role.as_str())
                    .bind(new.language)
                    .bind(now)
                    .bind(false)
                    .fetch_optional(&mut *tx)
                    .await?;
                if inserted.is_some() {
                    tx.commit().await?;
                }
                inserted
            } else {
                None
            }
        });
        Ok(inserted.map(|id| new_user(id, &new, now)))
    }

    /// The number of users (disabled ones too).
    pub async fn user_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM users ORDER BY name");
        let rows: Vec<Row> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        rows.into_iter().map(from_row).collect()
    }

    /// The user called `name`, with their password hash (for signing in).
    pub async fn user_with_password(
        &self,
        name: &str,
    ) -> Result<Option<(User, PasswordHash)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            ", users.password_hash FROM users WHERE name = $1"
        );
        let row: Option<RowWithHash> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).bind(name).fetch_optional(pool).await?
        });
        match row {
            Some((id, name, role, language, created, disabled, hash)) => Ok(Some((
                from_row((id, name, role, language, created, disabled))?,
                PasswordHash(hash),
            ))),
            None => Ok(None),
        }
    }

    /// Replaces the password hash of the user called `name` and ends their sessions.
    pub async fn set_user_password(
        &self,
        name: &str,
        password: &PasswordHash,
    ) -> Result<User, StoreError> {
        self.update_user(name, Change::Password(password.as_str()))
            .await
    }

    /// Disables (or enables again) the user called `name`; disabling ends their
    /// sessions.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<User, StoreError> {
        self.update_user(name, Change::Disabled(disabled)).await
    }

    /// Sets the language of the user called `name` (`None`: the browser's).
    pub async fn set_user_language(
        &self,
        name: &str,
        language: Option<&str>,
    ) -> Result<User, StoreError> {
        self.update_user(name, Change::Language(language)).await
    }

    /// Changes the role of the user called `name` (their sessions stay; every page
    /// reads the role afresh).
    pub async fn set_user_role(&self, name: &str, role: Role) -> Result<User, StoreError> {
        self.update_user(name, Change::Role(role)).await
    }

    async fn update_user(&self, name: &str, change: Change<'_>) -> Result<User, StoreError> {
        let sql: &'static str = match change {
            Change::Password(_) => concat!(
                "UPDATE users SET password_hash = $2 WHERE name = $1 RETURNING ",
                columns!()
            ),
            Change::Disabled(_) => concat!(
                "UPDATE users SET disabled = $2 WHERE name = $1 RETURNING ",
                columns!()
            ),
            Change::Language(_) => concat!(
                "UPDATE users SET language = $2 WHERE name = $1 RETURNING ",
                columns!()
            ),
            Change::Role(_) => concat!(
                "UPDATE users SET role = $2 WHERE name = $1 RETURNING ",
                columns!()
            ),
        };
        // Any change but the language (a new password, disabling) ends the sessions.
        let ends_sessions = !matches!(change, Change::Language(_) | Change::Role(_));
        let row: Option<Row> = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let query = sqlx::query_as(sql).bind(name);
            let query = match change {
                Change::Password(hash) => query.bind(hash),
                Change::Disabled(disabled) => query.bind(disabled),
                Change::Language(language) => query.bind(language),
                Change::Role(role) => query.bind(role.as_str()),
            };
            let row: Option<Row> = query.fetch_optional(&mut *tx).await?;
            if row.is_some() && ends_sessions {
                sqlx::query(
                    "DELETE FROM web_sessions WHERE user_id IN (SELECT id FROM users WHERE name = $1)",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            row
        });
        match row {
            Some(row) => from_row(row),
            None => Err(StoreError::NotFound {
                kind: "user",
                id: name.to_owned(),
            }),
        }
    }

    /// Stores a new web session for `user` by the SHA-256 of its id.
    pub async fn add_web_session(
        &self,
        sha256: &str,
        user: Uuid,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO web_sessions (sha256, user_id, csrf_token, created_at, expires_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $5, $4)",
            )
            .bind(sha256)
            .bind(user)
            .bind(csrf_token)
            .bind(now)
            .bind(unix(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The session with this SHA-256 when it has not expired and its user is not
    /// disabled; marks it seen now.
    pub async fn find_web_session(&self, sha256: &str) -> Result<Option<WebSession>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            ", web_sessions.csrf_token, web_sessions.created_at, web_sessions.expires_at
             FROM web_sessions JOIN users ON users.id = web_sessions.user_id
             WHERE web_sessions.sha256 = $1 AND web_sessions.expires_at > $2 AND NOT users.disabled"
        );
        type SessionRow = (
            Uuid,
            String,
            String,
            Option<String>,
            i64,
            bool,
            String,
            i64,
            i64,
        );
        let now = unix(self.now());
        let row: Option<SessionRow> = on_db!(&self.db, pool => {
            let row: Option<SessionRow> =
                sqlx::query_as(SQL).bind(sha256).bind(now).fetch_optional(pool).await?;
            if row.is_some() {
                sqlx::query("UPDATE web_sessions SET last_seen_at = $2 WHERE sha256 = $1")
                    .bind(sha256)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            row
        });
        let Some((id, name, role, language, created, disabled, csrf, s_created, expires)) = row
        else {
            return Ok(None);
        };
        Ok(Some(WebSession {
            user: from_row((id, name, role, language, created, disabled))?,
            csrf_token: csrf,
            created_at: from_unix(s_created),
            expires_at: from_unix(expires),
            last_seen_at: from_unix(now),
        }))
    }

    /// Ends the session with this SHA-256; true when there was one.
    pub async fn delete_web_session(&self, sha256: &str) -> Result<bool, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE sha256 = $1")
                .bind(sha256)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Removes expired sessions; the number removed.
    pub async fn delete_expired_web_sessions(&self) -> Result<u64, StoreError> {
        let now = unix(self.now());
        Ok(on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

/// One change to a user.
#[derive(Clone, Copy)]
enum Change<'a> {
    Password(&'a str),
    Disabled(bool),
    Language(Option<&'a str>),
    Role(Role),
}

fn new_user(id: Uuid, new: &NewUser<'_>, now: i64) -> User {
    User {
        id,
        name: new.name.to_owned(),
        role: new.role,
        language: new.language.map(str::to_owned),
        created_at: from_unix(now),
        disabled: false,
    }
}
