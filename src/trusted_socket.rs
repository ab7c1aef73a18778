//! Whether a broker socket can be trusted with the secret. A client
//! connects (and sends AUTH) only to a socket that no other user can have
//! put there: the socket's directory, with every symlink resolved, must
//! belong to this process's user or to root and be writable by nobody else,
//! and every directory above it must be out of other users' reach too
//! (theirs to write only with the sticky bit, as /tmp). The connection then
//! goes through that resolved path, so a symlink swapped after the check
//! changes nothing. Every client of a broker socket calls this before each
//! connection: the JS connection (lib/connection.js, through the N-API
//! module), the native lock-wait connections and the pub/sub connection.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::ShmError;

/// Any write bit for the group or for others.
const WRITABLE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// The path to connect to for the broker socket at `socket`: its directory
/// resolved to its real path, once that directory and those above it are
/// found to be out of other users' reach. `ShmError::Unreachable` (with the
/// reason only) when the directory cannot be resolved yet, which a caller
/// may retry; `ShmError::UnsafeSocket` when another user could have put
/// the socket there, which it must not.
pub fn trusted_socket_path(socket: &Path) -> Result<PathBuf, ShmError> {
    let Some(name) = socket.file_name() else {
        return Err(ShmError::Unreachable(format!("{} does not name a socket", socket.display())));
    };
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let real = fs::canonicalize(dir).map_err(|error| ShmError::Unreachable(format!("{}: {error}", dir.display())))?;
    let me = effective_uid();
    let refuse = |why: String| {
        ShmError::UnsafeSocket(format!(
            "refusing the cluster-shm broker at {}: {why}, so another user could put a socket of its own there \
             (see docs/security.md)",
            socket.display()
        ))
    };
    for (depth, at) in real.ancestors().enumerate() {
        let metadata = fs::metadata(at).map_err(|error| ShmError::Unreachable(format!("{}: {error}", at.display())))?;
        let what = if depth == 0 { "its directory" } else { "the directory above it" };
        let owner = metadata.uid();
        if owner != me && owner != 0 {
            return Err(refuse(format!(
                "{what} {} belongs to uid {owner}, neither this process's user (uid {me}) nor root",
                at.display()
            )));
        }
        let mode = metadata.mode();
        // The socket's own directory must be writable by its owner alone; a
        // directory above it may be shared if sticky, since then nobody else
        // can rename or remove the entry below it, which is ours or root's.
        let shared = mode & WRITABLE_BY_OTHERS != 0;
        if shared && (depth == 0 || mode & STICKY == 0) {
            return Err(refuse(format!(
                "{what} {} is writable by other users (mode {:o})",
                at.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(real.join(name))
}

fn effective_uid() -> u32 {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid takes nothing, cannot fail and touches no memory of ours.
    unsafe { geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shm-trusted-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_private_directory_is_trusted_and_reached_through_its_real_path() {
        let dir = scratch("private");
        let link = dir.join("link");
        let real = dir.join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let resolved = trusted_socket_path(&link.join("broker.sock")).unwrap();
        assert_eq!(resolved, fs::canonicalize(&real).unwrap().join("broker.sock"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_may_write_is_refused_and_a_missing_one_is_not_there_yet() {
        let dir = scratch("shared");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let error = trusted_socket_path(&dir.join("broker.sock")).unwrap_err();
        assert_eq!(error.code(), "ERR_SHM_UNSAFE_SOCKET");
        assert!(error.to_string().contains("is writable by other users (mode 777)"), "{error}");
        // Sticky and shared, as /tmp: fine above the socket's directory, not as it.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(trusted_socket_path(&dir.join("broker.sock")).unwrap_err().code(), "ERR_SHM_UNSAFE_SOCKET");
        let below = dir.join("private");
        fs::create_dir(&below).unwrap();
        fs::set_permissions(&below, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(trusted_socket_path(&below.join("broker.sock")).is_ok());

        let missing = trusted_socket_path(&dir.join("missing").join("broker.sock")).unwrap_err();
        assert_eq!(missing.code(), "ERR_SHM_UNREACHABLE");
        fs::remove_dir_all(&dir).unwrap();
    }
}
