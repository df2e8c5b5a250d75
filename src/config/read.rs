//! Reading the files and folders a configuration names, with bounds.
//!
//! Whatever a configuration points at is read here: the main file, the node
//! manifest, the datafile, job manifests, task modules and token files. A path may
//! name anything (`/dev/urandom`, a FIFO nobody writes to, `/proc/self`), and a
//! reload must end promptly whatever it names, so only regular files are read (a
//! symlink to one is fine), each up to `MAX_FILE_SIZE`, and a folder walk visits at
//! most `MAX_WALK_ENTRIES` entries, `MAX_WALK_DEPTH` levels deep, each folder once.
//! It does not parse anything.

use std::collections::HashSet;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The largest file Loom reads as configuration or task module.
pub const MAX_FILE_SIZE: u64 = 16 << 20;
/// At most this many entries are looked at under `jobspath`.
pub const MAX_WALK_ENTRIES: usize = 10_000;
/// At most this many folders deep below `jobspath`.
pub const MAX_WALK_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is larger than the limit of {} MiB", MAX_FILE_SIZE >> 20)]
    TooLarge,
    #[error("it is not UTF-8 text")]
    NotText,
}

impl ReadError {
    /// The file is not there (or its folder is not a folder): callers that look in
    /// several places go on to the next one.
    pub fn is_absent(&self) -> bool {
        matches!(self, ReadError::Io(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory))
    }
}

/// The whole text of the regular file at `path`, at most `MAX_FILE_SIZE` bytes.
///
/// Never blocks on a special file: the path is checked before opening, and the file
/// is opened with `O_NONBLOCK` and checked again (`fstat`), in case it was swapped
/// for a FIFO in between.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    regular(&std::fs::metadata(path)?)?;
    let file: File =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC).open(path)?;
    let metadata = file.metadata()?;
    regular(&metadata)?;
    if metadata.len() > MAX_FILE_SIZE {
        return Err(ReadError::TooLarge);
    }
    // The size can change while reading (and /proc files report none): read one
    // byte past the limit to tell.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotText)
}

fn regular(metadata: &Metadata) -> Result<(), ReadError> {
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "a special file"
    };
    Err(ReadError::NotRegular(what))
}

/// What a walk found, and what it could not look into.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Every file whose name `wanted` accepts, regular or not, sorted: a special
    /// file with such a name is refused by `read_text`, with its name in the error.
    pub(crate) files: Vec<PathBuf>,
    /// Folders that could not be listed, with why.
    pub(crate) unreadable: Vec<(PathBuf, std::io::Error)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkError {
    #[error("it holds more than {MAX_WALK_ENTRIES} entries (files and folders, symlinks followed)")]
    TooManyEntries,
    #[error("it is more than {MAX_WALK_DEPTH} folders deep (at {})", .0.display())]
    TooDeep(PathBuf),
}

/// Every file under `root` whose name `wanted` accepts, recursively; names that
/// start with `.` (editors' swap and backup files) are skipped. Symlinks are
/// followed, each folder is entered once (so a symlink loop ends), and special files
/// are never entered.
pub(crate) fn walk(root: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Walk, WalkError> {
    let mut walk = Walk::default();
    let mut entered: HashSet<(u64, u64)> = HashSet::new();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = pending.pop() {
        if let Ok(metadata) = std::fs::metadata(&dir)
            && !entered.insert((metadata.dev(), metadata.ino()))
        {
            continue;
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                walk.unreadable.push((dir, err));
                continue;
            }
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_WALK_ENTRIES {
                return Err(WalkError::TooManyEntries);
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(mut kind) = entry.file_type() else { continue };
            if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(target) => kind = target.file_type(),
                    Err(_) => continue, // a dangling link names nothing to load
                }
            }
            if kind.is_dir() {
                if depth + 1 > MAX_WALK_DEPTH {
                    return Err(WalkError::TooDeep(path));
                }
                pending.push((path, depth + 1));
            } else if wanted(&name) {
                walk.files.push(path);
            }
        }
    }
    walk.files.sort();
    Ok(walk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("jobs.yaml");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(matches!(read_text(&fifo), Err(ReadError::NotRegular("a FIFO"))));
        assert!(matches!(read_text(Path::new("/dev/urandom")), Err(ReadError::NotRegular("a character device"))));
        assert!(matches!(read_text(dir.path()), Err(ReadError::NotRegular("a folder"))));
        assert!(read_text(&dir.path().join("missing")).unwrap_err().is_absent());
    }

    #[test]
    fn files_past_the_size_limit_are_refused_and_symlinks_to_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let file = File::create(&big).unwrap();
        file.set_len(MAX_FILE_SIZE + 1).unwrap();
        let err = read_text(&big).unwrap_err();
        assert_eq!(err.to_string(), "it is larger than the limit of 16 MiB");
        let small = dir.path().join("small.yaml");
        std::fs::write(&small, "a: 1\n").unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(read_text(&link).unwrap(), "a: 1\n");
    }

    #[test]
    fn a_walk_enters_each_folder_once_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.yaml"), "").unwrap();
        std::fs::write(dir.path().join("a/.swap.yaml"), "").unwrap();
        // A loop back to the root, and a second way into a/.
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/b/loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("again")).unwrap();
        let yaml = |name: &str| name.ends_with(".yaml");
        let found = walk(dir.path(), &yaml).unwrap();
        assert_eq!(found.files.len(), 1, "{found:?}");
        assert!(found.files[0].ends_with("x.yaml"));

        let deep = (0..=MAX_WALK_DEPTH).fold(dir.path().to_path_buf(), |p, i| p.join(format!("d{i}")));
        std::fs::create_dir_all(&deep).unwrap();
        assert!(matches!(walk(dir.path(), &yaml), Err(WalkError::TooDeep(_))));
    }

    #[test]
    fn proc_self_ends_with_an_error_or_a_bounded_result() {
        let yaml = |name: &str| name.ends_with(".yaml");
        match walk(Path::new("/proc/self"), &yaml) {
            Err(WalkError::TooManyEntries | WalkError::TooDeep(_)) => {}
            Ok(found) => assert!(found.files.len() <= MAX_WALK_ENTRIES),
        }
    }
}
