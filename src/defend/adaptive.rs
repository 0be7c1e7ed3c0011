//! Adaptive attacks on a defence (Athalye et al. 2018; Tramèr et al. 2020): the attacker
//! knows the defence and takes its gradient *through* it. A [`DefenseChannel`] is the defence
//! as a gradient attack's [`Channel`]:
//!
//! - purification: the forward pass runs the transforms in order, the backward pass each one's
//!   [`Transform::backward`] in reverse (exact adjoints for the linear ones, the straight-through
//!   estimator for rounding, BPDA for the rest);
//! - randomised smoothing: expectation over the smoothing noise (`samples` draws a step);
//! - vote: the losses of `samples` of its views (every model × the plain input and each
//!   transform) drawn each step, so all models and transforms are attacked jointly.
//!
//! A point succeeds when the goal is met *through the defence*, as the defence answers (an
//! abstention is no success).

use crate::attack::channel::{averaged, objective_at, Channel};
use crate::defend::{purify, Defense};
use crate::detect::transforms::Transform;
use crate::mel::MelFrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::rng::Rng;
use crate::transcribe::{transcribe, Transcript};
use crate::{Error, Result};

/// Gradient draws per step of the random defences (smoothing noise, the vote's views).
pub const DEFAULT_SAMPLES: usize = 2;

/// A defence the attacker knows, as a [`Channel`].
pub struct DefenseChannel<'a> {
    defense: &'a Defense,
    models: &'a [&'a LoadedModel],
    /// One per model (the first is the attack's own goal on `models[0]`).
    objectives: Vec<Objective>,
    /// Front ends of `models[1..]` (the attacked model's comes with each step).
    fronts: Vec<MelFrontEnd>,
    decode: &'a DecodeOptions,
    goal: Goal,
    /// The undefended clean transcript by `models[0]`: what the goal is judged against.
    clean: String,
    samples: usize,
}

impl<'a> DefenseChannel<'a> {
    /// The defence `defense` (over `models`, the first attacked) for an attack with `goal` on
    /// clean input `x`, whose clean transcript by `models[0]` is `clean`. `samples`: draws per
    /// step of smoothing's noise or the vote's views.
    pub fn new(
        defense: &'a Defense,
        models: &'a [&'a LoadedModel],
        x: &[f32],
        goal: &Goal,
        clean: &Transcript,
        decode: &'a DecodeOptions,
        samples: usize,
    ) -> Result<Self> {
        if models.is_empty() {
            return Err(Error::InvalidArgument("a defence needs a model".into()));
        }
        if samples == 0 {
            return Err(Error::InvalidArgument(
                "an adaptive attack needs at least one draw per step".into(),
            ));
        }
        let mut objectives = vec![Objective::new(
            models[0],
            goal.clone(),
            &clean.text,
            &clean.tokens,
        )?];
        let mut fronts = Vec::new();
        if matches!(defense, Defense::Vote(_)) {
            for m in &models[1..] {
                let own = transcribe(m, x, decode)?;
                objectives.push(Objective::new(m, goal.clone(), &own.text, &own.tokens)?);
                fronts.push(MelFrontEnd::new(
                    m.whisper.config().num_mel_bins,
                    m.whisper.device(),
                )?);
            }
        }
        Ok(DefenseChannel {
            defense,
            models,
            objectives,
            fronts,
            decode,
            goal: goal.clone(),
            clean: clean.text.clone(),
            samples,
        })
    }

    /// How the gradient passes through the defence, for reports.
    pub fn gradient(&self) -> String {
        let through = |t: &[Transform]| {
            t.iter()
                .map(|t| format!("{} {}", t.name(), t.backward_kind().name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.defense {
            Defense::None => "plain".into(),
            Defense::Purify(t) => through(t),
            Defense::Smoothing(c) => {
                format!("EOT over N(0, {}²), {} a step", c.sigma, self.samples)
            }
            Defense::Vote(t) => format!(
                "{} of {} views a step (plain, {})",
                self.samples.min(self.views(t)),
                self.views(t),
                through(t)
            ),
        }
    }

    fn views(&self, transforms: &[Transform]) -> usize {
        self.objectives.len() * (1 + transforms.len())
    }

    /// Loss and gradient of model `m`'s objective at `y`.
    fn model_loss(&self, m: usize, front: &MelFrontEnd, y: &[f32]) -> Result<(f32, Vec<f32>)> {
        let front = if m == 0 { front } else { &self.fronts[m - 1] };
        objective_at(self.models[m], &self.objectives[m], front, y)
    }
}

impl Channel for DefenseChannel<'_> {
    fn loss_and_grad(
        &self,
        front: &MelFrontEnd,
        adv: &[f32],
        rng: &mut Rng,
    ) -> Result<(f32, Vec<f32>)> {
        match self.defense {
            Defense::None => self.model_loss(0, front, adv),
            Defense::Purify(transforms) => {
                let (loss, mut g) = self.model_loss(0, front, &purify(transforms, adv)?)?;
                for t in transforms.iter().rev() {
                    g = t.backward(&g)?;
                }
                Ok((loss, g))
            }
            Defense::Smoothing(cfg) => averaged(self.samples, adv.len(), |_| {
                let y: Vec<f32> = adv.iter().map(|v| v + cfg.sigma * rng.normal()).collect();
                self.model_loss(0, front, &y)
            }),
            Defense::Vote(transforms) => {
                // Draw distinct views: (model, plain or a transform).
                let total = self.views(transforms);
                let mut order: Vec<usize> = (0..total).collect();
                for i in (1..total).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                averaged(self.samples.min(total), adv.len(), |i| {
                    let view = order[i];
                    let (m, t) = (view / (1 + transforms.len()), view % (1 + transforms.len()));
                    match t.checked_sub(1).map(|i| transforms[i]) {
                        None => self.model_loss(m, front, adv),
                        Some(t) => {
                            let (l, g) = self.model_loss(m, front, &t.apply(adv)?)?;
                            Ok((l, t.backward(&g)?))
                        }
                    }
                })
            }
        }
    }

    fn judge(&self, adv: &[f32], _transcript: &str, _plain: bool) -> Result<bool> {
        if let Defense::Smoothing(cfg) = self.defense {
            // One noisy copy first: the full vote costs every copy's decode.
            let mut rng = Rng::new(cfg.seed ^ 0xADA);
            let y: Vec<f32> = adv.iter().map(|v| v + cfg.sigma * rng.normal()).collect();
            if !self.goal.is_met(
                &self.clean,
                &transcribe(self.models[0], &y, self.decode)?.text,
            ) {
                return Ok(false);
            }
        }
        let d = self.defense.transcribe(self.models, self.decode, adv)?;
        Ok(!d.abstained && self.goal.is_met(&self.clean, &d.text))
    }
}
