//! Writing files so that a reader never sees a partial one and a failure leaves nothing behind:
//! everything goes to a hidden temporary file beside the destination, which is renamed into
//! place once complete and removed if anything fails (a full disk, a read-only directory, an
//! encoder error).

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A hidden temporary name in the same directory, so the final rename is atomic.
pub fn temp_path_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_name = format!(".{name}.tmp-{}", std::process::id());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

/// Let `write` fill a temporary file (or directory) beside `path`, then rename it to `path`.
/// On any error the temporary is removed and the error returned; `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path_beside(path);
    let result =
        write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        remove_quietly(&tmp);
    }
    result
}

/// Write `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| {
        use std::io::Write;
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(path, e))?;
        // Surface a full disk here rather than at close, where it would be lost.
        f.sync_all().map_err(|e| Error::io(path, e))
    })
}

fn remove_quietly(tmp: &Path) {
    match std::fs::symlink_metadata(tmp) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(tmp);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(tmp);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_leave_nothing_and_success_replaces() {
        let dir = std::env::temp_dir().join(format!("advox-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        write_bytes_atomic(&path, b"one").unwrap();
        let err = write_atomic(&path, |tmp| {
            std::fs::write(tmp, b"partial").unwrap();
            Err(Error::InvalidArgument("encoder failed".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("encoder failed"));
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let err = write_atomic(&path, |tmp| {
            std::fs::create_dir_all(tmp.join("sub")).unwrap();
            Err(Error::InvalidArgument("no".into()))
        });
        assert!(err.is_err());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
        write_bytes_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let missing = dir.join("no/such/dir/x.txt");
        let err = write_bytes_atomic(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
