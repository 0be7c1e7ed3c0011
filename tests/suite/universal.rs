//! Universal perturbations on the real tiny.en model, trained on real speech and judged on
//! speakers that training never heard: trained on `common::corpus_train` (LJ Speech, one female
//! reader), judged on `common::corpus_test` (a male LibriVox reader) on its own.

use crate::common;
use advox::text::normalize_transcript;

use advox::attack::universal::{
    evaluate_universal, prepare, train_universal, UniversalConfig, UniversalMode, Utterance,
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
    // 30 steps of 0.004, measured 2026-12-01: held-out WER 0.45 (noise 0.05), training offsets
    // 0.29 (noise 0.00). 30 steps of 0.002 left the held-out WER at 0.37; 60 of them reached 0.55.
    let cfg = UniversalConfig {
        steps: 30,
        step_size: 0.004,
        ..UniversalConfig::additive()
    };
    let mut steps = 0;
    let delta = train_universal(model, &train, &cfg, &AtomicBool::new(false), &mut |_| {
        steps += 1
    })
    .unwrap();
    assert_eq!(steps, cfg.steps);
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
    eprintln!(
        "held-out WER {:.2} with the perturbation, {:.2} with noise: {:?}",
        attacked.mean_wer, control.mean_wer, attacked.results
    );
    // And on the training set, from other offsets than training drew, next to the same noise.
    let on_train = evaluate_universal(model, &train, cfg.mode, &delta, &decode, 2).unwrap();
    let train_control = evaluate_universal(model, &train, cfg.mode, &noise, &decode, 2).unwrap();
    eprintln!(
        "training WER {:.2} with the perturbation, {:.2} with noise: {:?}",
        on_train.mean_wer, train_control.mean_wer, on_train.results
    );
    assert!(
        attacked.mean_wer >= 0.4 && attacked.mean_wer >= control.mean_wer + 0.25,
        "held-out WER {:.2} with the perturbation, {:.2} with noise",
        attacked.mean_wer,
        control.mean_wer
    );
    assert!(
        on_train.mean_wer >= train_control.mean_wer + 0.2,
        "training WER {:.2} with the perturbation, {:.2} with noise",
        on_train.mean_wer,
        train_control.mean_wer
    );
}

/// The prefix-mute segment trained (Raina et al.'s 0.64 s at 0.02; 80 of the default 100 steps)
/// on the train split, with the utterances of both splits, judged against timestamp decoding
/// (Whisper's default transcribe mode; plain decoding never starts with end-of-text): made once
/// for this binary.
struct PrefixMute {
    train: Vec<Utterance>,
    held_out: Vec<Utterance>,
    delta: Vec<f32>,
    noise: Vec<f32>,
}

fn timestamps() -> DecodeOptions {
    DecodeOptions {
        timestamps: true,
        ..Default::default()
    }
}

fn prefix_mute() -> &'static PrefixMute {
    static PM: std::sync::OnceLock<PrefixMute> = std::sync::OnceLock::new();
    PM.get_or_init(|| {
        let model = common::model();
        let decode = timestamps();
        let train = prepare(model, set(common::corpus_train(4)), &Goal::Mute, &decode).unwrap();
        let held_out = prepare(model, set(common::corpus_test(3)), &Goal::Mute, &decode).unwrap();
        // 80 steps: measured 2026-12-01 on one 100-step run (same draws, constant step), the
        // training utterances muted after 40, 50, 60, 70, 80, 90, 100 steps: 0, 2, 2, 3, 4, 4, 4
        // of 4.
        let cfg = UniversalConfig {
            steps: 80,
            ..UniversalConfig::prefix_mute()
        };
        assert_eq!(
            (cfg.length, cfg.linf),
            (10_240, 0.02),
            "Raina et al.'s 0.64 s at 0.02"
        );
        let delta =
            train_universal(model, &train, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert!(delta.iter().all(|d| d.abs() <= cfg.linf));
        let mut rng = Rng::new(3);
        let noise: Vec<f32> = (0..delta.len()).map(|_| rng.symmetric(cfg.linf)).collect();
        PrefixMute {
            train,
            held_out,
            delta,
            noise,
        }
    })
}

/// How many of `set` are muted with `delta` prepended.
fn muted(set: &[Utterance], delta: &[f32]) -> usize {
    let e = evaluate_universal(
        common::model(),
        set,
        UniversalMode::PrefixMute,
        delta,
        &timestamps(),
        1,
    )
    .unwrap();
    for r in &e.results {
        assert!(r.success || !r.adversarial.is_empty());
    }
    eprintln!("{:?}", e.results);
    e.results.iter().filter(|r| r.success).count()
}

#[test]
fn prefix_mute_segment_mutes_its_training_utterances_and_noise_does_not() {
    let pm = prefix_mute();
    let (by_segment, by_noise) = (muted(&pm.train, &pm.delta), muted(&pm.train, &pm.noise));
    assert!(
        by_segment >= 3,
        "only {by_segment} of {} training utterances muted",
        pm.train.len()
    );
    assert_eq!(by_noise, 0, "noise of the same bound mutes too: no test");
}

/// Held-out speakers judged on their own, after this file's short training (80 steps on 4
/// clips). Measured 2026-12-01: 0 of 3 held-out utterances muted (also 0 of 3 when trained on 12
/// clips of seven speakers). Longer training on more speakers does generalise: see the shipped
/// segment's test below (600 steps on 43 recordings, too long to train here).
#[test]
#[ignore = "fails today: the segment mutes 0 of 3 held-out speakers' utterances (issue 20)"]
fn prefix_mute_segment_mutes_held_out_speakers() {
    let pm = prefix_mute();
    let (by_segment, by_noise) = (
        muted(&pm.held_out, &pm.delta),
        muted(&pm.held_out, &pm.noise),
    );
    assert_eq!(by_noise, 0, "noise of the same bound mutes too: no test");
    assert!(
        by_segment >= 2,
        "only {by_segment} of {} held-out utterances muted",
        pm.held_out.len()
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

#[test]
fn a_long_recording_trains_window_by_window() {
    use advox::mel::N_SAMPLES;
    let model = common::model();
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let clips = common::corpus_test(2);
    // 75 s: the first clip padded to 30 s, 30 s of digital silence, then the second clip.
    let mut x = clips[0].samples.clone();
    x.resize(2 * N_SAMPLES, 0.0);
    x.extend_from_slice(&clips[1].samples);
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let set = prepare(model, vec![("long.wav".into(), x)], &goal, &decode).unwrap();
    let names: Vec<&str> = set.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        ["long.wav@0s", "long.wav@60s"],
        "the silent window is left out"
    );
    assert_eq!(set[0].samples.len(), N_SAMPLES);
    assert_eq!(set[1].samples, clips[1].samples);
    let cfg = UniversalConfig {
        steps: 2,
        ..UniversalConfig::additive()
    };
    let delta = train_universal(model, &set, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(delta.len(), cfg.length);
    assert!(delta.iter().any(|d| *d != 0.0));
}

/// A mute segment trained for several models at once takes turns over them (here tiny.en
/// twice, the mechanics — CI has no second model; Whisper base is the README's measurement):
/// it trains within the bound as one model does; the additive mode, whose goal is one model's
/// transcripts, is refused.
#[test]
fn a_mute_segment_trains_for_several_models_and_additive_refuses_them() {
    use advox::attack::universal::train_universal_ensemble;
    let model = common::model();
    let clips = common::corpus_test(2);
    let set = prepare(model, set(clips), &Goal::Mute, &timestamps()).unwrap();
    let cfg = UniversalConfig {
        steps: 2,
        ..UniversalConfig::prefix_mute()
    };
    let twice = |cfg: &UniversalConfig| {
        train_universal_ensemble(
            &[model, model],
            &set,
            cfg,
            &AtomicBool::new(false),
            &mut |_| {},
        )
    };
    let delta = twice(&cfg).unwrap();
    assert_eq!(delta.len(), cfg.length);
    assert!(delta.iter().all(|d| d.abs() <= cfg.linf));
    let single = train_universal(model, &set, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    // The same model twice draws what one model draws, in the same order (the turns over the
    // models come before those over front ends and decodings).
    assert_eq!(delta, single);
    let additive = UniversalConfig {
        steps: 1,
        ..UniversalConfig::additive()
    };
    assert!(twice(&additive)
        .unwrap_err()
        .to_string()
        .contains("mute modes"));
}

/// The shipped segments prepended to the 12 recordings of `bench/heldout.csv` (speakers or
/// utterances training never heard: the LibriVox reader, the English Rhino requests, LJ Speech
/// utterances), judged by faster-whisper — not our decoder — in one run:
/// - the prefix-mute segment (`models/prefix-mute.wav`, `bench/prefix_mute.sh`: 600 steps on the
///   43 recordings of `bench/cloak-train.csv` through faster-whisper's front end, timestamp
///   decoding): in the default timestamp mode it hears nothing in all 12 at beam 5 and greedy
///   (measured 2026-12-07; asserted ≥ 11, the 90 %); advox's own decoder (OpenAI's
///   front end) mutes all 12 too;
/// - Cloak's built-in mute segment (`models/mute-segment.wav`, `bench/mute_segment.sh`: the same
///   trained on against plain decoding too): plain decoding (`without_timestamps`) hears
///   nothing but " ." in 10 of 12 at beam 5 and greedy, timestamps nothing in 10 of 12
///   (measured 2026-12-07 on these 16-bit files; 11 and 10 on float input; asserted ≥ 9);
///
/// Uniform noise of the same bound and length mutes none in any setting.
#[test]
fn the_shipped_mute_segments_mute_held_out_recordings_for_faster_whisper() {
    use advox::audio::{read_audio_16k_mono, write_wav, WavFormat};
    use advox::verify::Verifier;
    let root = common::root();
    let segment = |name: &str| {
        let delta = read_audio_16k_mono(&root.join("models").join(name)).unwrap();
        let linf = delta.iter().fold(0.0f32, |m, d| m.max(d.abs()));
        assert!(
            delta.len() == 10_240 && linf <= 0.02 + 1e-6,
            "{name}: 0.64 s at most 0.02"
        );
        delta
    };
    let delta = segment("prefix-mute.wav");
    let both = segment("mute-segment.wav");
    let mut rng = Rng::new(5);
    let noise: Vec<f32> = (0..delta.len()).map(|_| rng.symmetric(0.02)).collect();
    let dir = common::fresh_dir("prefix-mute");
    let entries = advox::manifest::read_manifest(&root.join("bench/heldout.csv")).unwrap();
    assert_eq!(entries.len(), 12);
    let mut files = Vec::new();
    let mut clean = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let x = read_audio_16k_mono(&e.input).unwrap();
        clean.push((e.input.display().to_string(), x.clone()));
        for (tag, prefix) in [("segment", &delta), ("both", &both), ("noise", &noise)] {
            let y = UniversalMode::PrefixMute.apply(prefix, &x, 0);
            let path = dir.join(format!("{i:02}-{tag}.wav"));
            write_wav(&path, &y, 16_000, WavFormat::Pcm16, &[]).unwrap();
            files.push(path);
        }
    }
    let faster_whisper = &Verifier::parse_list("faster-whisper").unwrap()[0];
    let heard = faster_whisper
        .transcribe_files(&common::model().dir, &files, None, &mut |_| {})
        .unwrap();
    // Recordings of `tag` heard as nothing (after normalisation: " ." is nothing).
    let silent = |tag: &str, beam: usize, timestamps: bool| {
        files
            .iter()
            .zip(&heard)
            .filter(|(f, _)| f.to_string_lossy().ends_with(&format!("-{tag}.wav")))
            .filter(|(_, settings)| {
                settings.iter().any(|h| {
                    h.beam == Some(beam)
                        && h.timestamps == Some(timestamps)
                        && h.text
                            .as_deref()
                            .is_ok_and(|t| normalize_transcript(t).is_empty())
                })
            })
            .count()
    };
    for beam in [5, 1] {
        for timestamps in [true, false] {
            eprintln!(
                "faster-whisper beam {beam}, timestamps {timestamps}: prefix-mute mutes {}, \
                 the mute segment {}, noise {} of 12",
                silent("segment", beam, timestamps),
                silent("both", beam, timestamps),
                silent("noise", beam, timestamps)
            );
            assert_eq!(
                silent("noise", beam, timestamps),
                0,
                "noise mutes too: no test"
            );
        }
        assert!(silent("segment", beam, true) >= 11, "{heard:?}");
        assert!(silent("both", beam, false) >= 9, "{heard:?}");
        assert!(silent("both", beam, true) >= 9, "{heard:?}");
    }
    let decode = timestamps();
    let set = prepare(common::model(), clean, &Goal::Mute, &decode).unwrap();
    assert_eq!(muted(&set, &delta), 12);
}
