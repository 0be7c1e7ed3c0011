//! Imperceptible targeted attack (after Qin et al. 2019). Stage 1: a targeted PGD attack under
//! L∞ (the engine's [`run_attack`]), here by default also under the masking bound: δ projected
//! onto the input's masking threshold at each margin of [`ImperceptibleConfig::stage1_margins_db`]
//! in turn (1 dB under, then 6 dB over), until one try succeeds. A success that already has
//! the wanted share of its energy under the threshold is the result. Otherwise stage 2: from stage 1's
//! result, minimise `ℓ_net + α·ℓ_θ`, with `ℓ_θ` the psychoacoustic masking loss of δ against
//! the threshold, adapting α (×1.2 every 20 steps while the goal is met, ×0.8 every 50 steps
//! while it is not, never under a floor) and keeping the successful example with the smallest
//! `ℓ_θ`; stage 2 stops at the first success with the wanted share of δ's energy under the
//! threshold.

use super::step::{StepSpace, Stepper};
use super::track::{Keep, Tracker};
use super::{quantized_sum_within, run_attack, AttackConfig, AttackOutcome, StepInfo};
use crate::masking::{MaskingConfig, MaskingStats, MaskingThreshold};
use crate::model::LoadedModel;
use crate::objective::Objective;
use crate::perturb::{BandLimiter, MaskingBound};
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Default share of δ's energy under the masking threshold at which stage 2 stops.
pub const DEFAULT_MASKED_SHARE: f64 = 0.99;

/// Default margins (dB under the masking threshold) of stage 1's tries: 1 dB under the
/// threshold (the projection leaves bins up to 0.1 dB over its target: at 0 dB 8 % of the bins
/// sat just over the threshold on `test_within_context`, 98.1 % of the energy under it), then
/// 6 dB over it for stage 2 to pull under. On the 9-s `LJ001-0005` the strict goal failed
/// under the threshold after 300 steps and succeeded 6 dB over it, stage 2 then reaching
/// 99.98 %; plain stage 1 (no masking bound) had left stage 2 at 72–81 % on four clips.
pub const DEFAULT_STAGE1_MARGINS_DB: [f32; 2] = [1.0, -6.0];

/// Settings of the imperceptible attack.
#[derive(Debug, Clone)]
pub struct ImperceptibleConfig {
    /// Stage 1: the targeted PGD attack (its constraints also bind stage 2).
    pub stage1: AttackConfig,
    /// Stage 1 runs under the masking bound at each of these margins (dB under the threshold;
    /// negative: over it) in turn until a try succeeds; every try but the last gets half of
    /// `stage1.steps`, and the successful try's bound also binds stage 2. Empty, or a stage 1
    /// with a masking bound of its own: one stage 1 as `stage1` says (Qin et al.).
    pub stage1_margins_db: Vec<f32>,
    /// Stage-2 steps.
    pub steps: usize,
    /// Largest sample change of one stage-2 Adam step.
    pub learning_rate: f32,
    /// Initial weight of the masking loss; `None` balances the two gradients' norms at the
    /// start of stage 2.
    pub alpha: Option<f32>,
    /// α never goes under this.
    pub alpha_floor: f32,
    /// The masking model.
    pub masking: MaskingConfig,
    /// Decode every this many stage-2 steps.
    pub check_every: usize,
    /// Stage 2 stops at the first success with at least this share of δ's energy under the
    /// masking threshold ([`MaskingStats::energy_under_threshold`]); above 1 it runs every step.
    pub masked_share: f64,
}

impl Default for ImperceptibleConfig {
    fn default() -> Self {
        ImperceptibleConfig {
            stage1: AttackConfig::default(),
            stage1_margins_db: DEFAULT_STAGE1_MARGINS_DB.to_vec(),
            steps: 200,
            learning_rate: 2e-4,
            alpha: None,
            alpha_floor: 5e-4,
            masking: MaskingConfig::default(),
            check_every: 10,
            masked_share: DEFAULT_MASKED_SHARE,
        }
    }
}

impl ImperceptibleConfig {
    /// The margins stage 1 tries under the masking bound: none where `stage1` has a masking
    /// bound of its own.
    fn masked_tries(&self) -> &[f32] {
        if self.stage1.constraints.masking.is_some() {
            &[]
        } else {
            &self.stage1_margins_db
        }
    }

    /// Steps of stage 1's try `i` (of `tries`): half of `stage1.steps` for all but the last.
    fn try_steps(&self, i: usize, tries: usize) -> usize {
        if i + 1 < tries {
            (self.stage1.steps / 2).max(1)
        } else {
            self.stage1.steps
        }
    }

    /// The most steps stage 1 takes, over all its tries.
    pub fn stage1_budget(&self) -> usize {
        let run = |steps: usize| steps.max(1) * (1 + self.stage1.restarts);
        let tries = self.masked_tries().len();
        (0..tries.max(1))
            .map(|i| run(self.try_steps(i, tries)))
            .sum()
    }
}

/// The result of the imperceptible attack.
#[derive(Debug, Clone)]
pub struct ImperceptibleOutcome {
    /// The kept example (stage 2's best success, else stage 1's result).
    pub attack: AttackOutcome,
    /// Steps of stage 1 (all its tries).
    pub stage1_steps: usize,
    /// The masking margin (dB) of stage 1's kept try, where it ran under the masking bound.
    pub stage1_margin_db: Option<f32>,
    /// α at the end of stage 2.
    pub alpha: f32,
    /// Masking loss of the kept example.
    pub masking_loss: f32,
    /// How the kept perturbation sits against the threshold.
    pub masking: MaskingStats,
}

/// Run both stages on 16-kHz samples `x`.
pub fn run_imperceptible(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &ImperceptibleConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<ImperceptibleOutcome> {
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        return Err(Error::InvalidArgument(
            "the stage-2 learning rate must be positive".into(),
        ));
    }
    if !(cfg.masked_share.is_finite() && cfg.masked_share > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the masked share at which stage 2 stops must be positive, got {}",
            cfg.masked_share
        )));
    }
    if let Some(a) = cfg.alpha {
        if !(a.is_finite() && a > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "α must be positive, got {a}"
            )));
        }
    }
    let threshold = Arc::new(MaskingThreshold::compute(x, cfg.masking)?);
    let (stage1, stage1_cfg, stage1_margin_db) =
        run_stage1(model, x, objective, cfg, &threshold, cancel, on_step)?;
    let stage1_steps = stage1.steps;
    let (stage1_loss, _) = threshold.loss_and_grad(&stage1.perturbation)?;
    let stage1_masking = threshold.stats(&stage1.perturbation)?;
    if !stage1.success
        || stage1.cancelled
        || cfg.steps == 0
        || stage1_masking.energy_under_threshold >= cfg.masked_share
    {
        return Ok(ImperceptibleOutcome {
            attack: stage1,
            stage1_steps,
            stage1_margin_db,
            alpha: cfg.alpha.unwrap_or(f32::NAN),
            masking_loss: stage1_loss,
            masking: stage1_masking,
        });
    }
    // From here `stage1_cfg` is the stage-1 try that succeeded: its constraints (masking bound
    // included) bind stage 2.

    let band = match stage1_cfg.constraints.band_hz {
        Some((lo, hi)) => Some(BandLimiter::new(lo, hi, crate::audio::SAMPLE_RATE)?),
        None => None,
    };
    let mut track = Tracker::new(model, x, objective, &stage1_cfg.decode, Keep::Latest)?;
    // Stage 1's success is kept unless a stage-2 success sits lower against the threshold.
    track.resume(&stage1, stage1_loss);
    let mut stepper = Stepper::new(
        super::Rule::Adam,
        StepSpace::new(stage1_cfg.domain, x.len())?,
    );
    let mut delta = stage1.perturbation.clone();
    let mut alpha = cfg.alpha;
    let mut succeeding = true;
    let gated = track.lead_required();
    for step in 1..=cfg.steps {
        if track.stop_requested(cancel) {
            break;
        }
        let adv = quantized_sum_within(x, &delta, stage1_cfg.constraints.linf);
        let effective: Vec<f32> = adv.iter().zip(x).map(|(a, b)| a - b).collect();
        let net = track.score(&adv)?;
        let (net_loss, net_grad) = (net.loss, net.grad);
        let (mask_loss, mask_grad) = threshold.loss_and_grad(&effective)?;
        let mut info = StepInfo {
            run: 1,
            step,
            steps: cfg.steps,
            loss: f32::NAN,
            transcript: None,
        };
        // The point just scored is judged as it stands; where success needs the target to
        // lead under teacher forcing and it does not, no decode is needed to know it fails.
        if step % cfg.check_every.max(1) == 0 || step == cfg.steps {
            if gated && !track.leads(net.lead) {
                succeeding = false;
            } else {
                let transcript = track.transcribe(&adv)?;
                succeeding = track.judge(&adv, &transcript, net.lead)?;
                let masked = succeeding && {
                    let share = threshold.stats(&effective)?.energy_under_threshold;
                    track.offer(adv, true, transcript.clone(), net_loss, mask_loss);
                    share >= cfg.masked_share
                };
                info.transcript = Some(transcript);
                if masked {
                    // This success is the kept one unless an earlier one sits lower still.
                    info.loss = net_loss + alpha.map_or(0.0, |a| a * mask_loss);
                    on_step(&info);
                    break;
                }
            }
        }
        let a = *alpha.get_or_insert_with(|| balanced_alpha(&net_grad, &mask_grad));
        let grad: Vec<f32> = net_grad
            .iter()
            .zip(&mask_grad)
            .map(|(n, m)| n + a * m)
            .collect();
        let dir = stepper.direction(&grad)?;
        for (d, s) in delta.iter_mut().zip(&dir) {
            *d -= cfg.learning_rate * s;
        }
        stage1_cfg
            .constraints
            .project(&mut delta, x, band.as_ref())?;
        info.loss = net_loss + a * mask_loss;
        on_step(&info);
        if let Some(a) = alpha.as_mut() {
            if step % 20 == 0 && succeeding {
                *a *= 1.2;
            }
            if step % 50 == 0 && !succeeding {
                *a = (*a * 0.8).max(cfg.alpha_floor);
            }
        }
    }
    let attack = track.finish()?;
    let (masking_loss, _) = threshold.loss_and_grad(&attack.perturbation)?;
    let masking = threshold.stats(&attack.perturbation)?;
    Ok(ImperceptibleOutcome {
        attack,
        stage1_steps,
        stage1_margin_db,
        alpha: alpha.unwrap_or(f32::NAN),
        masking_loss,
        masking,
    })
}

/// Stage 1: its tries under the masking bound (see
/// [`ImperceptibleConfig::stage1_margins_db`]), else one run as `cfg.stage1` says. Returns the
/// kept outcome (steps counted over all tries), the configuration it ran with and its margin.
fn run_stage1(
    model: &LoadedModel,
    x: &[f32],
    objective: &Objective,
    cfg: &ImperceptibleConfig,
    threshold: &Arc<MaskingThreshold>,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<(AttackOutcome, AttackConfig, Option<f32>)> {
    let margins = cfg.masked_tries();
    if margins.is_empty() {
        let out = run_attack(model, x, objective, &cfg.stage1, cancel, on_step)?;
        let margin = cfg.stage1.constraints.masking.as_ref().map(|m| m.margin_db);
        return Ok((out, cfg.stage1.clone(), margin));
    }
    if let Some(m) = margins.iter().find(|m| !m.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "stage 1's masking margins must be finite, got {m}"
        )));
    }
    let mut steps = 0;
    for (i, &margin_db) in margins.iter().enumerate() {
        let mut c = cfg.stage1.clone();
        c.constraints.masking = Some(MaskingBound {
            threshold: threshold.clone(),
            margin_db,
        });
        c.steps = cfg.try_steps(i, margins.len());
        let mut out = run_attack(model, x, objective, &c, cancel, on_step)?;
        steps += out.steps;
        out.steps = steps;
        if out.success || out.cancelled || i + 1 == margins.len() {
            return Ok((out, c, Some(margin_db)));
        }
    }
    unreachable!("the last try returns")
}

/// The α that gives the masking gradient the network gradient's norm.
fn balanced_alpha(net: &[f32], mask: &[f32]) -> f32 {
    let n = crate::metrics::l2(net);
    let m = crate::metrics::l2(mask);
    if m > 0.0 && n > 0.0 {
        (n / m) as f32
    } else {
        1.0
    }
}
