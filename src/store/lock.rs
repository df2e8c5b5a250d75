//! One process writes a state store at a time: an exclusive lock on a file beside
//! it (`state.db.lock`), held for the process's life and released by the kernel
//! when it ends, however it ends.
//!
//! The file names the holder (pid and command) so a refused second daemon can say
//! who is in the way. It does not stop readers: the CLI reads a store a daemon
//! writes. Several daemons on one store is what cluster mode is for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Locks the store at `state` for this process, as `command` (say `loom serve`).
    pub fn acquire(state: &Path, command: &str) -> Result<StoreLock, StoreError> {
        let path = lock_path(state);
        let io_error = |source| StoreError::Lock { path: path.clone(), source };
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)
                .map_err(|source| StoreError::Folder { path: folder.to_path_buf(), source })?;
        }
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another loom process".to_string() } else { holder.to_string() };
                return Err(StoreError::Locked { path: state.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io_error(source)),
        }
        let holder = format!("{command} (pid {})\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(io_error)?;
        Ok(StoreLock { _file: file })
    }
}

fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.db");
        let first = StoreLock::acquire(&state, "loom serve").unwrap();
        let err = StoreLock::acquire(&state, "loom serve").unwrap_err().to_string();
        assert!(err.contains(&format!("loom serve (pid {})", std::process::id())), "{err}");
        assert!(err.contains("state.db"), "{err}");
        drop(first);
        StoreLock::acquire(&state, "loom run").unwrap();
    }
}
