//! Shared helpers of the fuzz targets.

use std::path::PathBuf;

/// A per-process scratch directory `advox-fuzz-<name>-<pid>` in the temp dir, created.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advox-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}
