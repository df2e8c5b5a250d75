//! Where a process's SSH masters live, and stopping the ones a killed process left.
//!
//! Masters outlive the process that started them (ControlPersist), so a daemon that
//! is killed (`kill -9`, OOM) leaves them running. Their control folders therefore
//! sit at a place derived from the state store — `<control_dir>/loom-<hash>/` — and
//! whoever next holds that store's lock finds them there and stops each one with
//! `ssh -O exit` before starting masters of its own. Only a holder of the store's
//! lock uses or cleans that folder, so no live process's masters are touched.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::settings::SshSettings;

/// The folder for the masters of the process that holds the store at `state`.
pub fn folder(settings: &SshSettings, state: &Path) -> PathBuf {
    let absolute = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
    settings.control_dir.join(format!("loom-{:016x}", fnv1a(absolute.as_os_str().as_encoded_bytes())))
}

/// Creates `folder` (0700) if needed and checks that it is this user's own and
/// closed to others, as control sockets give a shell on every node.
pub fn prepare(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
    let meta = std::fs::symlink_metadata(folder)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "{} is not a folder of this user's own; remove it or set ssh.control_dir",
            folder.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Stops every master found in `folder` and removes the control folders; returns
/// how many masters answered and were stopped.
pub async fn stop_leftovers(settings: &SshSettings, folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    let mut stopped = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let socket = dir.join("master");
        if socket.exists() && stop(settings, &socket).await {
            stopped += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    stopped
}

/// `ssh -O exit` on a control socket: the master closes its connection and exits.
pub(crate) async fn stop(settings: &SshSettings, socket: &Path) -> bool {
    let mut command = tokio::process::Command::new(&settings.program);
    command
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "loom-master"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    matches!(tokio::time::timeout(Duration::from_secs(5), command.status()).await, Ok(Ok(status)) if status.success())
}

/// FNV-1a: a stable hash (the folder must be the same for every loom version).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_depends_on_the_store_only() {
        let settings = SshSettings { control_dir: PathBuf::from("/run/x"), ..SshSettings::default() };
        let a = folder(&settings, Path::new("/srv/a/state.db"));
        assert_eq!(a, folder(&settings, Path::new("/srv/a/state.db")));
        assert_ne!(a, folder(&settings, Path::new("/srv/b/state.db")));
        assert!(a.starts_with("/run/x") && a.file_name().unwrap().to_str().unwrap().starts_with("loom-"));
    }

    #[test]
    fn a_folder_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("c");
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&folder).unwrap();
        assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
