//! The differentiable front-end + model against PyTorch's reference loss and gradient
//! (`../shared/reference/torch_pgd_step`), and a finite-difference check.

use crate::common;

use advox::audio::read_audio_16k_mono;
use advox::gradient::{targeted_loss_and_grad, TargetSequence};
use advox::mel::{log_mel, MelFrontEnd, N_FRAMES};
use advox::npy::read_npy_f32;
use candle_core::{Device, Tensor};

const REF_INPUT: [u32; 7] = [50257, 50362, 6756, 572, 262, 7588, 13];
const REF_TARGETS: [u32; 6] = [6756, 572, 262, 7588, 13, 50256];

fn reference_wave() -> Vec<f32> {
    read_npy_f32(&common::shared().join("reference/torch_pgd_step/wave.npy"))
        .expect("wave.npy")
        .data
}

#[test]
fn wav_reader_matches_reference_waveform() {
    let wave =
        read_audio_16k_mono(&common::shared().join("reference/torch_pgd_step/input.wav")).unwrap();
    let reference = reference_wave();
    assert_eq!(wave, reference);
}

#[test]
fn plain_and_differentiable_log_mel_match_openai() {
    let reference =
        read_npy_f32(&common::shared().join("reference/torch_pgd_step/mel0.npy")).unwrap();
    assert_eq!(reference.shape, vec![80, N_FRAMES]);
    let wave = reference_wave();
    let plain = log_mel(&wave, 80);
    let max_err = plain
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_err < 1e-4, "plain log-mel max error {max_err}");
    let front = MelFrontEnd::new(80, &Device::Cpu).unwrap();
    let t = Tensor::from_vec(wave.clone(), wave.len(), &Device::Cpu).unwrap();
    let diff = front
        .log_mel(&t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let max_err = diff
        .iter()
        .zip(&reference.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_err < 1e-4, "differentiable log-mel max error {max_err}");
}

#[test]
fn tokenizer_reproduces_reference_target_tokens() {
    let m = common::model();
    let target = TargetSequence::new(&m.tokenizer, "Turn off the lights.", None).unwrap();
    assert_eq!(target.input, REF_INPUT);
    assert_eq!(target.targets, REF_TARGETS);
}

#[test]
fn loss_and_gradient_match_pytorch() {
    let m = common::model();
    let wave = reference_wave();
    let front = MelFrontEnd::new(80, &Device::Cpu).unwrap();
    let t = Tensor::from_vec(wave.clone(), wave.len(), &Device::Cpu).unwrap();
    let target = TargetSequence {
        input: REF_INPUT.to_vec(),
        targets: REF_TARGETS.to_vec(),
    };
    let (loss, grad) = targeted_loss_and_grad(&m.whisper, &front, &t, &target).unwrap();
    // Measured: 1.6e-5 from PyTorch's loss, 1.4e-4 relative L2 from its gradient (the silent
    // frames' share of the log-mel floor's gradient is dropped; see the README): asserted at a
    // small multiple of that.
    assert!((loss - 3.6001008).abs() < 1e-4, "loss {loss}");
    let grad = grad.to_vec1::<f32>().unwrap();
    let reference =
        read_npy_f32(&common::shared().join("reference/torch_pgd_step/grad0.npy")).unwrap();
    let err = common::rel_l2(&grad, &reference.data);
    eprintln!("loss {loss}, gradient relative L2 error {err}");
    assert!(err < 5e-4, "gradient relative L2 error {err}");
}

#[test]
fn gradient_agrees_with_finite_differences() {
    let m = common::model();
    let wave = reference_wave();
    let front = MelFrontEnd::new(80, &Device::Cpu).unwrap();
    let target = TargetSequence {
        input: REF_INPUT.to_vec(),
        targets: REF_TARGETS.to_vec(),
    };
    let t = Tensor::from_vec(wave.clone(), wave.len(), &Device::Cpu).unwrap();
    let (_, grad) = targeted_loss_and_grad(&m.whisper, &front, &t, &target).unwrap();
    let grad = grad.to_vec1::<f32>().unwrap();
    // Directional derivative along the normalised gradient: (L(x + h d) - L(x - h d)) / 2h = |g|.
    let norm = grad.iter().map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
    let h = 1e-4;
    let shifted = |sign: f64| {
        let w: Vec<f32> = wave
            .iter()
            .zip(&grad)
            .map(|(x, g)| x + (sign * h * *g as f64 / norm) as f32)
            .collect();
        let t = Tensor::from_vec(w.clone(), w.len(), &Device::Cpu).unwrap();
        targeted_loss_and_grad(&m.whisper, &front, &t, &target)
            .unwrap()
            .0 as f64
    };
    let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
    let rel = (fd - norm).abs() / norm;
    eprintln!("finite difference {fd}, analytic {norm}, relative difference {rel}");
    assert!(rel < 0.05, "finite difference {fd} vs analytic {norm}");
}

/// An independent forward pass: Hugging Face's Whisper as candle-transformers implements it
/// (its own layers, attention, convolution and sinusoids; the same weights) must give our
/// differentiable model's teacher-forced logits on real speech (three held-out corpus clips):
/// the same best token at every position, and logits within 0.15. Not closer: its MLPs and
/// convolutions use candle's tanh-approximate GELU (`Tensor::gelu`, `whisper/model.rs` lines
/// 196, 285, 289 of candle-transformers 0.11.1) where OpenAI's Whisper, and ours, use the exact
/// erf GELU; measured 2026-12-07: max |Δ logit| 0.059–0.096 with logits up to 36.
#[test]
fn candle_transformers_whisper_gives_our_logits_on_real_speech() {
    use candle_transformers::models::whisper::{model::Whisper as HfWhisper, Config};
    let model = common::model();
    let dir = common::model_dir();
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::Cpu;
    // SAFETY: the cached model file is not modified while the test maps it.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            candle_core::DType::F32,
            &device,
        )
    }
    .unwrap();
    let mut reference = HfWhisper::load(&vb, config).unwrap();
    let mut worst = 0.0f32;
    for clip in common::corpus_test(3) {
        let t = advox::transcribe::transcribe(
            model,
            &clip.samples,
            &advox::model::DecodeOptions::default(),
        )
        .unwrap();
        let seq = TargetSequence::from_tokens(&model.tokenizer, &t.tokens, None);
        let mel = Tensor::from_vec(log_mel(&clip.samples, 80), (1, 80, N_FRAMES), &device).unwrap();
        let tokens = Tensor::new(seq.input.as_slice(), &device)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let ours = model
            .whisper
            .decoder_logits(&model.whisper.encode(&mel).unwrap(), &tokens)
            .unwrap();
        let xa = reference.encoder.forward(&mel, true).unwrap();
        let hidden = reference.decoder.forward(&tokens, &xa, true).unwrap();
        let theirs = reference.decoder.final_linear(&hidden).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max_err = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = theirs.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let vocab = model.whisper.config().vocab_size;
        let best = |l: &[f32]| -> Vec<usize> {
            l.chunks(vocab)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                        )
                        .0
                })
                .collect()
        };
        assert_eq!(
            best(&ours),
            best(&theirs),
            "{}: best tokens differ",
            clip.name
        );
        eprintln!(
            "{}: {} positions, max |Δ logit| {max_err:.2e} (largest logit {scale:.1})",
            clip.name,
            seq.input.len()
        );
        worst = worst.max(max_err);
    }
    assert!(worst < 0.15, "max logit difference {worst}");
}
