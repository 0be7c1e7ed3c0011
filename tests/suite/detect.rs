//! Detectors against targeted PGD examples on the real tiny.en, on real recorded speech: each
//! must separate clean recordings from adversarial ones. The clean set is the first four clips
//! of `common::corpus_train` (LJ Speech, one female reader) and three of `common::corpus_test`
//! (a male LibriVox reader); the adversarial examples are made from the first three of each.
//! Whatever is trained or fitted (the autoencoder, the ensemble) sees only the train split and
//! is judged on the test split's speaker.

use crate::common;

use advox::attack::AttackConfig;
use advox::detect::calibration::{roc_auc, threshold_at_fpr};
use advox::detect::transforms::Transform;
use advox::detect::{Context, Detector, Input};
use advox::model::DecodeOptions;
use advox::objective::Goal;
use advox::perturb::Constraints;
use std::sync::OnceLock;

/// Clean clips from the train split (LJ Speech).
const TRAIN_CLEAN: usize = 4;
/// Clips of each split that are attacked.
const ATTACKED: usize = 3;

/// Targets of the attacks, one per attacked clip (short voice-assistant commands).
const TARGETS: [&str; 6] = [
    "turn off the lights",
    "call my mother",
    "open the front door",
    "play some music",
    "lock the back door",
    "what's the weather today",
];

/// Clean real speech: `TRAIN_CLEAN` train-split clips, then three test-split clips.
fn clean() -> &'static Vec<Vec<f32>> {
    static CLEAN: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    CLEAN.get_or_init(|| {
        common::corpus_train(TRAIN_CLEAN)
            .into_iter()
            .chain(common::corpus_test(3))
            .map(|c| c.samples)
            .collect()
    })
}

/// The clips that are attacked: the first `ATTACKED` of each split.
fn attacked_clips() -> Vec<Vec<f32>> {
    let c = clean();
    c[..ATTACKED]
        .iter()
        .chain(&c[TRAIN_CLEAN..TRAIN_CLEAN + ATTACKED])
        .cloned()
        .collect()
}

/// Each attacked clip sent to its target by targeted PGD (|δ|∞ ≤ 0.02 at ≥ 30 dB SNR), as
/// written to a 16-bit file: the train split's examples first. Every attack must succeed.
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
        // Two attacks at a time (the model's thread pool is shared): a decode uses the two
        // cores less fully than a gradient step, and the other attack fills the gap.
        let clips = attacked_clips();
        let attack = |i: usize| {
            let x = &clips[i];
            let t0 = std::time::Instant::now();
            let obj = common::objective(x, Goal::Targeted(TARGETS[i].into()));
            let o = common::attack(x, &obj, &cfg);
            eprintln!(
                "attack {i}: {} steps, {:.1} s, {:?}",
                o.steps,
                t0.elapsed().as_secs_f64(),
                o.transcript
            );
            assert!(
                o.success,
                "attack {i} towards {:?} failed: {:?}",
                TARGETS[i], o.transcript
            );
            common::written(&o.adversarial, &format!("detect-adv-{i}.wav"))
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let worker = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= clips.len() {
                    return done;
                }
                done.push((i, attack(i)));
            }
        };
        let mut out: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
            let other = s.spawn(worker);
            let mut mine = worker();
            mine.extend(other.join().expect("an attack thread panicked"));
            mine
        });
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, x)| x).collect()
    })
}

/// Per detector (by name), its scores of the clean and of the adversarial set.
type ScoreTable = std::collections::HashMap<String, (Vec<f64>, Vec<f64>)>;

/// The [`ScoreTable`] of every detector: computed once for this test binary (each input decoded
/// once, shared by every detector).
fn table() -> &'static ScoreTable {
    static TABLE: OnceLock<ScoreTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        // Every detector these tests use: the default set, the entropy detector and the
        // activation detector fitted on the train split's clean clips.
        let mut list = Detector::default_set();
        list.extend([Detector::Entropy, activation_detector()]);
        let adv = adversarial();
        let t0 = std::time::Instant::now();
        let (c, a) = std::thread::scope(|s| {
            let a = s.spawn(|| scores(&list, adv));
            (scores(&list, clean()), a.join().expect("scoring panicked"))
        });
        eprintln!("score table: {:.1} s", t0.elapsed().as_secs_f64());
        list.iter()
            .zip(c.into_iter().zip(a))
            .map(|(d, pair)| (d.name(), pair))
            .collect()
    })
}

/// The activation detector fitted on the train split's clean clips (LJ Speech): made once.
fn activation_detector() -> Detector {
    use advox::detect::activations::ActivationModel;
    static FITTED: OnceLock<std::sync::Arc<ActivationModel>> = OnceLock::new();
    let fitted = FITTED.get_or_init(|| {
        std::sync::Arc::new(ActivationModel::fit(common::model(), &clean()[..TRAIN_CLEAN]).unwrap())
    });
    Detector::Activations(fitted.clone())
}

/// The clean and adversarial scores of `d`.
fn of(d: &Detector) -> &'static (Vec<f64>, Vec<f64>) {
    &table()[&d.name()]
}

fn context() -> Context<'static> {
    Context {
        model: Some(common::model()),
        decode: DecodeOptions {
            beam_size: 1,
            ..Default::default()
        },
    }
}

fn scores(detectors: &[Detector], set: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let ctx = context();
    let mut out = vec![Vec::new(); detectors.len()];
    for x in set {
        let input = Input::new(x);
        for (d, s) in detectors.iter().zip(out.iter_mut()) {
            s.push(d.score(&ctx, &input).unwrap());
        }
    }
    out
}

/// AUC of every detector (all printed first), asserting each reaches its stated floor.
fn check(detectors: &[(Detector, f64)]) {
    let aucs: Vec<f64> = detectors
        .iter()
        .map(|(d, _)| {
            let (c, a) = of(d);
            let auc = roc_auc(c, a).unwrap();
            eprintln!(
                "{:<28} AUC {auc:.3}  clean {c:.3?}  adversarial {a:.3?}",
                d.name()
            );
            auc
        })
        .collect();
    for ((d, floor), auc) in detectors.iter().zip(aucs) {
        assert!(auc >= *floor, "{}: AUC {auc:.3} < {floor}", d.name());
    }
}

// Floors on real speech, measured 2026-12-01 (7 clean clips, 6 PGD examples; one example
// more or less flagged moves an AUC by about 0.14): resample-8000 and quantize-8 1.00, mel-80
// 0.90–1.00, lossy 0.92, lowpass-4000 0.90 (one example, LibriVox 0890 → "what's the weather
// today", survives the low-pass, the codec and mel re-synthesis), confidence 1.00 (temporal:
// see its own test).
// On the espeak commands (digital silence) every consistency transform but lpc-16 reached 1.00.
#[test]
fn transform_consistency_separates_clean_from_pgd_examples() {
    let floor = |t: &Transform| match t {
        Transform::LowPass { .. } | Transform::Lossy { .. } => 0.85,
        _ => 0.9,
    };
    let detectors: Vec<(Detector, f64)> = Transform::default_set()
        .into_iter()
        .filter(|t| !matches!(t, Transform::Lpc { .. }))
        .map(|t| (floor(&t), t))
        .map(|(f, t)| (Detector::Consistency(t), f))
        .collect();
    check(&detectors);
}

/// LPC re-synthesis as a consistency transform, measured 2026-12-01 on real speech: AUC 0.83
/// while an attack stopped at the first beam decode of its target, 0.67 once success also needs
/// the target to lead under teacher forcing (the examples go further, and more of them survive
/// the re-synthesis), and 0.58 on the same attacks built with gemm's AVX-512 kernels instead of
/// its AVX2 ones (1 of 6 examples flagged). An AUC that moves that much with the last bits of
/// the examples is not a working detector on real speech.
#[test]
#[ignore = "fails on real speech: lpc-16 AUC 0.58–0.83, 1–3 of 6 PGD examples flagged"]
fn lpc_consistency_separates_clean_from_pgd_examples() {
    check(&[(
        Detector::Consistency(Transform::Lpc { order: 16, bits: 4 }),
        0.85,
    )]);
}

#[test]
fn confidence_separates_clean_from_pgd_examples() {
    check(&[(Detector::Confidence, 0.9)]);
}

/// Floors of the entropy and activation detectors on this fixture (measured 2026-12-07; see
/// their tests).
const ENTROPY_FLOOR: f64 = 0.9;
const ACTIVATION_FLOOR: f64 = 0.9;

/// The decoder's mean next-token entropy: an example pushed just over the line to its target
/// leaves the decoder split between words (measured 2026-12-07: AUC 1.00, clean 0.18–1.09
/// nats, examples 1.59–3.86).
#[test]
fn entropy_separates_clean_from_pgd_examples() {
    check(&[(Detector::Entropy, ENTROPY_FLOOR)]);
}

/// The activation detector, fitted on the train split's clean speech (four short LJ Speech
/// clips, one reader), against PGD examples of that reader that it never saw: their encoder
/// activations sit far from the fitted Gaussians (measured 2026-12-07: clean 0.97–1.05,
/// examples 3.7–4.5). The clean side is the fitting data itself, so this shows the detector
/// responds to the perturbation, not that it generalises: see the next test.
#[test]
fn activation_distance_flags_pgd_examples_of_the_speaker_it_was_fitted_on() {
    let (c, a) = of(&activation_detector());
    let auc = roc_auc(&c[..ATTACKED], &a[..ATTACKED]).unwrap();
    eprintln!("activations, fitted speaker: AUC {auc:.3}: clean {c:.3?} adversarial {a:.3?}");
    assert!(auc >= ACTIVATION_FLOOR, "AUC {auc}");
}

/// Judged on another speaker (LibriVox), measured 2026-12-07: AUC 0.22 — that reader's clean
/// clips score 6.5–7.2 and his PGD examples 6.0–6.8: the speaker moves the activations more
/// than a 30-dB perturbation does. Fitted on 43 clips of two corpora, 12 held-out clips gave
/// 0.76 pooled and 0.84–1.00 within each speaker (README): fit it on the speakers it watches.
#[test]
#[ignore = "fails on a held-out speaker: activations AUC 0.22 (fitted on 4 clips of one reader)"]
fn activation_distance_separates_held_out_clean_speech_from_pgd_examples() {
    let (c, a) = of(&activation_detector());
    let auc = roc_auc(&c[TRAIN_CLEAN..], &a[ATTACKED..]).unwrap();
    eprintln!("activations, held-out speaker: AUC {auc:.3}: clean {c:.3?} adversarial {a:.3?}");
    assert!(auc >= 0.75, "AUC {auc}");
}

/// Temporal dependency (the first half's transcript against the first half of the whole one),
/// measured 2026-12-01 on real speech: AUC 1.00 on examples built with gemm's AVX2 kernels and
/// GEMM decoder products; 0.88 on the same attacks built with its AVX-512 kernels and the
/// few-row decoder products (other rounding, so the attacks stop at other steps): the example
/// LibriVox 0890 → "what's the weather today" (17 steps) scores 0, as on the low-pass, codec
/// and mel transforms, while two clean clips score 0.12. Like `lpc-16`, a figure that moves
/// with the examples' last bits: a known failure until the examples carry a margin (issue 19)
/// and the set is larger (issue 21).
#[test]
#[ignore = "fails with today's examples: temporal AUC 0.88–1.00 with the examples' last bits"]
fn temporal_dependency_separates_clean_from_pgd_examples() {
    check(&[(Detector::Temporal { portion: 0.5 }, 0.9)]);
}

/// The noise floor separated the espeak commands (whose silences are exact zeros that a
/// perturbation fills) at AUC 0.79; on recorded speech, which has a noise floor of its own, it
/// measured 0.67 on 2026-12-01: not a working detector there.
#[test]
#[ignore = "fails on real speech: noise-floor AUC 0.67 (was 0.79 on the espeak commands)"]
fn noise_floor_separates_clean_from_pgd_examples() {
    check(&[(Detector::NoiseFloor, 0.7)]);
}

#[test]
fn a_threshold_calibrated_on_clean_speech_flags_the_adversarial_examples() {
    // Calibrated on the train split's clean clips; judged on the test split's speaker.
    let (clean, adv) = of(&Detector::Consistency(Transform::Quantize { bits: 8 }));
    let t = threshold_at_fpr(&clean[..TRAIN_CLEAN], 0.0).unwrap();
    assert!(clean[..TRAIN_CLEAN].iter().all(|s| *s <= t));
    let held_out_adv = &adv[ATTACKED..];
    let flagged = held_out_adv.iter().filter(|s| **s > t).count();
    assert!(
        flagged + 1 >= held_out_adv.len(),
        "{flagged} of {} held-out adversarial examples flagged (threshold {t}, clean {clean:?}, \
         adversarial {adv:?})",
        held_out_adv.len()
    );
    let false_alarms = clean[TRAIN_CLEAN..].iter().filter(|s| **s > t).count();
    assert!(
        false_alarms <= 1,
        "{false_alarms} of the held-out clean clips flagged (threshold {t}, {clean:?})"
    );
}

/// The autoencoder trained on the train split's clean speech, with its scores of the train
/// split, of the test split's clean clips and of the test split's adversarial examples: made
/// once for this binary.
fn autoencoder_scores() -> &'static (Vec<f64>, Vec<f64>, Vec<f64>) {
    use advox::detect::autoencoder::{MelAutoencoder, TrainConfig};
    static SCORES: OnceLock<(Vec<f64>, Vec<f64>, Vec<f64>)> = OnceLock::new();
    SCORES.get_or_init(|| {
        let train: Vec<Vec<f32>> = clean()[..TRAIN_CLEAN].to_vec();
        let ae = MelAutoencoder::train(
            &train,
            &TrainConfig::default(),
            &candle_core::Device::Cpu,
            &mut |_, _| {},
        )
        .unwrap();
        let score =
            |set: &[Vec<f32>]| -> Vec<f64> { set.iter().map(|x| ae.score(x).unwrap()).collect() };
        (
            score(&train),
            score(&clean()[TRAIN_CLEAN..]),
            score(&adversarial()[ATTACKED..]),
        )
    })
}

#[test]
fn autoencoder_reconstructs_its_training_speech_better_than_held_out_speech() {
    let (trained, held_out, _) = autoencoder_scores();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(trained) < mean(held_out),
        "train {trained:?}, held out {held_out:?}"
    );
}

/// Trained on one speaker (LJ Speech), judged on another (LibriVox): measured 2026-12-01, AUC
/// 0.33 — the speaker mismatch outweighs a 30-dB perturbation (on the espeak commands, with
/// their digital silence, it reached 0.83).
#[test]
#[ignore = "fails on real speech: autoencoder AUC 0.33 on a held-out speaker (issue 21)"]
fn autoencoder_trained_on_clean_speech_flags_pgd_examples_of_held_out_speech() {
    let (_, c, a) = autoencoder_scores();
    let auc = roc_auc(c, a).unwrap();
    eprintln!("autoencoder AUC {auc:.3}: clean {c:.4?} adversarial {a:.4?}");
    assert!(auc >= 0.75, "AUC {auc}");
}

#[test]
fn ensemble_fitted_on_some_examples_separates_held_out_ones() {
    use advox::detect::ensemble::Ensemble;
    let members = vec![
        Detector::Consistency(Transform::Quantize { bits: 8 }),
        Detector::Temporal { portion: 0.5 },
        Detector::Confidence,
        Detector::NoiseFloor,
    ];
    let rows = |adversarial: bool| -> Vec<Vec<f64>> {
        let cols: Vec<&Vec<f64>> = members
            .iter()
            .map(|d| if adversarial { &of(d).1 } else { &of(d).0 })
            .collect();
        (0..cols[0].len())
            .map(|i| cols.iter().map(|c| c[i]).collect())
            .collect()
    };
    let (clean, adv) = (rows(false), rows(true));
    // Fitted on the train split's examples, judged on the test split's.
    let (fit_clean, test_clean) = clean.split_at(TRAIN_CLEAN);
    let (fit_adv, test_adv) = adv.split_at(ATTACKED);
    let e = Ensemble::fit(members.clone(), fit_clean, fit_adv).unwrap();
    let p = |r: &[Vec<f64>]| -> Vec<f64> { r.iter().map(|x| e.combine(x).unwrap()).collect() };
    let auc = roc_auc(&p(test_clean), &p(test_adv)).unwrap();
    eprintln!("ensemble weights {:?}, held-out AUC {auc:.3}", e.weights);
    assert!(auc >= 0.9, "held-out AUC {auc}");
    // As a detector it scores an input exactly as combining its members' scores.
    let ctx = context();
    let x = &adversarial()[0];
    let as_detector = Detector::Ensemble(std::sync::Arc::new(e.clone()));
    let direct = as_detector.score(&ctx, &Input::new(x)).unwrap();
    assert!((direct - e.combine(&adv[0]).unwrap()).abs() < 1e-12);
}
