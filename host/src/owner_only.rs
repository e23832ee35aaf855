//! Files and folders only the host's own user may read or write: the data
//! folder, the database and its `-wal` and `-shm` files, and the compile
//! cache.
//!
//! The database holds sealed secrets, run payloads and token hashes; the
//! compile cache holds native code the host maps and runs. Created with the
//! default umask they would be readable (the cache: replaceable, given a
//! loose parent) by every user of the machine. So the host creates them
//! owner-only (folders `0700`, files `0600`) and, when it finds existing ones
//! open to others, tightens them rather than warning: a warning at every
//! start is easy to miss, and nothing legitimate needs another user to read
//! these files. Off Unix these functions only create.

use std::io;
use std::path::Path;

/// Mode of the host's own folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the host's own files.
pub const FILE_MODE: u32 = 0o600;

/// Creates the folder `path` (and missing parents) owner-only, or tightens
/// it when it exists. Parents that already exist are left alone: they may be
/// shared folders such as `/var/lib`.
pub fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(path)?;
    tighten(path, DIR_MODE)
}

/// Creates the empty file `path` owner-only unless it exists, then tightens
/// it; for files another library opens by name (SQLite).
pub fn create_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    drop(options.open(path)?);
    tighten(path, FILE_MODE)
}

/// Sets `path`'s mode to `mode` when it lets anyone but its owner in; a
/// missing file is fine (SQLite's `-wal` and `-shm` come and go).
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = match std::fs::metadata(path) {
            Ok(m) => m.permissions().mode(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if current & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// New folders and files are owner-only whatever the umask lets through.
    #[test]
    fn new_folders_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let file = nested.join("f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    /// Existing folders and files open to others are tightened; the content stays.
    #[test]
    fn existing_loose_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("data");
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = folder.join("f");
        std::fs::write(&file, "kept").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_dir(&folder).unwrap();
        create_file(&file).unwrap();
        assert_eq!((mode(&folder), mode(&file)), (0o700, 0o600));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        tighten(&folder.join("missing"), FILE_MODE).unwrap();
    }
}
