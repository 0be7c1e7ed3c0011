//! Detectors against targeted PGD examples on the real tiny.en: each must separate the project's
//! clean samples (and `jfk.wav`, a real recording) from adversarial ones.

mod common;

use advox::attack::AttackConfig;
use advox::detect::calibration::{roc_auc, threshold_at_fpr};
use advox::detect::{Context, Detector, Input};
use advox::model::DecodeOptions;
use advox::objective::Goal;
use advox::perturb::Constraints;
use std::sync::OnceLock;

const SAMPLES: [&str; 6] = [
    "open_the_front_door.wav",
    "turn_off_the_lights.wav",
    "call_my_mother.wav",
    "whats_the_weather_today.wav",
    "play_some_music.wav",
    "lock_the_back_door.wav",
];
const TRANSCRIPTS: [&str; 6] = [
    "open the front door",
    "turn off the lights",
    "call my mother",
    "what's the weather today",
    "play some music",
    "lock the back door",
];

fn clean() -> Vec<Vec<f32>> {
    let mut v: Vec<Vec<f32>> = SAMPLES.iter().map(|s| common::sample(s)).collect();
    v.push(advox::audio::read_audio_16k_mono(&common::shared().join("samples/jfk.wav")).unwrap());
    v
}

/// Each sample attacked towards the next one's transcript (targeted PGD, |δ|∞ ≤ 0.02 at
/// ≥ 30 dB SNR), as written to a 16-bit file; only successful examples.
fn adversarial() -> &'static Vec<Vec<f32>> {
    static ADV: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    ADV.get_or_init(|| {
        let cfg = AttackConfig {
            constraints: Constraints {
                linf: Some(0.02),
                snr_db: Some(30.0),
                ..Default::default()
            },
            step_size: 0.002,
            steps: 80,
            ..Default::default()
        };
        let out: Vec<Vec<f32>> = SAMPLES
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let x = common::sample(name);
                let target = TRANSCRIPTS[(i + 1) % SAMPLES.len()];
                let obj = common::objective(&x, Goal::Targeted(target.into()));
                let o = common::attack(&x, &obj, &cfg);
                o.success
                    .then(|| common::written(&o.adversarial, &format!("detect-adv-{i}.wav")))
            })
            .collect();
        assert!(out.len() >= 5, "only {} of 6 attacks succeeded", out.len());
        out
    })
}

fn scores(detectors: &[Detector], set: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let ctx = Context {
        model: Some(common::model()),
        decode: DecodeOptions {
            beam_size: 1,
            ..Default::default()
        },
    };
    let mut out = vec![Vec::new(); detectors.len()];
    for x in set {
        let input = Input::new(x);
        for (d, s) in detectors.iter().zip(out.iter_mut()) {
            s.push(d.score(&ctx, &input).unwrap());
        }
    }
    out
}

/// AUC of every detector, asserting each reaches its stated floor.
fn check(detectors: &[(Detector, f64)]) {
    let list: Vec<Detector> = detectors.iter().map(|(d, _)| d.clone()).collect();
    let clean = scores(&list, &clean());
    let adv = scores(&list, adversarial());
    for (((d, floor), c), a) in detectors.iter().zip(&clean).zip(&adv) {
        let auc = roc_auc(c, a).unwrap();
        eprintln!(
            "{:<28} AUC {auc:.3}  clean {c:.3?}  adversarial {a:.3?}",
            d.name()
        );
        assert!(auc >= *floor, "{}: AUC {auc:.3} < {floor}", d.name());
    }
}

#[test]
fn transform_consistency_separates_clean_from_pgd_examples() {
    let detectors: Vec<(Detector, f64)> = advox::detect::transforms::Transform::default_set()
        .into_iter()
        .map(|t| (Detector::Consistency(t), 0.9))
        .collect();
    check(&detectors);
}

#[test]
fn temporal_dependency_confidence_and_noise_floor_separate_clean_from_pgd_examples() {
    check(&[
        (Detector::Temporal { portion: 0.5 }, 0.9),
        (Detector::Confidence, 0.8),
        (Detector::NoiseFloor, 0.7),
    ]);
}

#[test]
fn a_threshold_calibrated_on_clean_speech_flags_the_adversarial_examples() {
    let d = [Detector::Consistency(
        advox::detect::transforms::Transform::Quantize { bits: 8 },
    )];
    let clean = scores(&d, &clean());
    let adv = scores(&d, adversarial());
    let t = threshold_at_fpr(&clean[0], 0.0).unwrap();
    assert!(clean[0].iter().all(|s| *s <= t));
    let flagged = adv[0].iter().filter(|s| **s > t).count();
    assert!(
        flagged + 1 >= adv[0].len(),
        "{flagged} of {} flagged",
        adv[0].len()
    );
}

#[test]
fn autoencoder_trained_on_clean_speech_flags_pgd_examples_of_held_out_speech() {
    use advox::detect::autoencoder::{MelAutoencoder, TrainConfig};
    // Trained on jfk.wav and three commands; judged on the other three (never seen) against
    // every adversarial example.
    let clean = clean();
    let train: Vec<Vec<f32>> = vec![
        clean[6].clone(),
        clean[2].clone(),
        clean[5].clone(),
        clean[0].clone(),
    ];
    let held_out = [clean[1].clone(), clean[3].clone(), clean[4].clone()];
    let ae = MelAutoencoder::train(
        &train,
        &TrainConfig::default(),
        &candle_core::Device::Cpu,
        &mut |_, _| {},
    )
    .unwrap();
    let score =
        |set: &[Vec<f32>]| -> Vec<f64> { set.iter().map(|x| ae.score(x).unwrap()).collect() };
    let (c, a) = (score(&held_out), score(adversarial()));
    let auc = roc_auc(&c, &a).unwrap();
    eprintln!("autoencoder AUC {auc:.3}: clean {c:.4?} adversarial {a:.4?}");
    assert!(auc >= 0.75, "AUC {auc}");
    // The training speech itself reconstructs better than held-out speech.
    let trained = score(&train);
    assert!(trained.iter().sum::<f64>() / 4.0 < c.iter().sum::<f64>() / 3.0);
}

#[test]
fn ensemble_fitted_on_some_examples_separates_held_out_ones() {
    use advox::detect::ensemble::Ensemble;
    use advox::detect::transforms::Transform;
    let members = vec![
        Detector::Consistency(Transform::Quantize { bits: 8 }),
        Detector::Temporal { portion: 0.5 },
        Detector::Confidence,
        Detector::NoiseFloor,
    ];
    let rows = |set: &[Vec<f32>]| -> Vec<Vec<f64>> {
        let s = scores(&members, set);
        (0..set.len())
            .map(|i| s.iter().map(|d| d[i]).collect())
            .collect()
    };
    let clean = rows(&clean());
    let adv = rows(adversarial());
    let (fit_clean, test_clean) = clean.split_at(4);
    let (fit_adv, test_adv) = adv.split_at(3);
    let e = Ensemble::fit(members.clone(), fit_clean, fit_adv).unwrap();
    let p = |r: &[Vec<f64>]| -> Vec<f64> { r.iter().map(|x| e.combine(x).unwrap()).collect() };
    let auc = roc_auc(&p(test_clean), &p(test_adv)).unwrap();
    eprintln!("ensemble weights {:?}, held-out AUC {auc:.3}", e.weights);
    assert!(auc >= 0.9, "held-out AUC {auc}");
    // As a detector it scores an input exactly as combining its members' scores.
    let ctx = Context {
        model: Some(common::model()),
        decode: DecodeOptions {
            beam_size: 1,
            ..Default::default()
        },
    };
    let x = &adversarial()[0];
    let as_detector = Detector::Ensemble(std::sync::Arc::new(e.clone()));
    let direct = as_detector.score(&ctx, &Input::new(x)).unwrap();
    assert!((direct - e.combine(&adv[0]).unwrap()).abs() < 1e-12);
}
