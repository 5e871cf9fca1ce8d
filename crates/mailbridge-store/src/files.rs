//! File modes of what the store keeps on disk: directories 0700, files 0600, whatever
//! the umask (with a passphrase, a readable database and salt could be copied and the
//! passphrase guessed offline).
//!
//! New directories are created 0700; the data directory is tightened to 0700 when it is
//! opened (it holds the sealed database and the key or salt); other existing
//! directories are left as they are, but the files mailbridge keeps in them are
//! tightened.

use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700. An existing directory is left
/// as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Sets an existing directory's mode to 0700 when group or others may enter it (the
/// data directory holds the sealed database and the salt or key file: a data
/// directory made by an older mailbridge under umask 022 was 0755).
pub fn make_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let m = std::fs::metadata(dir)?;
        if m.is_dir() && m.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Sets an existing file's mode to 0600 (owner read and write only); a missing file is
/// not an error.
pub fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Creates `path` empty with mode 0600 when it does not exist (so that SQLite, which
/// gives its `-wal` and `-shm` files the database file's mode, makes them 0600 too),
/// else tightens it to 0600.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => make_private(path),
        Err(e) => Err(e),
    }
}

/// Writes a new file with mode 0600 (fails when it exists), durably.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
