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

/// One recording of real speech from `../shared/corpus/`, at 16 kHz mono.
pub struct Clip {
    /// `folder/file.wav` inside the corpus.
    pub name: String,
    /// The samples, resampled to 16 kHz.
    pub samples: Vec<f32>,
}

/// Real recorded speech, split by speaker so that nothing a test trains or calibrates on is
/// from a speaker it is judged on:
/// - **train**: LJ Speech (one female US-English reader): the six shortest clips (1.8–5.1 s);
/// - **test**: the LibriVox reading (one male reader, 3.0–5.3 s) and the English Rhino
///   voice-assistant requests (other speakers, 7–8 s).
///
/// `n` takes the first `n` of a split (shortest first).
pub fn corpus_train(n: usize) -> Vec<Clip> {
    corpus(&CORPUS_TRAIN[..n.min(CORPUS_TRAIN.len())])
}

/// The held-out split of [`corpus_train`]: other speakers.
pub fn corpus_test(n: usize) -> Vec<Clip> {
    corpus(&CORPUS_TEST[..n.min(CORPUS_TEST.len())])
}

const CORPUS_TRAIN: [&str; 6] = [
    "ljspeech/LJ001-0008.wav",
    "ljspeech/LJ001-0002.wav",
    "ljspeech/LJ001-0013.wav",
    "ljspeech/LJ001-0011.wav",
    "ljspeech/LJ001-0020.wav",
    "ljspeech/LJ001-0004.wav",
];

const CORPUS_TEST: [&str; 5] = [
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "rhino/test_within_context.wav",
    "rhino/test_out_of_context.wav",
];

fn corpus(names: &[&str]) -> Vec<Clip> {
    names
        .iter()
        .map(|n| {
            let path = shared().join("corpus").join(n);
            let samples = advox::audio::read_audio_16k_mono(&path).unwrap_or_else(|e| {
                panic!("the corpus clip {} must be readable: {e}", path.display())
            });
            Clip {
                name: n.to_string(),
                samples,
            }
        })
        .collect()
}

/// A fresh, empty directory for one test: `advox-TAG-PID` under the temporary directory.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advox-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write a manifest at `path` with one `input` line per file.
pub fn write_manifest(path: &std::path::Path, inputs: &[PathBuf]) {
    let mut text = String::from("input\n");
    for input in inputs {
        text += &format!("{}\n", input.display());
    }
    std::fs::write(path, text).unwrap();
}
