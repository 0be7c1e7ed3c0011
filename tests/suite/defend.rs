//! Defences on the real tiny.en model, on held-out real speech (`common::corpus_test`).

use crate::common;

use advox::defend::smoothing::{smoothed_transcribe, SmoothingConfig};
use advox::defend::Defense;
use advox::model::DecodeOptions;
use advox::text::normalize_transcript;

fn greedy() -> DecodeOptions {
    DecodeOptions {
        beam_size: 1,
        ..Default::default()
    }
}

/// Clip `i` of the held-out real speech (a LibriVox reader; see `common::corpus_test`) and its
/// clean greedy transcript.
fn real_speech(i: usize) -> (Vec<f32>, String) {
    let x = common::corpus_test(i + 1).remove(i).samples;
    let clean = advox::transcribe::transcribe(common::model(), &x, &greedy())
        .unwrap()
        .text;
    (x, clean)
}

#[test]
fn smoothing_certifies_clean_speech_at_small_sigma_and_abstains_when_noise_drowns_it() {
    let model = common::model();
    // (Clip 0 is borderline for tiny.en: its clean decode says "old-sposed" where noise of
    // σ = 0.001 already gives "ill disposed".)
    let (x, clean) = real_speech(1);
    let cfg = SmoothingConfig {
        sigma: 0.001,
        selection_samples: 2,
        estimation_samples: 8,
        ..Default::default()
    };
    let s = smoothed_transcribe(model, &greedy(), &x, &cfg).unwrap();
    assert!(!s.abstained, "{s:?}");
    assert_eq!(normalize_transcript(&s.text), normalize_transcript(&clean));
    // All 8 agree: p_lower = 0.05^(1/8), radius σ·Φ⁻¹(p_lower).
    assert_eq!(s.agreeing, 8);
    assert!((s.p_lower - 0.05f64.powf(1.0 / 8.0)).abs() < 1e-9);
    assert!(s.radius > 0.0 && s.radius < cfg.sigma as f64);
    // Same seed, same answer.
    assert_eq!(smoothed_transcribe(model, &greedy(), &x, &cfg).unwrap(), s);
    // The same speech under noise of σ = 0.5, far louder than the speech: the smoothed
    // classifier must not return the clean transcript as certified (it abstains, or what it
    // hears is no longer the speech). With the case above, a defence that always abstains (or
    // always answers) fails one of the two.
    let drowned = SmoothingConfig {
        sigma: 0.5,
        selection_samples: 2,
        estimation_samples: 6,
        ..Default::default()
    };
    let d = smoothed_transcribe(model, &greedy(), &x, &drowned).unwrap();
    assert!(
        d.abstained || normalize_transcript(&d.text) != normalize_transcript(&clean),
        "{d:?}"
    );
    if d.abstained {
        assert_eq!((d.text.as_str(), d.radius), ("", 0.0));
        assert!(d.p_lower <= 0.5, "abstained with p_lower {}", d.p_lower);
    }
}

#[test]
fn vote_and_purification_keep_clean_speech() {
    let model = common::model();
    let (x, clean) = real_speech(0);
    let vote = Defense::parse("vote").unwrap();
    let d = vote.transcribe(&[model], &greedy(), &x).unwrap();
    assert_eq!(normalize_transcript(&d.text), normalize_transcript(&clean));
    assert!(d.agreement > 0.5, "{d:?}");
    let purify = Defense::parse("purify:quantize-8").unwrap();
    let p = purify.transcribe(&[model], &greedy(), &x).unwrap();
    assert_eq!(normalize_transcript(&p.text), normalize_transcript(&clean));
    assert!(Defense::None.transcribe(&[], &greedy(), &x).is_err());
}

#[test]
fn trainable_whisper_matches_the_model_and_its_gradients_match_finite_differences() {
    use advox::defend::adv_train::{Scope, TrainableWhisper, TrainingExample};
    let model = common::model();
    let (config, weights) =
        advox::model::load_weights(&common::model_dir(), &candle_core::Device::Cpu).unwrap();
    let net = TrainableWhisper::from_weights(&config, &weights, Scope::All).unwrap();
    let x = common::sample("open_the_front_door.wav");
    let t = advox::transcribe::transcribe(model, &x, &greedy()).unwrap();
    let ex = TrainingExample::new(model, &x, &t.tokens).unwrap();
    // Encoder features and decoder logits agree with the inference model's.
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let features = net.encode(&ex.mel).unwrap();
    let e = common::rel_l2(&flat(&features), &flat(&ex.features));
    assert!(e < 1e-4, "encoder features differ by {e}");
    let ours = net.logits(&ex.features, &ex.input).unwrap();
    let ids = candle_core::Tensor::from_vec(
        ex.input.clone(),
        (1, ex.input.len()),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let reference = model
        .whisper
        .decoder_logits(&ex.features, &ids)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let e = common::rel_l2(&flat(&ours), &flat(&reference));
    assert!(e < 1e-4, "logits differ by {e}");
    // The gradient of the loss w.r.t. weights of every kind, encoder included, against central
    // differences at its largest element.
    let names = [
        "decoder.layers.1.fc1.weight",
        "decoder.layers.0.encoder_attn.q_proj.weight",
        "decoder.layers.2.self_attn_layer_norm.weight",
        "decoder.embed_tokens.weight",
        "encoder.conv1.weight",
        "encoder.conv2.bias",
        "encoder.layers.1.self_attn.k_proj.weight",
        "encoder.layers.3.fc2.weight",
        "encoder.layer_norm.bias",
    ];
    let grads = net.gradients_of(&ex, &names).unwrap();
    for (name, g) in names.iter().zip(&grads) {
        let (i, analytic) = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, v)| (i, *v))
            .unwrap();
        let h = 1e-2;
        net.nudge(name, i, h).unwrap();
        let up = net.loss(&ex).unwrap().to_scalar::<f32>().unwrap();
        net.nudge(name, i, -2.0 * h).unwrap();
        let down = net.loss(&ex).unwrap().to_scalar::<f32>().unwrap();
        net.nudge(name, i, h).unwrap();
        let fd = (up - down) / (2.0 * h);
        eprintln!("{name}[{i}]: analytic {analytic}, finite differences {fd}");
        assert!(
            analytic.abs() > 1e-2,
            "{name}: a vanishing gradient checks nothing"
        );
        assert!(
            (fd - analytic).abs() <= 0.05 * analytic.abs() + 1e-3,
            "{name}[{i}]: analytic {analytic}, finite differences {fd}"
        );
    }
    // Under the decoder scope the encoder is frozen.
    let dec = TrainableWhisper::from_weights(&config, &weights, Scope::Decoder).unwrap();
    assert!(dec.trainable_parameters() < net.trainable_parameters());
    assert!(dec.gradients_of(&ex, &["encoder.conv1.weight"]).is_err());
}

/// An attack that knows the defence (Athalye et al. 2018): PGD at L∞ 0.005 made on the
/// undefended model is undone by a 4-kHz low-pass, the same PGD with its gradient taken through
/// the low-pass (its exact adjoint) gets through it. Held-out LibriVox speech (`0930`).
#[test]
fn pgd_through_a_low_pass_defence_beats_it_where_the_plain_attack_does_not() {
    use advox::attack::{run_attack, run_attack_through, AttackConfig};
    use advox::defend::adaptive::DefenseChannel;
    use advox::objective::{Goal, Objective};
    use advox::perturb::Constraints;
    use std::sync::atomic::AtomicBool;
    let model = common::model();
    let (x, _) = real_speech(1);
    let decode = greedy();
    let clean = advox::transcribe::transcribe(model, &x, &decode).unwrap();
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let objective = Objective::new(model, goal.clone(), &clean.text, &clean.tokens).unwrap();
    let cfg = AttackConfig {
        constraints: Constraints {
            linf: Some(0.005),
            ..Default::default()
        },
        step_size: 0.0005,
        steps: 30,
        decode: decode.clone(),
        ..Default::default()
    };
    let defense = Defense::parse("purify:lowpass-4000").unwrap();
    let through = |adv: &[f32]| defense.transcribe(&[model], &decode, adv).unwrap().text;
    let cancel = AtomicBool::new(false);
    let plain = run_attack(model, &x, &objective, &cfg, &cancel, &mut |_| {}).unwrap();
    assert!(plain.success, "{plain:?}");
    let heard = through(&plain.adversarial);
    assert!(!goal.is_met(&clean.text, &heard), "{heard:?}");
    let models = [model];
    let channel = DefenseChannel::new(&defense, &models, &x, &goal, &clean, &decode, 2).unwrap();
    assert_eq!(channel.gradient(), "lowpass-4000 exact");
    let adaptive = run_attack_through(
        model,
        &x,
        &objective,
        &cfg,
        Some(&channel),
        &cancel,
        &mut |_| {},
    )
    .unwrap();
    let heard = through(&adaptive.adversarial);
    assert!(adaptive.success, "{heard:?}");
    assert!(goal.is_met(&clean.text, &heard), "{heard:?}");
    let linf = advox::metrics::linf(&adaptive.perturbation);
    assert!(linf <= 0.005 + 1e-6, "{linf}");
}
