//! The activation-anomaly detector: how far the recogniser's internal layers move from where
//! clean speech puts them ("abnormal patterns in … its internal layer activations").
//!
//! Fitting: every 20-ms frame of clean speech that the audio covers (padding excluded) is run
//! through Whisper's encoder, and per encoder layer the residual stream's frame vectors get a
//! Gaussian — mean μ and covariance Σ, shrunk towards a scaled identity by [`SHRINKAGE`]
//! (`(1 − α)·Σ + α·tr(Σ)/D·I`, which keeps it invertible with frames that are far from
//! independent) — stored as μ and the whitening matrix `W = L⁻¹` (`Σ = L·Lᵀ`).
//!
//! Scoring: per layer, the mean over the input's frames of the squared Mahalanobis distance
//! `‖W(v − μ)‖²` divided by the dimension D. Under the Gaussian each frame's squared distance
//! is χ²(D) with mean D, so this is 1 for frames like the fitted ones; it is divided by its own
//! mean over the clean fitting clips (which differs from 1 where activations are not Gaussian)
//! and the score is the largest over the layers. A threshold comes from `advox detect
//! --calibrate` on clean speech of the deployment, as for every detector.

use crate::mel::{FrontEnd, N_FRAMES};
use crate::model::LoadedModel;
use crate::transcribe::{window_mel, windows};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Shrinkage of each layer's covariance towards a scaled identity.
pub const SHRINKAGE: f64 = 0.1;

/// Samples per encoder frame (20 ms at 16 kHz).
const FRAME_SAMPLES: usize = 320;

/// The fitted Gaussian of one encoder layer.
#[derive(Debug, Clone, PartialEq)]
struct LayerGaussian {
    /// μ (D).
    mean: Vec<f32>,
    /// `W = L⁻¹`, row-major D×D.
    whiten: Vec<f32>,
    /// Mean over the fitting clips of their mean `‖W(v − μ)‖² / D`.
    reference: f64,
}

/// Clean speech's encoder activations, layer by layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationModel {
    layers: Vec<LayerGaussian>,
    d_model: usize,
    /// The file it was loaded from.
    pub path: Option<PathBuf>,
}

/// The encoder frames that carry a window of `len` samples (at least one).
fn covered_frames(len: usize) -> usize {
    len.div_ceil(FRAME_SAMPLES).clamp(1, N_FRAMES / 2)
}

/// Per encoder layer, the residual stream's frame vectors (frames × D, row-major) of every
/// frame the audio covers, over all 30-s windows of `samples`.
pub fn layer_frames(model: &LoadedModel, samples: &[f32]) -> Result<Vec<Vec<f32>>> {
    let mut per_layer: Vec<Vec<f32>> = Vec::new();
    for (_, window) in windows(samples) {
        let mel = window_mel(model, window, FrontEnd::Openai)?;
        let (_, taps) = model.whisper.encode_layers(&mel)?;
        per_layer.resize(taps.len(), Vec::new());
        let n = covered_frames(window.len());
        for (l, t) in taps.iter().enumerate() {
            let v = t
                .narrow(1, 0, n)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            per_layer[l].extend(v);
        }
    }
    Ok(per_layer)
}

/// Lower Cholesky factor of a symmetric positive definite `a` (n×n, row-major, f64).
fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return Err(Error::InvalidArgument(format!(
                        "the activations' covariance is not positive definite (pivot {i}: {d}): \
                         fit on more, and more varied, clean speech"
                    )));
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular `l` (n×n, row-major): itself lower triangular.
fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0f64; n * n];
    for c in 0..n {
        // Solve L x = e_c by forward substitution; x is column c of L⁻¹.
        for i in c..n {
            let rhs = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (c..i).map(|k| l[i * n + k] * inv[k * n + c]).sum();
            inv[i * n + c] = (rhs - s) / l[i * n + i];
        }
    }
    inv
}

/// Mean over the rows of `frames` (rows × d) of `‖W(v − μ)‖² / d`.
fn mean_distance(frames: &[f32], d: usize, mean: &[f32], whiten: &[f32]) -> Result<f64> {
    let rows = frames.len() / d;
    if rows == 0 {
        return Err(Error::InvalidArgument(
            "activation scoring on an empty signal".into(),
        ));
    }
    let dev = Device::Cpu;
    let v = Tensor::from_slice(frames, (rows, d), &dev)?;
    let mu = Tensor::from_slice(mean, (1, d), &dev)?;
    let w = Tensor::from_slice(whiten, (d, d), &dev)?;
    let y = v.broadcast_sub(&mu)?.matmul(&w.t()?)?;
    let total = y
        .sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(total / (rows * d) as f64)
}

impl ActivationModel {
    /// Fit the layers' Gaussians on clean 16-kHz recordings.
    pub fn fit(model: &LoadedModel, clean: &[Vec<f32>]) -> Result<Self> {
        let d = model.whisper.config().d_model;
        let per_clip: Vec<Vec<Vec<f32>>> = clean
            .iter()
            .map(|x| layer_frames(model, x))
            .collect::<Result<_>>()?;
        let n_layers = per_clip.first().map_or(0, Vec::len);
        let rows: usize = per_clip.iter().map(|c| c[0].len() / d).sum();
        // One frame per dimension at least: the shrinkage keeps Σ invertible below that, but
        // the fit would be mostly the identity.
        if rows < d {
            return Err(Error::InvalidArgument(format!(
                "fitting the activation detector needs at least {d} frames of clean speech \
                 ({:.1} s; one per 20 ms), got {rows}: give more recordings",
                (d * FRAME_SAMPLES) as f64 / crate::audio::SAMPLE_RATE as f64
            )));
        }
        let dev = Device::Cpu;
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let all: Vec<f32> = per_clip.iter().flat_map(|c| c[l].iter().copied()).collect();
            let v = Tensor::from_vec(all, (rows, d), &dev)?.to_dtype(DType::F64)?;
            let mu = v.mean_keepdim(0)?;
            let c = v.broadcast_sub(&mu)?;
            let cov = (c.t()?.matmul(&c)? / (rows - 1) as f64)?;
            let mut cov = cov.flatten_all()?.to_vec1::<f64>()?;
            let trace: f64 = (0..d).map(|i| cov[i * d + i]).sum();
            for (i, x) in cov.iter_mut().enumerate() {
                *x *= 1.0 - SHRINKAGE;
                if i % (d + 1) == 0 {
                    *x += SHRINKAGE * trace / d as f64;
                }
            }
            let whiten = lower_inverse(&cholesky(&cov, d)?, d);
            let mean: Vec<f32> = mu.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let whiten: Vec<f32> = whiten.iter().map(|x| *x as f32).collect();
            let mut sum = 0.0;
            for clip in &per_clip {
                sum += mean_distance(&clip[l], d, &mean, &whiten)?;
            }
            layers.push(LayerGaussian {
                mean,
                whiten,
                reference: sum / per_clip.len() as f64,
            });
        }
        Ok(ActivationModel {
            layers,
            d_model: d,
            path: None,
        })
    }

    /// Per layer, the input's mean squared Mahalanobis distance over D, relative to the
    /// fitting clips' (1: as clean speech).
    pub fn layer_scores(&self, model: &LoadedModel, samples: &[f32]) -> Result<Vec<f64>> {
        let cfg = model.whisper.config();
        if cfg.d_model != self.d_model || cfg.encoder_layers != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "the activation detector{} was fitted on a model with {} encoder layers of \
                 width {}; this model has {} of width {}: fit it on this model",
                self.path
                    .as_ref()
                    .map(|p| format!(" {}", p.display()))
                    .unwrap_or_default(),
                self.layers.len(),
                self.d_model,
                cfg.encoder_layers,
                cfg.d_model
            )));
        }
        let frames = layer_frames(model, samples)?;
        self.layers
            .iter()
            .zip(&frames)
            .map(|(g, f)| Ok(mean_distance(f, self.d_model, &g.mean, &g.whiten)? / g.reference))
            .collect()
    }

    /// The score: the largest of [`ActivationModel::layer_scores`].
    pub fn score(&self, model: &LoadedModel, samples: &[f32]) -> Result<f64> {
        Ok(self
            .layer_scores(model, samples)?
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max))
    }

    /// Save as safetensors (`mean.L`, `whiten.L`, `reference`), through a temporary file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dev = Device::Cpu;
        let d = self.d_model;
        let mut tensors = HashMap::new();
        for (l, g) in self.layers.iter().enumerate() {
            tensors.insert(format!("mean.{l}"), Tensor::from_slice(&g.mean, d, &dev)?);
            tensors.insert(
                format!("whiten.{l}"),
                Tensor::from_slice(&g.whiten, (d, d), &dev)?,
            );
        }
        let reference: Vec<f64> = self.layers.iter().map(|g| g.reference).collect();
        tensors.insert(
            "reference".into(),
            Tensor::from_slice(&reference, reference.len(), &dev)?,
        );
        crate::atomic_file::write_atomic(path, |tmp| {
            Ok(candle_core::safetensors::save(&tensors, tmp)?)
        })
    }

    /// Load a file [`ActivationModel::save`] wrote.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::bad_file(path, why);
        let t = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("not an advox activation model: {e}")))?;
        let reference = t
            .get("reference")
            .ok_or_else(|| bad("not an advox activation model: no `reference`".into()))?
            .to_vec1::<f64>()?;
        let mut layers = Vec::with_capacity(reference.len());
        let mut d_model = 0;
        for (l, r) in reference.iter().enumerate() {
            let get = |name: String| {
                t.get(&name)
                    .ok_or_else(|| bad(format!("not an advox activation model: no `{name}`")))
            };
            let mean = get(format!("mean.{l}"))?.to_vec1::<f32>()?;
            let whiten = get(format!("whiten.{l}"))?;
            d_model = mean.len();
            if whiten.dims() != [d_model, d_model] || !(r.is_finite() && *r > 0.0) {
                return Err(bad(format!("layer {l} is malformed")));
            }
            layers.push(LayerGaussian {
                mean,
                whiten: whiten.flatten_all()?.to_vec1::<f32>()?,
                reference: *r,
            });
        }
        if layers.is_empty() {
            return Err(bad("no layers".into()));
        }
        Ok(ActivationModel {
            layers,
            d_model,
            path: Some(path.to_path_buf()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_and_triangular_inverse_whiten_a_covariance() {
        // A = B·Bᵀ + I for a fixed B.
        let n = 5;
        let b: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[i * n + k] * b[j * n + k]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let l = cholesky(&a, n).unwrap();
        let w = lower_inverse(&l, n);
        // W·A·Wᵀ = I.
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n)
                    .flat_map(|p| (0..n).map(move |q| (p, q)))
                    .map(|(p, q)| w[i * n + p] * a[p * n + q] * w[j * n + q])
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-9, "({i},{j}) = {v}");
            }
        }
        // Not positive definite: a clear error.
        let mut bad = a.clone();
        bad[0] = -1.0;
        assert!(cholesky(&bad, n).is_err());
    }

    #[test]
    fn whitened_distance_is_about_one_per_dimension_on_the_fitted_gaussian() {
        // Frames from N(μ, diag(σ²)); with W = diag(1/σ) the mean distance over D is ≈ 1, and
        // frames shifted by 3σ in every dimension score ≈ 10.
        let d = 4;
        let sigma = [0.5f32, 1.0, 2.0, 4.0];
        let mean = [1.0f32, -1.0, 0.0, 3.0];
        let mut whiten = vec![0.0f32; d * d];
        for i in 0..d {
            whiten[i * d + i] = 1.0 / sigma[i];
        }
        let mut rng = crate::rng::Rng::new(4);
        let frames: Vec<f32> = (0..4000 * d)
            .map(|i| mean[i % d] + sigma[i % d] * rng.normal())
            .collect();
        let m = mean_distance(&frames, d, &mean, &whiten).unwrap();
        assert!((m - 1.0).abs() < 0.05, "{m}");
        let shifted: Vec<f32> = frames
            .iter()
            .enumerate()
            .map(|(i, v)| v + 3.0 * sigma[i % d])
            .collect();
        let s = mean_distance(&shifted, d, &mean, &whiten).unwrap();
        assert!((s - 10.0).abs() < 0.3, "{s}");
    }
}
