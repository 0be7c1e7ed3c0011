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
