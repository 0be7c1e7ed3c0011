//! Input-reconstruction detector: a small convolutional autoencoder on Whisper log-mel frames,
//! trained with candle on clean speech; the score is the mean squared reconstruction error.
//! Speech it was trained on is reconstructed well; the structure an adversarial perturbation
//! adds (notably in pauses, where the log scale magnifies it) is not.
//!
//! Architecture (over time, kernel 5, "same" padding): 80 → 64 → 16 (bottleneck) → 64 → 80
//! mel bands, ReLU between layers. Weights are saved as safetensors.
//!
//! The convolutions are shifted copies and one matrix product ([`crate::autodiff`]): candle
//! 0.11's `conv1d` gives a wrong kernel gradient (checked against finite differences in this
//! module's tests).

use crate::autodiff::{conv1d_columns, ConvShape};
use crate::mel::{live_frames, log_mel, N_FRAMES};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use std::path::{Path, PathBuf};

/// Mel bands the autoencoder reads (Whisper's tiny/base front end).
pub const N_MELS: usize = 80;
const HIDDEN: usize = 64;
const BOTTLENECK: usize = 16;
const KERNEL: usize = 5;

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Adam steps.
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// Frames per window (10 ms each).
    pub window: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Seed of the initialisation and the windows.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 300,
            batch: 16,
            window: 64,
            learning_rate: 2e-3,
            seed: 0,
        }
    }
}

/// A 1-D convolution over time with "same" zero padding, as shifted copies of the input
/// stacked on the channel axis times one `(out, kernel·in)` matrix.
struct SameConv {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
}

impl SameConv {
    fn new(vb: &VarBuilder, inputs: usize, outputs: usize, kernel: usize) -> Result<Self> {
        Ok(SameConv {
            weight: vb.get((outputs, kernel * inputs), "weight")?,
            bias: vb.get((outputs, 1), "bias")?,
            kernel,
        })
    }

    /// `(batch, inputs, frames)` → `(batch, outputs, frames)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv1d_columns(x, &self.weight, &self.bias, ConvShape::same(self.kernel))
    }
}

/// The trained autoencoder.
pub struct MelAutoencoder {
    layers: [SameConv; 4],
    varmap: VarMap,
    device: Device,
    /// Where its weights were read from, if anywhere.
    pub path: Option<PathBuf>,
}

impl std::fmt::Debug for MelAutoencoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelAutoencoder")
            .field("path", &self.path)
            .finish()
    }
}

impl PartialEq for MelAutoencoder {
    /// The same weights file (or the same object).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || (self.path.is_some() && self.path == other.path)
    }
}

fn build(varmap: &VarMap, device: &Device) -> Result<[SameConv; 4]> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    Ok([
        SameConv::new(&vb.pp("enc1"), N_MELS, HIDDEN, KERNEL)?,
        SameConv::new(&vb.pp("enc2"), HIDDEN, BOTTLENECK, KERNEL)?,
        SameConv::new(&vb.pp("dec1"), BOTTLENECK, HIDDEN, KERNEL)?,
        SameConv::new(&vb.pp("dec2"), HIDDEN, N_MELS, KERNEL)?,
    ])
}

/// Live log-mel frames of 16-kHz samples: `N_MELS × frames`, row-major (at least `KERNEL`).
pub fn mel_frames(x: &[f32]) -> Result<(Vec<f32>, usize)> {
    if x.is_empty() || x.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(
            "the autoencoder needs a non-empty signal of finite samples".into(),
        ));
    }
    let mel = log_mel(x, N_MELS);
    let t = live_frames(x.len()).clamp(KERNEL, N_FRAMES);
    let mut out = Vec::with_capacity(N_MELS * t);
    for m in 0..N_MELS {
        out.extend_from_slice(&mel[m * N_FRAMES..m * N_FRAMES + t]);
    }
    Ok((out, t))
}

/// Re-draw every weight from `seed` (uniform ±1/√fan-in, as PyTorch's default), in name order,
/// so training is reproducible.
fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::Internal("autoencoder weights are poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = Rng::new(seed ^ 0xAE);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        // Weights are (out, kernel·in); biases (out, 1) take a common bound.
        let fan_in = if dims[1] > 1 {
            dims[1]
        } else {
            KERNEL * HIDDEN
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.symmetric(bound)).collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

impl MelAutoencoder {
    fn new(device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let layers = build(&varmap, device)?;
        Ok(MelAutoencoder {
            layers,
            varmap,
            device: device.clone(),
            path: None,
        })
    }

    /// The reconstruction of `(batch, N_MELS, frames)` log-mel.
    pub fn reconstruct(&self, mel: &Tensor) -> Result<Tensor> {
        let mut h = mel.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if i < self.layers.len() - 1 {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Train on clean speech (16-kHz signals): random windows of their live log-mel frames,
    /// mean squared reconstruction error, AdamW. `on_step` sees (step, loss).
    pub fn train(
        clean: &[Vec<f32>],
        cfg: &TrainConfig,
        device: &Device,
        on_step: &mut dyn FnMut(usize, f32),
    ) -> Result<Self> {
        if clean.is_empty() || cfg.steps == 0 || cfg.batch == 0 || cfg.window < KERNEL {
            return Err(Error::InvalidArgument(format!(
                "autoencoder training needs clean speech, steps, a batch and windows of at least \
                 {KERNEL} frames"
            )));
        }
        let mels: Vec<(Vec<f32>, usize)> =
            clean.iter().map(|x| mel_frames(x)).collect::<Result<_>>()?;
        let ae = Self::new(device)?;
        seeded_init(&ae.varmap, cfg.seed)?;
        let mut opt = crate::autodiff::adam(ae.varmap.all_vars(), cfg.learning_rate)?;
        let mut rng = Rng::new(cfg.seed);
        let w = cfg.window;
        for step in 1..=cfg.steps {
            let mut batch = vec![0.0f32; cfg.batch * N_MELS * w];
            for b in 0..cfg.batch {
                let (mel, t) = &mels[rng.below(mels.len())];
                // Windows longer than the file take it whole and repeat its last frame.
                let start = if *t > w { rng.below(*t - w + 1) } else { 0 };
                for m in 0..N_MELS {
                    for i in 0..w {
                        let src = (start + i).min(t - 1);
                        batch[(b * N_MELS + m) * w + i] = mel[m * t + src];
                    }
                }
            }
            let input = Tensor::from_vec(batch, (cfg.batch, N_MELS, w), device)?;
            let loss = (ae.reconstruct(&input)? - &input)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
            on_step(step, loss.to_scalar::<f32>()?);
        }
        Ok(ae)
    }

    /// Mean squared reconstruction error of a signal's live log-mel frames.
    pub fn score(&self, x: &[f32]) -> Result<f64> {
        let (mel, t) = mel_frames(x)?;
        let input = Tensor::from_vec(mel, (1, N_MELS, t), &self.device)?;
        let err = (self.reconstruct(&input)? - &input)?
            .sqr()?
            .mean_all()?
            .to_scalar::<f32>()?;
        Ok(err as f64)
    }

    /// Save the weights (safetensors), through a temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic_file::write_atomic(path, |tmp| Ok(self.varmap.save(tmp)?))
    }

    /// Load weights saved by [`MelAutoencoder::save`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut ae = Self::new(device)?;
        ae.varmap
            .load(path)
            .map_err(|e| Error::bad_file(path, format!("not advox autoencoder weights: {e}")))?;
        ae.path = Some(path.to_path_buf());
        Ok(ae)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / 16_000.0).sin())
            .collect()
    }

    #[test]
    fn training_lowers_the_error_and_weights_round_trip() {
        let clean = vec![tone(300.0, 16_000), tone(500.0, 16_000)];
        let cfg = TrainConfig {
            steps: 200,
            batch: 4,
            window: 32,
            ..Default::default()
        };
        let untrained = MelAutoencoder::new(&Device::Cpu).unwrap();
        seeded_init(&untrained.varmap, cfg.seed).unwrap();
        let before = untrained.score(&clean[0]).unwrap();
        let mut losses = Vec::new();
        let ae =
            MelAutoencoder::train(&clean, &cfg, &Device::Cpu, &mut |_, l| losses.push(l)).unwrap();
        assert_eq!(losses.len(), 200);
        let after = ae.score(&clean[0]).unwrap();
        assert!(after < 0.5 * before, "{before} → {after}");
        let dir = std::env::temp_dir().join(format!("advox-ae-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ae.safetensors");
        ae.save(&path).unwrap();
        let loaded = MelAutoencoder::load(&path, &Device::Cpu).unwrap();
        assert_eq!(loaded.score(&clean[0]).unwrap(), after);
        std::fs::write(dir.join("bad.safetensors"), b"not weights").unwrap();
        let err = MelAutoencoder::load(&dir.join("bad.safetensors"), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("bad.safetensors"));
        assert!(ae.score(&[]).is_err());
    }
}

#[cfg(test)]
mod gradient_tests {
    use super::*;

    /// The convolution's kernel gradient against central finite differences (candle's own
    /// `conv1d` fails this).
    #[test]
    fn same_conv_kernel_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7), &dev).unwrap();
        let w = candle_core::Var::randn(0f32, 1.0, (4, 15), &dev).unwrap();
        let b = Tensor::zeros((4, 1), DType::F32, &dev).unwrap();
        let f = |w: &Tensor| -> Tensor {
            let conv = SameConv {
                weight: w.clone(),
                bias: b.clone(),
                kernel: 5,
            };
            conv.forward(&x).unwrap().sqr().unwrap().sum_all().unwrap()
        };
        let grads = f(w.as_tensor()).backward().unwrap();
        let g = grads
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let w0 = w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in [0usize, 7, 20, 33, 59] {
            let at = |d: f32| {
                let mut v = w0.clone();
                v[i] += d;
                f(&Tensor::from_vec(v, (4, 15), &dev).unwrap())
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let fd = (at(1e-2) - at(-1e-2)) / 2e-2;
            assert!(
                (fd - g[i]).abs() < 1e-2 * (1.0 + fd.abs()),
                "{i}: {} vs {fd}",
                g[i]
            );
        }
    }
}
