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

/// A bundled sample at 16 kHz.
pub fn sample(name: &str) -> Vec<f32> {
    advox::audio::read_audio_16k_mono(&root().join("samples").join(name)).unwrap()
}

/// Write as a 16-bit WAV in a per-process temp folder and read back: what a user of an output
/// file gets.
pub fn written(samples: &[f32], name: &str) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("advox-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    advox::audio::write_wav(&path, samples, 16_000, advox::audio::WavFormat::Pcm16, &[]).unwrap();
    advox::audio::read_audio_16k_mono(&path).unwrap()
}

/// Run a gradient attack on the real model, uncancelled, without progress reports.
pub fn attack(
    x: &[f32],
    objective: &advox::objective::Objective,
    cfg: &advox::attack::AttackConfig,
) -> advox::attack::AttackOutcome {
    advox::attack::run_attack(
        model(),
        x,
        objective,
        cfg,
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
}

/// Bind `goal` to the clean transcript of `x` on the real model.
pub fn objective(x: &[f32], goal: advox::objective::Goal) -> advox::objective::Objective {
    let m = model();
    let t = advox::transcribe::transcribe(m, x, &advox::model::DecodeOptions::default()).unwrap();
    advox::objective::Objective::new(m, goal, &t.text, &t.tokens).unwrap()
}
