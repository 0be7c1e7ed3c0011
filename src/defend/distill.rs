//! Defensive distillation (Papernot et al. 2016): a teacher trained with its softmax at
//! temperature T, a student trained at the same temperature on the teacher's softened outputs,
//! the student deployed at temperature 1. Its logits are then about T times the teacher's: the
//! softmax saturates, and the cross-entropy gradients an attacker follows vanish (in f32 they
//! underflow to zero) wherever the model is confident — gradient masking, which an attack on
//! the logits themselves (Carlini–Wagner's margin loss) walks through (Carlini & Wagner 2016).
//!
//! At CPU scale neither network is trained from scratch. The teacher trained at temperature T
//! is the base model with its logits multiplied by T ([`fold_temperature`]; its softmax at T is
//! the base model's own softmax, which is what training at T converges to for a model that
//! already fits the data), and the student starts from the same point: Adam's steps of a
//! learning rate per weight cannot grow a pre-trained model's logits T-fold in any affordable
//! number of steps. Training then distils what the student does not yet match: each training
//! clip is shown to the student clean and with white noise (`noise_snr_db`), against the
//! teacher's softened outputs on the clean clip, so the student also learns to hear the noisy
//! input as the teacher hears the clean one. Loss: `T² · KL(p_teacher ‖ softmax(z/T))`
//! (Hinton et al.'s T² keeps the gradient's scale), mean over the transcript's tokens.

use super::adv_train::{TrainableWhisper, TrainingExample};
use crate::autodiff::log_softmax_last;
use crate::model::{LoadedModel, Weights};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::Optimizer;

/// Settings of the distillation.
#[derive(Debug, Clone)]
pub struct DistillConfig {
    /// Temperature T of training (the student is deployed at 1).
    pub temperature: f64,
    /// AdamW steps (one example each).
    pub steps: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// SNR (dB) of the white noise on the student's noisy copy of each clip.
    pub noise_snr_db: f32,
    /// Seed of the example order and the noise.
    pub seed: u64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            temperature: 20.0,
            steps: 40,
            learning_rate: 2e-5,
            noise_snr_db: 30.0,
            seed: 0,
        }
    }
}

impl DistillConfig {
    /// Refuse settings that mean nothing.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the temperature must be at least 1, got {}",
                self.temperature
            )));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::InvalidArgument(
                "the learning rate must be positive".into(),
            ));
        }
        if !self.noise_snr_db.is_finite() {
            return Err(Error::InvalidArgument(
                "the noise SNR must be finite".into(),
            ));
        }
        Ok(())
    }
}

/// Multiply the model's logits by `t`: the decoder's final layer norm (weight and bias) feeds
/// the tied output projection linearly, so scaling both scales every logit exactly.
pub fn fold_temperature(weights: &mut Weights, t: f64) -> Result<()> {
    for name in ["decoder.layer_norm.weight", "decoder.layer_norm.bias"] {
        let scaled = (weights.get(name)? * t)?;
        weights.tensors.insert(name.to_string(), scaled);
    }
    Ok(())
}

/// One distillation example: what the student hears (log-mel and features of the clean or
/// noisy clip, the teacher's transcript as decoder input) and the teacher's softened outputs at
/// the transcript's positions `(targets, vocab)`.
pub struct DistillExample {
    /// The student's input.
    pub heard: TrainingExample,
    /// The teacher's probabilities at temperature T (the base model's softmax).
    pub soft: Tensor,
}

/// White noise at `snr_db` under `x` (seeded).
pub fn with_noise(x: &[f32], snr_db: f32, rng: &mut Rng) -> Vec<f32> {
    let rms = (crate::metrics::l2(x) / (x.len().max(1) as f64).sqrt()) as f32;
    let sigma = rms * 10f32.powf(-snr_db / 20.0);
    x.iter().map(|v| v + sigma * rng.normal()).collect()
}

/// The examples of one clip `x` whose teacher transcript is `tokens`: the clip clean and with
/// noise, each against the teacher's softened outputs on the clean clip (`model`'s own logits,
/// from the features the example already holds).
pub fn examples_of_clip(
    model: &LoadedModel,
    x: &[f32],
    tokens: &[u32],
    cfg: &DistillConfig,
    rng: &mut Rng,
) -> Result<Vec<DistillExample>> {
    let clean = TrainingExample::new(model, x, tokens)?;
    let device = model.whisper.device();
    let input = Tensor::new(clean.input.as_slice(), device)?.unsqueeze(0)?;
    let logits = model
        .whisper
        .decoder_logits(&clean.features.to_device(device)?, &input)?
        .squeeze(0)?
        .to_device(&candle_core::Device::Cpu)?
        .to_dtype(DType::F32)?;
    let (l, _) = logits.dims2()?;
    let t = clean.targets.len();
    if t == 0 || t > l {
        return Err(Error::InvalidArgument("no tokens to distil".into()));
    }
    let soft = log_softmax_last(&logits.narrow(0, l - t, t)?)?
        .exp()?
        .to_dtype(DType::F32)?
        .detach();
    let noisy = TrainingExample::new(model, &with_noise(x, cfg.noise_snr_db, rng), tokens)?;
    Ok(vec![
        DistillExample {
            heard: clean,
            soft: soft.clone(),
        },
        DistillExample { heard: noisy, soft },
    ])
}

impl TrainableWhisper {
    /// The distillation loss of one example at temperature `t`: `t² ·` the Kullback–Leibler
    /// divergence of the student's softmax at `t` from the teacher's probabilities, mean over
    /// tokens (0 where the student matches).
    pub fn distillation_loss(&self, ex: &DistillExample, t: f64) -> Result<Tensor> {
        let logits = self.logits_of(&ex.heard)?;
        let (l, _) = logits.dims2()?;
        let (n, _) = ex.soft.dims2()?;
        if n == 0 || n > l {
            return Err(Error::InvalidArgument("no tokens to distil".into()));
        }
        let logq = log_softmax_last(&(logits.narrow(0, l - n, n)? / t)?)?;
        // KL(p ‖ q) = Σ p·(log p − log q): the cross-entropy less the teacher's entropy, so 0
        // where the student matches (terms with p = 0 contribute nothing).
        let logp = ex.soft.clamp(1e-30, 1.0)?.log()?;
        let kl = (&ex.soft * (logp - logq)?)?.sum_all()?;
        Ok((kl * (t * t / n as f64))?)
    }

    /// Train on distillation examples (one per AdamW step, in seeded random order).
    /// `on_step` sees (step, loss).
    pub fn distill(
        &mut self,
        examples: &[DistillExample],
        cfg: &DistillConfig,
        on_step: &mut dyn FnMut(usize, f32),
    ) -> Result<()> {
        cfg.validate()?;
        if examples.is_empty() || cfg.steps == 0 {
            return Err(Error::InvalidArgument(
                "distillation needs examples and steps".into(),
            ));
        }
        let mut opt = crate::autodiff::adam(self.trainable_vars(), cfg.learning_rate)?;
        let mut rng = Rng::new(cfg.seed);
        for step in 1..=cfg.steps {
            let ex = &examples[rng.below(examples.len())];
            let loss = self.distillation_loss(ex, cfg.temperature)?;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            on_step(step, loss.detach().to_scalar::<f32>()?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn folding_the_temperature_scales_the_layer_norm_that_feeds_the_logits() {
        let mut w = Weights {
            tensors: Default::default(),
        };
        for name in ["decoder.layer_norm.weight", "decoder.layer_norm.bias"] {
            w.tensors.insert(
                name.into(),
                Tensor::new(&[1.0f32, -0.5], &Device::Cpu).unwrap(),
            );
        }
        fold_temperature(&mut w, 20.0).unwrap();
        let v = w
            .get("decoder.layer_norm.bias")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(v, vec![20.0, -10.0]);
        assert!(fold_temperature(
            &mut Weights {
                tensors: Default::default()
            },
            2.0
        )
        .is_err());
    }

    #[test]
    fn noise_sits_at_the_requested_snr_and_bad_settings_are_refused() {
        let x: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let y = with_noise(&x, 20.0, &mut Rng::new(1));
        let d: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (crate::metrics::l2(&x) / crate::metrics::l2(&d)).log10();
        assert!((snr - 20.0).abs() < 0.3, "{snr}");
        for bad in [
            DistillConfig {
                temperature: 0.5,
                ..Default::default()
            },
            DistillConfig {
                learning_rate: 0.0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
