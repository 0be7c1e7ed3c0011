//! Helpers shared by the integration tests.
#![allow(dead_code)]

use advox::model::{provision, LoadedModel};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `../shared` beside the project root.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default model directory, fetched on first use (tests use the real tiny.en).
pub fn model_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        provision::resolve_model(None, &mut |m| eprintln!("{m}"))
            .expect("tiny.en must be provisioned for the tests")
    })
    .clone()
}

/// The default model loaded on the CPU.
pub fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        LoadedModel::load(&model_dir(), &candle_core::Device::Cpu).expect("model loads")
    })
}

/// Relative L2 error of `a` against reference `b`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
