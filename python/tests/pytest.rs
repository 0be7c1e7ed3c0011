//! Runs the Python package's tests (`tests/test_advox.py`) with pytest against the extension
//! module this build made: the module and the package's Python files are laid out as `pip
//! install` lays them out, in a virtual environment with numpy and pytest (made once, under
//! the target directory).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The build's target profile directory (`target/debug`), from this test's own path
/// (`target/debug/deps/pytest-HASH`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from target/PROFILE/deps")
        .to_path_buf()
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A virtual environment with numpy and pytest, made once.
fn venv(dir: &Path) -> PathBuf {
    let python = dir.join("bin/python");
    if !dir.join("bin/pytest").is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir));
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "numpy",
            "pytest",
        ]));
    }
    python
}

#[test]
fn the_python_package_passes_its_tests() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = profile_dir();
    // Built beside this test as its package's library (`target/PROFILE/deps`); `cargo build`
    // copies it up to `target/PROFILE`.
    let module = [
        profile.join("deps/lib_advox.so"),
        profile.join("lib_advox.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!(
            "lib_advox.so is not in {}: the extension module is built with this test",
            profile.display()
        )
    });
    let python = venv(&profile.join("python-test-venv"));
    // The installed layout: advox/__init__.py, the stubs, and the module as advox/_advox.*.so.
    let site = profile.join("python-test-site");
    let package = site.join("advox");
    let _ = std::fs::remove_dir_all(&site);
    std::fs::create_dir_all(&package).expect("creating the package directory");
    for entry in std::fs::read_dir(crate_dir.join("advox")).expect("python/advox") {
        let path = entry.expect("python/advox entry").path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().expect("a file name")))
                .expect("copying the package");
        }
    }
    std::fs::copy(&module, package.join("_advox.abi3.so")).expect("copying the module");
    run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(crate_dir.join("tests"))
        .env("PYTHONPATH", &site)
        .env("ADVOX_REPO", crate_dir.parent().expect("the repository"))
        .current_dir(crate_dir.parent().expect("the repository")));
}
