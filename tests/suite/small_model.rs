//! A small randomly initialised Whisper (128 mel bins, multilingual-size vocabulary logic
//! aside): the hand-written backward agrees with finite differences of the forward pass.

use advox::gradient::cross_entropy;
use advox::model::{Weights, Whisper, WhisperConfig};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

fn config() -> WhisperConfig {
    WhisperConfig {
        num_mel_bins: 128,
        max_source_positions: 1500,
        max_target_positions: 16,
        d_model: 32,
        encoder_layers: 2,
        encoder_attention_heads: 2,
        decoder_layers: 2,
        decoder_attention_heads: 4,
        vocab_size: 50,
        suppress_tokens: vec![],
        begin_suppress_tokens: vec![],
    }
}

struct Rng(u64);

impl Rng {
    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

fn random_weights(cfg: &WhisperConfig, seed: u64) -> Weights {
    let mut rng = Rng(seed);
    let d = cfg.d_model;
    let s = 1.0 / (d as f32).sqrt();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let put = |t: &mut HashMap<String, Tensor>,
               rng: &mut Rng,
               name: String,
               shape: &[usize],
               scale: f32| {
        t.insert(name, rng.tensor(shape, scale));
    };
    put(
        &mut t,
        &mut rng,
        "encoder.conv1.weight".into(),
        &[d, cfg.num_mel_bins, 3],
        0.1,
    );
    put(&mut t, &mut rng, "encoder.conv1.bias".into(), &[d], 0.1);
    put(
        &mut t,
        &mut rng,
        "encoder.conv2.weight".into(),
        &[d, d, 3],
        s,
    );
    put(&mut t, &mut rng, "encoder.conv2.bias".into(), &[d], 0.1);
    put(
        &mut t,
        &mut rng,
        "encoder.embed_positions.weight".into(),
        &[1500, d],
        0.5,
    );
    put(
        &mut t,
        &mut rng,
        "decoder.embed_tokens.weight".into(),
        &[cfg.vocab_size, d],
        0.5,
    );
    put(
        &mut t,
        &mut rng,
        "decoder.embed_positions.weight".into(),
        &[cfg.max_target_positions, d],
        0.5,
    );
    let ln = |t: &mut HashMap<String, Tensor>, rng: &mut Rng, p: &str| {
        t.insert(
            format!("{p}.weight"),
            (rng.tensor(&[d], 0.2) + 1.0).unwrap(),
        );
        t.insert(format!("{p}.bias"), rng.tensor(&[d], 0.1));
    };
    ln(&mut t, &mut rng, "encoder.layer_norm");
    ln(&mut t, &mut rng, "decoder.layer_norm");
    let attn = |t: &mut HashMap<String, Tensor>, rng: &mut Rng, p: &str| {
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            t.insert(format!("{p}.{proj}.weight"), rng.tensor(&[d, d], s));
            if proj != "k_proj" {
                t.insert(format!("{p}.{proj}.bias"), rng.tensor(&[d], 0.1));
            }
        }
    };
    for (side, layers) in [
        ("encoder", cfg.encoder_layers),
        ("decoder", cfg.decoder_layers),
    ] {
        for l in 0..layers {
            let p = format!("{side}.layers.{l}");
            attn(&mut t, &mut rng, &format!("{p}.self_attn"));
            ln(&mut t, &mut rng, &format!("{p}.self_attn_layer_norm"));
            ln(&mut t, &mut rng, &format!("{p}.final_layer_norm"));
            put(&mut t, &mut rng, format!("{p}.fc1.weight"), &[4 * d, d], s);
            put(&mut t, &mut rng, format!("{p}.fc1.bias"), &[4 * d], 0.1);
            put(
                &mut t,
                &mut rng,
                format!("{p}.fc2.weight"),
                &[d, 4 * d],
                0.5 * s,
            );
            put(&mut t, &mut rng, format!("{p}.fc2.bias"), &[d], 0.1);
            if side == "decoder" {
                attn(&mut t, &mut rng, &format!("{p}.encoder_attn"));
                ln(&mut t, &mut rng, &format!("{p}.encoder_attn_layer_norm"));
            }
        }
    }
    Weights { tensors: t }
}

fn loss(model: &Whisper, mel: &Tensor, tokens: &Tensor, targets: &[u32]) -> f64 {
    let (logits, _) = model.forward_recorded(mel, tokens).unwrap();
    cross_entropy(&logits, targets).unwrap().0 as f64
}

#[test]
fn backward_matches_finite_differences_on_a_random_model() {
    let cfg = config();
    let model = Whisper::new(cfg.clone(), &random_weights(&cfg, 42)).unwrap();
    let dev = Device::Cpu;
    let mel = (Tensor::randn(0f32, 1.0, (1, 128, 3000), &dev).unwrap() * 0.5).unwrap();
    let input = [1u32, 7, 3, 9, 4];
    let targets = [7u32, 3, 9, 4, 2];
    let tokens = Tensor::from_vec(input.to_vec(), (1, input.len()), &dev).unwrap();
    let (logits, tape) = model.forward_recorded(&mel, &tokens).unwrap();
    let (_, d_logits) = cross_entropy(&logits, &targets).unwrap();
    let grad = model.backward(&tape, &d_logits).unwrap();
    assert_eq!(grad.dims(), mel.dims());
    // Directional derivatives along the gradient and along a random direction.
    let random_dir = Tensor::randn(0f32, 1.0, mel.dims(), &dev).unwrap();
    for dir in [grad.clone(), random_dir] {
        let norm = dir
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        let dir = (dir / norm as f64).unwrap();
        let analytic = (&grad * &dir)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let h = 1e-2;
        let plus = loss(
            &model,
            &(&mel + (&dir * h).unwrap()).unwrap(),
            &tokens,
            &targets,
        );
        let minus = loss(
            &model,
            &(&mel - (&dir * h).unwrap()).unwrap(),
            &tokens,
            &targets,
        );
        let numeric = (plus - minus) / (2.0 * h);
        // The loss is an f32: its difference is only resolved to a few ulps of the loss, which
        // matters along a random direction, where the derivative is small.
        let resolution = 4.0 * f32::EPSILON as f64 * plus.abs().max(minus.abs()) / (2.0 * h);
        let tol = 2e-2 * analytic.abs().max(numeric.abs()).max(1e-3) + resolution;
        assert!(
            (numeric - analytic).abs() < tol,
            "numeric {numeric} vs analytic {analytic}"
        );
    }
}

#[test]
fn leading_frames_backward_matches_the_full_backward_on_a_random_model() {
    // A short "signal" then a constant floor, as a padded 30-s window gives.
    let cfg = config();
    let model = Whisper::new(cfg.clone(), &random_weights(&cfg, 7)).unwrap();
    let dev = Device::Cpu;
    let input = [1u32, 7, 3, 9];
    let targets = [7u32, 3, 9, 4];
    let tokens = Tensor::from_vec(input.to_vec(), (1, input.len()), &dev).unwrap();
    for frames in [1usize, 2, 171, 600, 1499, 3000] {
        let signal = (Tensor::randn(0f32, 1.0, (1, 128, frames), &dev).unwrap() * 0.5).unwrap();
        let mel = if frames < 3000 {
            let floor = Tensor::full(-0.3f32, (1, 128, 3000 - frames), &dev).unwrap();
            Tensor::cat(&[&signal, &floor], 2).unwrap()
        } else {
            signal
        };
        let (logits, tape) = model.forward_recorded(&mel, &tokens).unwrap();
        let (_, d_logits) = cross_entropy(&logits, &targets).unwrap();
        let full = model.backward(&tape, &d_logits).unwrap();
        let part = model.backward_prefix(&tape, &d_logits, frames).unwrap();
        assert_eq!(part.dims(), full.dims());
        let lead = |t: &Tensor| t.narrow(2, 0, frames).unwrap().flatten_all().unwrap();
        let (a, b) = (
            lead(&full).to_vec1::<f32>().unwrap(),
            lead(&part).to_vec1::<f32>().unwrap(),
        );
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            scale > 0.0 && err <= 1e-4 * scale,
            "{frames} frames: error {err} of {scale}"
        );
        let rest = part.narrow(2, frames, 3000 - frames).unwrap();
        let rest = rest
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(rest, 0.0, "{frames} frames: gradient after them");
    }
}

#[test]
fn incremental_decoding_matches_the_full_decoder_on_a_random_model() {
    let cfg = config();
    let model = Whisper::new(cfg.clone(), &random_weights(&cfg, 7)).unwrap();
    let dev = Device::Cpu;
    let mel = Tensor::randn(0f32, 1.0, (1, 128, 3000), &dev).unwrap();
    let features = model.encode(&mel).unwrap();
    let tokens = [1u32, 5, 8, 2, 9, 11];
    let full = model
        .decoder_logits(
            &features,
            &Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), &dev).unwrap(),
        )
        .unwrap()
        .squeeze(0)
        .unwrap();
    let cross = model.cross_kv(&features).unwrap();
    let mut cache = model.new_cache();
    let prompt = Tensor::from_vec(tokens[..2].to_vec(), (1, 2), &dev).unwrap();
    let mut steps = vec![model.decode_step(&prompt, &mut cache, &cross).unwrap()];
    for &t in &tokens[2..] {
        steps.push(
            model
                .decode_step(
                    &Tensor::from_vec(vec![t], (1, 1), &dev).unwrap(),
                    &mut cache,
                    &cross,
                )
                .unwrap(),
        );
    }
    for (i, step) in steps.iter().enumerate() {
        let expected = full.get(i + 1).unwrap();
        let diff = (step.squeeze(0).unwrap() - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "position {}: max difference {diff}", i + 1);
    }
}

#[test]
fn mismatched_weights_are_rejected() {
    let cfg = config();
    let mut w = random_weights(&cfg, 1);
    w.tensors.remove("decoder.layers.1.fc2.bias");
    let err = Whisper::new(cfg.clone(), &w).unwrap_err();
    assert!(
        err.to_string().contains("decoder.layers.1.fc2.bias"),
        "{err}"
    );
    let mut bad = cfg;
    bad.num_mel_bins = 80;
    let err = Whisper::new(bad, &random_weights(&config(), 1)).unwrap_err();
    assert!(err.to_string().contains("conv1"), "{err}");
}
