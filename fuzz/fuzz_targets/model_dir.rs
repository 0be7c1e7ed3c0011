//! A model directory from arbitrary bytes: `config.json` (its length in the first two bytes)
//! and either `model.safetensors` (Hugging Face layout) or `model.bin` (CTranslate2), picked by
//! the third byte, loaded with `load_weights` as every command does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| advox_fuzz::scratch("model"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let len = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[3..];
    let (config, weights) = rest.split_at(len.min(rest.len()));
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let name = if data[2] & 1 == 0 {
        "model.safetensors"
    } else {
        "model.bin"
    };
    std::fs::write(dir.join(name), weights).unwrap();
    let _ = advox::model::weights::load_weights(dir, &candle_core::Device::Cpu);
});
