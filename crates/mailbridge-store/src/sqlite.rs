//! The SQLite backend: one file in WAL mode with `synchronous = FULL` and foreign keys
//! on; the file, its `-wal` and `-shm` private to the owner; migrations in
//! `migrations/sqlite`, run under an exclusive lock on `<database>.lock` so that two
//! processes opening a new database at once (the daemon and a command) do not both
//! apply the same migration.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::store::StoreError;

/// Opens (creating when missing) the database at `path` and runs its migrations.
pub(crate) async fn open(path: &Path) -> Result<SqlitePool, StoreError> {
    let file_err = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        crate::files::create_private_dir(parent).map_err(file_err)?;
    }
    crate::files::create_private_file(path).map_err(file_err)?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    // Journals left by an older version keep their mode until tightened.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut journal = path.as_os_str().to_owned();
        journal.push(suffix);
        crate::files::make_private(Path::new(&journal)).map_err(file_err)?;
    }
    let lock = lock_for_migrations(path).await.map_err(file_err)?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    drop(lock);
    Ok(pool)
}

/// Waits for the exclusive lock on `<path>.lock` (created 0600); held until the file is
/// dropped. A file of its own: SQLite's locks on the database file are POSIX locks,
/// which a second descriptor on that file would release when closed.
async fn lock_for_migrations(path: &Path) -> std::io::Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    crate::files::create_private_file(&lock_path)?;
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}
