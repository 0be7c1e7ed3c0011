//! Universal perturbations on the real tiny.en model.

mod common;

use advox::attack::universal::{
    evaluate_universal, prepare, train_universal, UniversalConfig, UniversalMode,
};
use advox::audio::read_audio_16k_mono;
use advox::model::DecodeOptions;
use advox::objective::Goal;
use advox::rng::Rng;
use std::sync::atomic::AtomicBool;

fn set(names: &[&str]) -> Vec<(String, Vec<f32>)> {
    names
        .iter()
        .map(|n| {
            let path = common::root().join("samples").join(n);
            (n.to_string(), read_audio_16k_mono(&path).unwrap())
        })
        .collect()
}

#[test]
fn additive_universal_perturbation_raises_wer_on_held_out_utterances() {
    let model = common::model();
    let decode = DecodeOptions::default();
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let train = prepare(
        model,
        set(&[
            "open_the_front_door.wav",
            "turn_off_the_lights.wav",
            "call_my_mother.wav",
            "whats_the_weather_today.wav",
        ]),
        &goal,
        &decode,
    )
    .unwrap();
    let held_out = prepare(
        model,
        set(&["play_some_music.wav", "lock_the_back_door.wav"]),
        &goal,
        &decode,
    )
    .unwrap();
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
    let train = prepare(
        model,
        set(&[
            "call_my_mother.wav",
            "lock_the_back_door.wav",
            "open_the_front_door.wav",
            "play_some_music.wav",
        ]),
        &Goal::Mute,
        &decode,
    )
    .unwrap();
    let held_out = prepare(
        model,
        set(&["turn_off_the_lights.wav", "whats_the_weather_today.wav"]),
        &Goal::Mute,
        &decode,
    )
    .unwrap();
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
    let mut muted = 0;
    let mut muted_by_noise = 0;
    for s in [&train, &held_out] {
        let with = evaluate_universal(model, s, cfg.mode, &delta, &decode, 1).unwrap();
        let control = evaluate_universal(model, s, cfg.mode, &noise, &decode, 1).unwrap();
        muted += with.results.iter().filter(|r| r.success).count();
        muted_by_noise += control.results.iter().filter(|r| r.success).count();
        for r in &with.results {
            assert!(r.success || !r.adversarial.is_empty());
        }
    }
    assert!(muted >= 4, "only {muted} of 6 utterances muted");
    assert_eq!(
        muted_by_noise, 0,
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
