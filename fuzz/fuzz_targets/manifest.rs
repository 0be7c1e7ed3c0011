//! The manifest reader (CSV or JSON lines, picked by the first byte) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| advox_fuzz::scratch("manifest"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ext = ["csv", "jsonl", "json", "tsv"][pick as usize % 4];
    let path = scratch().join(format!("manifest.{ext}"));
    std::fs::write(&path, body).unwrap();
    if let Ok(entries) = advox::manifest::read_manifest(&path) {
        assert!(!entries.is_empty());
    }
});
