//! The PostgreSQL backend, for several instances sharing one store: a pool to the
//! database named by a `postgres://` URL; migrations in `migrations/postgres` (sqlx
//! holds an advisory lock while it migrates, so instances starting together take turns).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::store::StoreError;

/// Connects to the database at `url` and runs its migrations.
pub(crate) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(|source| StoreError::Connect {
        target: redacted(url),
        source,
    })?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            target: redacted(url),
            source,
        })?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// `url` without its password and query (which may carry one), for messages.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("REDACTED"));
            }
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "the PostgreSQL URL (unreadable)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("postgres://app:hunter2@db.example:5432/mail?password=x&sslmode=require"),
            "postgres://app:REDACTED@db.example:5432/mail"
        );
        assert_eq!(
            redacted("postgres://db.example/mail"),
            "postgres://db.example/mail"
        );
        assert!(!redacted("postgres://a:hunter2@[::1").contains("hunter2"));
    }
}
