//! What an attack's gradient passes through before the model: a transformation the attacker
//! knows, random (expectation over transformation: playback, a smoothing defence's noise) or
//! fixed (a purifying defence). The gradient attack ([`super::pgd::run_attack_through`]) asks
//! the channel for the loss and gradient at each step, and for its verdict on each point it
//! decodes.

use super::eot;
use crate::mel::MelFrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::Objective;
use crate::rng::Rng;
use crate::transcribe::transcribe;
use crate::Result;
use candle_core::Tensor;

/// A transformation between the attacker's signal and the recogniser.
pub trait Channel {
    /// Loss and waveform gradient of the attack's objective at `adv` seen through the channel
    /// (averaged over this step's draws where it is random). `front` is the attacked model's
    /// mel front end for this step.
    fn loss_and_grad(
        &self,
        front: &MelFrontEnd,
        adv: &[f32],
        rng: &mut Rng,
    ) -> Result<(f32, Vec<f32>)>;

    /// Whether `adv` is a success, given its plain transcript and whether that meets the goal.
    fn judge(&self, adv: &[f32], transcript: &str, plain: bool) -> Result<bool>;
}

/// The mean loss and gradient of `n` draws (`draw(i)` gives the i-th; a gradient shorter than
/// `len`, e.g. of a prefix, covers its first samples only).
pub fn averaged(
    n: usize,
    len: usize,
    mut draw: impl FnMut(usize) -> Result<(f32, Vec<f32>)>,
) -> Result<(f32, Vec<f32>)> {
    let (mut loss, mut grad) = (0.0, vec![0.0f32; len]);
    for i in 0..n {
        let (l, g) = draw(i)?;
        loss += l / n as f32;
        for (acc, v) in grad.iter_mut().zip(&g) {
            *acc += v / n as f32;
        }
    }
    Ok((loss, grad))
}

/// Expectation over random transformations ([`eot`]): a success meets the goal as it stands
/// and through `check_transforms` fixed draws.
pub struct EotChannel<'a> {
    /// The attacked model.
    pub model: &'a LoadedModel,
    /// The attack's objective.
    pub objective: &'a Objective,
    /// The transformations.
    pub config: &'a eot::EotConfig,
    /// Decoding of the checks.
    pub decode: &'a DecodeOptions,
    /// Seed of the checks' draws.
    pub seed: u64,
}

impl Channel for EotChannel<'_> {
    fn loss_and_grad(
        &self,
        front: &MelFrontEnd,
        adv: &[f32],
        rng: &mut Rng,
    ) -> Result<(f32, Vec<f32>)> {
        averaged(self.config.samples.max(1), adv.len(), |_| {
            let t = eot::Transform::sample(self.config, adv, crate::audio::SAMPLE_RATE, rng);
            let (l, g) = objective_at(self.model, self.objective, front, &t.apply(adv))?;
            Ok((l, t.adjoint(&g)))
        })
    }

    fn judge(&self, adv: &[f32], _transcript: &str, plain: bool) -> Result<bool> {
        if !plain {
            return Ok(false);
        }
        let mut rng = Rng::new(self.seed ^ 0xE07);
        for _ in 0..self.config.check_transforms {
            let y = eot::Transform::sample(self.config, adv, crate::audio::SAMPLE_RATE, &mut rng)
                .apply(adv);
            if !self
                .objective
                .is_met(&transcribe(self.model, &y, self.decode)?.text)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Loss and waveform gradient of `objective` on `model` at the signal `y`.
pub fn objective_at(
    model: &LoadedModel,
    objective: &Objective,
    front: &MelFrontEnd,
    y: &[f32],
) -> Result<(f32, Vec<f32>)> {
    let wave = Tensor::from_vec(y.to_vec(), y.len(), model.whisper.device())?;
    objective.loss_and_grad(model, front, &wave)
}
