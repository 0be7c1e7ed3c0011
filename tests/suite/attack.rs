//! White-box attacks on the real tiny.en model: each asserts real success on the written
//! 16-bit signal, not just that it ran.

use crate::common;

use advox::attack::{run_attack, AttackConfig, Method, Rule};
use advox::audio::{read_audio_16k_mono, write_wav, WavFormat};
use advox::metrics::{linf, snr_db, wer};
use advox::model::DecodeOptions;
use advox::objective::{Goal, Objective};
use advox::perturb::{Constraints, Domain};
use advox::text::normalize_transcript;
use advox::transcribe::transcribe;
use std::sync::atomic::AtomicBool;

use common::{objective, sample};

/// Write as 16-bit, read back, transcribe: what a user of the output file gets.
fn transcribe_written(adv: &[f32], name: &str) -> String {
    let back = common::written(adv, name);
    assert_eq!(
        back, adv,
        "the attack's signal is not exactly what a 16-bit WAV stores"
    );
    transcribe(common::model(), &back, &DecodeOptions::default())
        .unwrap()
        .text
}

/// `open_the_front_door.wav` attacked towards "turn off the lights" by targeted PGD as the
/// README's first command runs it (|δ|∞ <= 0.02, SNR >= 30 dB): made once for this binary, checked
/// by the targeted test and compared against by CW.
fn targeted_pgd() -> &'static (Vec<f32>, advox::attack::AttackOutcome) {
    static OUT: std::sync::OnceLock<(Vec<f32>, advox::attack::AttackOutcome)> =
        std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let x = sample("open_the_front_door.wav");
        let obj = objective(&x, Goal::Targeted("turn off the lights".into()));
        let out = common::attack(&x, &obj, &targeted_30db());
        (x, out)
    })
}

/// PGD as the README's first command runs it: |δ|∞ <= 0.02 and SNR >= 30 dB.
fn targeted_30db() -> AttackConfig {
    AttackConfig::quick_start(80)
}

#[test]
fn targeted_pgd_reaches_another_command_at_30_db_snr() {
    let (x, out) = targeted_pgd();
    assert!(out.success, "transcript {:?}", out.transcript);
    assert!(
        snr_db(x, &out.perturbation) >= 30.0,
        "SNR {}",
        snr_db(x, &out.perturbation)
    );
    assert!(linf(&out.perturbation) <= 0.02 + 1.0 / 32768.0);
    assert_eq!(
        normalize_transcript(&transcribe_written(&out.adversarial, "targeted.wav")),
        "turn off the lights"
    );
}

#[test]
fn untargeted_pgd_changes_the_transcript() {
    let x = sample("play_some_music.wav");
    let obj = objective(&x, Goal::Untargeted { min_wer: 0.5 });
    let cfg = AttackConfig {
        constraints: Constraints {
            snr_db: Some(35.0),
            ..Default::default()
        },
        step_size: 0.002,
        steps: 60,
        ..Default::default()
    };
    let out = common::attack(&x, &obj, &cfg);
    assert!(out.success, "transcript {:?}", out.transcript);
    let written = transcribe_written(&out.adversarial, "untargeted.wav");
    assert!(wer("play some music", &written) >= 0.5, "{written:?}");
}

#[test]
fn mute_pgd_silences_the_recogniser() {
    let x = sample("call_my_mother.wav");
    let obj = objective(&x, Goal::Mute);
    let cfg = AttackConfig {
        constraints: Constraints {
            linf: Some(0.03),
            snr_db: Some(25.0),
            ..Default::default()
        },
        step_size: 0.003,
        steps: 80,
        ..Default::default()
    };
    let out = common::attack(&x, &obj, &cfg);
    eprintln!("mute: {} steps, {:?}", out.steps, out.transcript);
    assert!(out.success, "transcript {:?}", out.transcript);
    assert!(normalize_transcript(&transcribe_written(&out.adversarial, "mute.wav")).is_empty());
}

#[test]
fn fgsm_takes_one_bounded_step_that_raises_the_loss() {
    let m = common::model();
    let x = sample("turn_off_the_lights.wav");
    let obj = objective(&x, Goal::Untargeted { min_wer: 0.5 });
    let cfg = AttackConfig {
        method: Method::Fgsm,
        domain: Domain::Waveform,
        constraints: Constraints {
            linf: Some(0.005),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = common::attack(&x, &obj, &cfg);
    assert_eq!(out.steps, 1);
    assert!(linf(&out.perturbation) <= 0.005 + 1.0 / 32768.0);
    let front = advox::mel::MelFrontEnd::new(80, m.whisper.device()).unwrap();
    let loss = |s: &[f32]| {
        let t = candle_core::Tensor::from_vec(s.to_vec(), s.len(), m.whisper.device()).unwrap();
        obj.loss_and_grad(m, &front, &t).unwrap().0
    };
    // The untargeted loss is minus the original transcript's cross-entropy: it must fall.
    assert!(
        loss(&out.adversarial) < loss(&x) - 0.1,
        "{} vs {}",
        loss(&out.adversarial),
        loss(&x)
    );
}

#[test]
fn attacks_are_deterministic_given_the_seed() {
    let x = sample("lock_the_back_door.wav");
    let obj = objective(&x, Goal::Targeted("open the front door".into()));
    // A random start makes the seed matter from the first step on.
    let cfg = |seed| AttackConfig {
        constraints: Constraints {
            linf: Some(0.01),
            ..Default::default()
        },
        rule: Rule::Sign,
        random_start: true,
        steps: 2,
        check_every: 2,
        seed,
        ..Default::default()
    };
    let run = |seed| common::attack(&x, &obj, &cfg(seed)).adversarial;
    let first = run(9);
    assert_ne!(first, x, "the attack changed nothing");
    assert_eq!(first, run(9), "the same seed gave another result");
    assert_ne!(
        first,
        run(10),
        "the seed is ignored: another seed gave the same result"
    );
}

#[test]
fn cancelling_keeps_a_valid_result() {
    let x = sample("lock_the_back_door.wav");
    let obj = objective(&x, Goal::Mute);
    let cfg = AttackConfig {
        constraints: Constraints {
            linf: Some(0.01),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = run_attack(
        common::model(),
        &x,
        &obj,
        &cfg,
        &AtomicBool::new(true),
        &mut |_| {},
    )
    .unwrap();
    assert!(out.cancelled);
    assert_eq!(out.steps, 0);
    assert_eq!(out.adversarial.len(), x.len());
}

#[test]
fn carlini_wagner_succeeds_with_a_quieter_peak_than_pgd() {
    use advox::attack::cw::{run_cw, CwConfig};
    use advox::metrics::dbx;
    let (x, pgd) = targeted_pgd();
    let obj = objective(x, Goal::Targeted("turn off the lights".into()));
    let never = AtomicBool::new(false);
    assert!(pgd.success);
    let cw = run_cw(
        common::model(),
        x,
        &obj,
        // Two rounds of the search over c (the default is three), 80 steps. Measured
        // 2026-12-01 with gemm's AVX-512 kernels and the few-row decoder products: dBx −33.16
        // against PGD's −32.07 (L2 0.418 vs 0.437, SNR 30.4 dB); with the AVX2 kernels −33.31
        // against −31.85 (but L2 0.493, SNR 29.0 dB: CW does not honour an SNR bound, issue 19).
        // Close to the edge before: with the AVX-512 kernels and the old decoder products the
        // same rounds ended at −31.38 against −31.78.
        &CwConfig {
            search_steps: 2,
            ..Default::default()
        },
        &never,
        &mut |_| {},
    )
    .unwrap();
    eprintln!("CW: {} steps", cw.steps);
    assert!(cw.success, "CW transcript {:?}", cw.transcript);
    assert_eq!(
        normalize_transcript(&transcribe_written(&cw.adversarial, "cw.wav")),
        "turn off the lights"
    );
    let (d_pgd, d_cw) = (dbx(x, &pgd.perturbation), dbx(x, &cw.perturbation));
    let (l_pgd, l_cw) = (
        advox::metrics::l2(&pgd.perturbation),
        advox::metrics::l2(&cw.perturbation),
    );
    eprintln!(
        "CW dBx {d_cw:.2}, L2 {l_cw:.4}, SNR {:.2}; PGD dBx {d_pgd:.2}, L2 {l_pgd:.4}, SNR {:.2}",
        snr_db(x, &cw.perturbation),
        snr_db(x, &pgd.perturbation)
    );
    assert!(
        d_cw < d_pgd,
        "CW dBx {d_cw:.2} is not below PGD's {d_pgd:.2}"
    );
}

/// Under a bound CW projects after every step, as PGD does, and stops at its first success.
#[test]
fn carlini_wagner_under_a_bound_ends_inside_it() {
    use advox::attack::cw::{run_cw, CwConfig};
    let x = sample("open_the_front_door.wav");
    let obj = objective(&x, Goal::Targeted("turn off the lights".into()));
    let cfg = CwConfig {
        constraints: Constraints {
            linf: Some(0.02),
            snr_db: Some(30.0),
            ..Default::default()
        },
        // As `advox attack --attack cw --snr-db 30 --eps 0.02` sets it: c 10, PGD's step size.
        initial_c: 10.0,
        learning_rate: 0.002,
        steps: 60,
        search_steps: 2,
        ..Default::default()
    };
    let out = run_cw(
        common::model(),
        &x,
        &obj,
        &cfg,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let snr = snr_db(&x, &out.perturbation);
    eprintln!("bounded CW: {} steps, SNR {snr:.2} dB", out.steps);
    assert!(out.success, "CW transcript {:?}", out.transcript);
    assert!(snr >= 29.99, "SNR {snr}");
    assert!(linf(&out.perturbation) <= 0.02 + 1.0 / 32768.0);
    // Stopped at its first success, within the first value of c.
    assert!(out.steps <= cfg.steps, "{} steps", out.steps);
}

#[test]
fn deepfool_changes_the_transcript_with_less_l2_than_pgd() {
    use advox::attack::deepfool::{run_deepfool, DeepFoolConfig};
    use advox::metrics::l2;
    let m = common::model();
    let x = sample("play_some_music.wav");
    let greedy = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let t = transcribe(m, &x, &greedy).unwrap();
    let obj = Objective::new(m, Goal::Untargeted { min_wer: 0.5 }, &t.text, &t.tokens).unwrap();
    let never = AtomicBool::new(false);
    let pgd_cfg = AttackConfig {
        constraints: Constraints {
            snr_db: Some(35.0),
            ..Default::default()
        },
        step_size: 0.002,
        steps: 60,
        decode: greedy.clone(),
        ..Default::default()
    };
    let pgd = common::attack(&x, &obj, &pgd_cfg);
    assert!(pgd.success, "PGD transcript {:?}", pgd.transcript);
    let df = run_deepfool(
        m,
        &x,
        &obj,
        &DeepFoolConfig {
            decode: greedy.clone(),
            ..Default::default()
        },
        &never,
        &mut |_| {},
    )
    .unwrap();
    assert!(df.success, "DeepFool transcript {:?}", df.transcript);
    let written = read_back(&df.adversarial);
    assert!(wer(&t.text, &transcribe(m, &written, &greedy).unwrap().text) >= 0.5);
    assert!(
        l2(&df.perturbation) < l2(&pgd.perturbation),
        "DeepFool L2 {} vs PGD {}",
        l2(&df.perturbation),
        l2(&pgd.perturbation)
    );
}

#[test]
fn newton_cg_moves_real_speech_within_the_snr_floor_using_curvature() {
    use advox::attack::newton::{run_newton, NewtonConfig};
    let m = common::model();
    let clip = &common::corpus_test(1)[0];
    let greedy = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let t = transcribe(m, &clip.samples, &greedy).unwrap();
    let obj = Objective::new(m, Goal::Untargeted { min_wer: 0.5 }, &t.text, &t.tokens).unwrap();
    let out = run_newton(
        m,
        &clip.samples,
        &obj,
        &NewtonConfig {
            iterations: 15,
            constraints: Constraints {
                snr_db: Some(35.0),
                ..Default::default()
            },
            decode: greedy.clone(),
            ..Default::default()
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    eprintln!(
        "Newton-CG: {} iterations, {} products, {} rejected, {} gradient evaluations, {:?}",
        out.iterations, out.hessian_products, out.rejected, out.attack.steps, out.attack.transcript
    );
    assert!(out.attack.success, "transcript {:?}", out.attack.transcript);
    let snr = snr_db(&clip.samples, &out.attack.perturbation);
    assert!(snr >= 35.0 - 0.01, "SNR {snr}");
    // Every gradient evaluation is counted: one per iteration's point (or reused), one per
    // product, one per trial.
    assert!(out.hessian_products >= out.iterations - 1, "{out:?}");
    assert!(out.attack.steps >= out.iterations + out.hessian_products);
    let written = read_back(&out.attack.adversarial);
    assert!(wer(&t.text, &transcribe(m, &written, &greedy).unwrap().text) >= 0.5);
}

fn read_back(adv: &[f32]) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("advox-attack-rb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("df.wav");
    write_wav(&path, adv, 16_000, WavFormat::Pcm16, &[]).unwrap();
    read_audio_16k_mono(&path).unwrap()
}

#[test]
fn jsma_succeeds_touching_at_most_a_tenth_of_the_bins() {
    use advox::attack::jsma::{run_jsma, JsmaConfig};
    let x = sample("play_some_music.wav");
    let obj = objective(&x, Goal::Untargeted { min_wer: 0.5 });
    let out = run_jsma(
        common::model(),
        &x,
        &obj,
        &JsmaConfig::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert!(out.attack.success, "transcript {:?}", out.attack.transcript);
    assert!(
        out.bins_fraction <= 0.10,
        "touched {} of the bins",
        out.bins_fraction
    );
    // The perturbation lives only on the chosen bins: its STFT is sparse.
    let stft = advox::dsp::Stft::new(512, 128, advox::dsp::hann_periodic(512)).unwrap();
    let spec = stft.stft(&out.attack.perturbation);
    let peak = spec.data.iter().map(|c| c.norm()).fold(0.0f32, f32::max);
    let active =
        spec.data.iter().filter(|c| c.norm() > 0.1 * peak).count() as f32 / spec.data.len() as f32;
    assert!(active <= 0.15, "{active} of the bins carry energy");
    let written = transcribe_written(&out.attack.adversarial, "jsma.wav");
    assert!(wer("play some music", &written) >= 0.5, "{written:?}");
}

#[test]
fn eot_example_survives_fresh_random_transformations() {
    use advox::attack::eot::{EotConfig, Transform};
    use advox::rng::Rng;
    let x = sample("open_the_front_door.wav");
    let obj = objective(&x, Goal::Untargeted { min_wer: 0.5 });
    let eot = EotConfig::default();
    let cfg = AttackConfig {
        constraints: Constraints {
            linf: Some(0.02),
            ..Default::default()
        },
        step_size: 0.002,
        steps: 40,
        eot: Some(eot.clone()),
        ..Default::default()
    };
    let out = common::attack(&x, &obj, &cfg);
    eprintln!("EOT: {} steps, {:?}", out.steps, out.transcript);
    assert!(out.success, "transcript {:?}", out.transcript);
    assert!(obj.is_met(&transcribe_written(&out.adversarial, "eot.wav")));
    // Transformations the attack never saw (gain, delay, band-pass, room, noise): the example
    // still fools the model through most of them, while the clean input survives them.
    let mut rng = Rng::new(0xF2E5);
    let (mut adversarial_fooled, mut clean_fooled) = (0, 0);
    for _ in 0..3 {
        let t = Transform::sample(&eot, &out.adversarial, 16_000, &mut rng);
        let decode = |s: &[f32]| {
            transcribe(common::model(), &t.apply(s), &DecodeOptions::default())
                .unwrap()
                .text
        };
        adversarial_fooled += obj.is_met(&decode(&out.adversarial)) as usize;
        clean_fooled += obj.is_met(&decode(&x)) as usize;
    }
    assert!(adversarial_fooled >= 2, "fooled {adversarial_fooled} of 3");
    assert_eq!(
        clean_fooled, 0,
        "the transformations alone break recognition"
    );
}

#[test]
fn a_strict_targeted_goal_must_not_loop_on_its_target() {
    // Hugging Face's beam search picks a confident repetition of the target over the target
    // and end-of-text; the repeat view scores the target said twice more after itself.
    use advox::mel::MelFrontEnd;
    use advox::objective::{Prompt, Robustness};
    use candle_core::Tensor;
    let model = common::model();
    let clip = &common::corpus_test(4)[3];
    let sentence = advox::transcribe::transcribe(model, &clip.samples, &DecodeOptions::default())
        .unwrap()
        .text;
    // The recording once, and twice in a row (which says the sentence again after itself).
    let twice: Vec<f32> = clip.samples.iter().chain(&clip.samples).copied().collect();
    let objective = |x: &[f32]| {
        let original = advox::transcribe::transcribe(model, x, &DecodeOptions::default()).unwrap();
        Objective::new(
            model,
            Goal::Targeted(sentence.clone()),
            &original.text,
            &original.tokens,
        )
        .unwrap()
        .with_robustness(model, Robustness::across_implementations(1.0), x.len())
        .unwrap()
    };
    let once = objective(&clip.samples);
    let views = once.views();
    assert_eq!(views.len(), 5, "{views:?}");
    assert_eq!(views[4].prompt, Prompt::Repeat);
    assert!(once.robustness().no_repeat);
    let front =
        MelFrontEnd::new(model.whisper.config().num_mel_bins, model.whisper.device()).unwrap();
    let wave = |x: &[f32]| Tensor::from_vec(x.to_vec(), x.len(), model.whisper.device()).unwrap();
    // Said twice: the repetition is likely (teacher-forced, a repetition is likely on
    // speech that says the sentence once too: the first repeated token is the hard one), and
    // the view's gradient pushes it down; it has no lead to gate.
    let looped = objective(&twice);
    assert!(looped.repeats(model, &twice).unwrap());
    let loud = looped
        .evaluate_as(model, &front, &wave(&twice), Prompt::Repeat)
        .unwrap();
    assert!(loud.loss > 0.0, "{}", loud.loss);
    assert!(loud.grad.iter().any(|g| *g != 0.0));
    assert!(loud.lead.is_infinite());
    // Only a targeted goal has the view.
    let original = advox::transcribe::transcribe(model, &twice, &DecodeOptions::default()).unwrap();
    let mute = Objective::new(model, Goal::Mute, &original.text, &original.tokens)
        .unwrap()
        .with_robustness(model, Robustness::across_implementations(1.0), twice.len())
        .unwrap();
    assert!(mute.views().iter().all(|v| v.prompt != Prompt::Repeat));
    assert!(!mute.robustness().no_repeat);
}
