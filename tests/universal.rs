//! Universal perturbations on the real tiny.en model, trained on real speech and judged on
//! speakers that training never heard: trained on `common::corpus_train` (LJ Speech, one female
//! reader), judged on `common::corpus_test` (a male LibriVox reader) on its own.

mod common;

use advox::attack::universal::{
    evaluate_universal, prepare, train_universal, UniversalConfig, UniversalMode,
};
use advox::model::DecodeOptions;
use advox::objective::Goal;
use advox::rng::Rng;
use std::sync::atomic::AtomicBool;

fn set(clips: Vec<common::Clip>) -> Vec<(String, Vec<f32>)> {
    clips.into_iter().map(|c| (c.name, c.samples)).collect()
}

#[test]
fn additive_universal_perturbation_raises_wer_on_held_out_utterances() {
    let model = common::model();
    let decode = DecodeOptions::default();
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let train = prepare(model, set(common::corpus_train(4)), &goal, &decode).unwrap();
    let held_out = prepare(model, set(common::corpus_test(3)), &goal, &decode).unwrap();
    let cfg = UniversalConfig {
        steps: 30,
        ..UniversalConfig::additive()
    };
    let mut steps = 0;
    let delta = train_universal(model, &train, &cfg, &AtomicBool::new(false), &mut |_| {
        steps += 1
    })
    .unwrap();
    assert_eq!(steps, 30);
    assert_eq!(delta.len(), 16_000);
    assert!(delta.iter().all(|d| d.abs() <= cfg.linf));
    // Clean: the utterances transcribe as themselves (WER 0 against their own transcripts).
    let clean = evaluate_universal(model, &held_out, cfg.mode, &[], &decode, 1).unwrap();
    assert_eq!(clean.mean_wer, 0.0);
    // Control: uniform noise of the same bound barely changes anything.
    let mut rng = Rng::new(9);
    let noise: Vec<f32> = (0..delta.len()).map(|_| rng.symmetric(cfg.linf)).collect();
    let control = evaluate_universal(model, &held_out, cfg.mode, &noise, &decode, 1).unwrap();
    let attacked = evaluate_universal(model, &held_out, cfg.mode, &delta, &decode, 1).unwrap();
    assert!(
        attacked.mean_wer >= 0.4 && attacked.mean_wer >= control.mean_wer + 0.25,
        "held-out WER {:.2} with the perturbation, {:.2} with noise: {:?}",
        attacked.mean_wer,
        control.mean_wer,
        attacked.results
    );
    // And on the training set it works from any offset.
    let on_train = evaluate_universal(model, &train, cfg.mode, &delta, &decode, 2).unwrap();
    assert!(on_train.success_rate >= 0.75, "{:?}", on_train.results);
}

#[test]
fn prefix_mute_segment_mutes_most_utterances_under_timestamp_decoding() {
    let model = common::model();
    // Whisper's default transcribe mode; plain decoding never starts with end-of-text.
    let decode = DecodeOptions {
        timestamps: true,
        ..Default::default()
    };
    let train = prepare(model, set(common::corpus_train(4)), &Goal::Mute, &decode).unwrap();
    let held_out = prepare(model, set(common::corpus_test(3)), &Goal::Mute, &decode).unwrap();
    let cfg = UniversalConfig::prefix_mute();
    assert_eq!(
        (cfg.length, cfg.linf),
        (10_240, 0.02),
        "Raina et al.'s 0.64 s at 0.02"
    );
    let delta = train_universal(model, &train, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(delta.iter().all(|d| d.abs() <= cfg.linf));
    let mut rng = Rng::new(3);
    let noise: Vec<f32> = (0..delta.len()).map(|_| rng.symmetric(cfg.linf)).collect();
    // Held-out speakers are judged on their own, next to noise of the same bound.
    let muted = |set: &[advox::attack::universal::Utterance], delta: &[f32]| {
        let e = evaluate_universal(model, set, cfg.mode, delta, &decode, 1).unwrap();
        for r in &e.results {
            assert!(r.success || !r.adversarial.is_empty());
        }
        eprintln!("{:?}", e.results);
        e.results.iter().filter(|r| r.success).count()
    };
    let (held_out_muted, held_out_by_noise) = (muted(&held_out, &delta), muted(&held_out, &noise));
    let (train_muted, train_by_noise) = (muted(&train, &delta), muted(&train, &noise));
    assert!(
        held_out_muted >= 2,
        "only {held_out_muted} of {} held-out utterances muted",
        held_out.len()
    );
    assert!(
        train_muted >= 3,
        "only {train_muted} of {} training utterances muted",
        train.len()
    );
    assert_eq!(
        held_out_by_noise + train_by_noise,
        0,
        "noise of the same bound mutes too: no test"
    );
}

#[test]
fn universal_modes_combine_as_documented() {
    let delta = [0.5f32, -0.25, 0.0];
    let x = [0.1f32, 0.1, 0.1, 0.1, 0.9];
    // Sample i gets δ[(i + offset) % len]; the sum is clipped and quantised to 16 bits.
    let add = UniversalMode::Additive.apply(&delta, &x, 1);
    let q = |v: f32| (v * 32768.0).round().clamp(-32768.0, 32767.0) / 32768.0;
    assert_eq!(add, vec![q(-0.15), q(0.1), q(0.6), q(-0.15), q(0.9)]);
    let pre = UniversalMode::PrefixMute.apply(&delta, &x, 7);
    assert_eq!(pre.len(), 8);
    assert_eq!(pre[0], q(0.5));
    assert_eq!(pre[3], q(0.1));
}
