//! Every attack advox has, by name ([`AttackKind`]), and with its settings: the white-box
//! ones ([`Attack`], against the built-in model's gradients) and the black-box ones
//! ([`BlackBox`], against any [`Recognizer`]). `run` is the one entry point the CLI, `eval` and
//! `bench` use, and the outcome's verdict is the attack's.

use super::cw::{run_cw, CwConfig};
use super::deepfool::{run_deepfool, DeepFoolConfig};
use super::ga::{run_ga, BlackBoxOutcome, GaConfig};
use super::imperceptible::{run_imperceptible, ImperceptibleConfig};
use super::jsma::{run_jsma, JsmaConfig};
use super::nes::{run_nes, Estimator, NesConfig};
use super::newton::{run_newton, NewtonConfig};
use super::{run_attack, AttackConfig, AttackOutcome, Method, StepInfo};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::recognizer::Recognizer;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;

/// The name of an attack, as the CLI takes it and reports write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Fast gradient sign method: one signed step of the whole L∞ bound.
    Fgsm,
    /// Projected gradient descent.
    Pgd,
    /// Carlini–Wagner L2.
    Cw,
    /// DeepFool for sequences (untargeted).
    Deepfool,
    /// JSMA on the time–frequency plane.
    Jsma,
    /// Qin et al.'s imperceptible targeted attack (PGD, then the masking loss).
    Imperceptible,
    /// Trust-region Newton–CG with finite-difference Hessian–vector products.
    Newton,
    /// Black-box genetic algorithm.
    Ga,
    /// Black-box NES gradient estimation.
    Nes,
    /// Black-box SPSA gradient estimation.
    Spsa,
}

impl AttackKind {
    /// Every attack.
    pub const ALL: [AttackKind; 10] = [
        AttackKind::Fgsm,
        AttackKind::Pgd,
        AttackKind::Cw,
        AttackKind::Deepfool,
        AttackKind::Jsma,
        AttackKind::Imperceptible,
        AttackKind::Newton,
        AttackKind::Ga,
        AttackKind::Nes,
        AttackKind::Spsa,
    ];

    /// Its name (`pgd`, `cw`, …).
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Fgsm => "fgsm",
            AttackKind::Pgd => "pgd",
            AttackKind::Cw => "cw",
            AttackKind::Deepfool => "deepfool",
            AttackKind::Jsma => "jsma",
            AttackKind::Imperceptible => "imperceptible",
            AttackKind::Newton => "newton",
            AttackKind::Ga => "ga",
            AttackKind::Nes => "nes",
            AttackKind::Spsa => "spsa",
        }
    }

    /// Whether it only queries a recogniser (no gradients).
    pub fn is_black_box(self) -> bool {
        matches!(self, AttackKind::Ga | AttackKind::Nes | AttackKind::Spsa)
    }

    /// The names of the white-box or the black-box attacks.
    pub fn names(black_box: bool) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|k| k.is_black_box() == black_box)
            .map(|k| k.name())
            .collect()
    }
}

impl std::fmt::Display for AttackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttackKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::InvalidArgument(format!(
                    "unknown attack {s:?} (one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// A white-box attack with its settings.
#[derive(Debug, Clone)]
pub enum Attack {
    /// FGSM or PGD (by `method`).
    Pgd(AttackConfig),
    /// Carlini–Wagner L2.
    Cw(CwConfig),
    /// DeepFool.
    DeepFool(DeepFoolConfig),
    /// JSMA.
    Jsma(JsmaConfig),
    /// The imperceptible attack.
    Imperceptible(ImperceptibleConfig),
    /// Trust-region Newton–CG.
    Newton(NewtonConfig),
}

/// What an attack measured beyond the common outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackDetails {
    /// Nothing more.
    None,
    /// JSMA: the share of STFT bins that carry perturbation.
    Jsma {
        /// Share of the bins perturbed.
        bins_fraction: f32,
    },
    /// The imperceptible attack's stages.
    Imperceptible {
        /// Steps of stage 1 (PGD, all its tries).
        stage1_steps: usize,
        /// Masking margin (dB) of stage 1's kept try, where it ran under the masking bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage1_margin_db: Option<f32>,
        /// α at the end of stage 2.
        alpha: f32,
        /// Masking loss of the kept example.
        masking_loss: f32,
    },
    /// Newton–CG: its iterations and what they cost.
    Newton {
        /// Trust-region iterations.
        iterations: usize,
        /// Hessian–vector products (one gradient evaluation each).
        hessian_products: usize,
        /// Trial steps rejected.
        rejected_steps: usize,
        /// Trust radius at the end (L2 in the preconditioned step space; absent when the
        /// attack ended before its first step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trust_radius: Option<f32>,
    },
    /// A recording longer than one 30-s window, attacked window by window.
    Windows {
        /// Each window's outcome.
        outcomes: Vec<super::windowed::WindowOutcome>,
    },
}

/// One attack's result: the common outcome and the attack's own measurements.
#[derive(Debug, Clone)]
pub struct AttackRun {
    /// The kept example and its verdict.
    pub outcome: AttackOutcome,
    /// Measurements particular to the attack.
    pub details: AttackDetails,
}

impl Attack {
    /// Its name.
    pub fn kind(&self) -> AttackKind {
        match self {
            Attack::Pgd(c) if c.method == Method::Fgsm => AttackKind::Fgsm,
            Attack::Pgd(_) => AttackKind::Pgd,
            Attack::Cw(_) => AttackKind::Cw,
            Attack::DeepFool(_) => AttackKind::Deepfool,
            Attack::Jsma(_) => AttackKind::Jsma,
            Attack::Imperceptible(_) => AttackKind::Imperceptible,
            Attack::Newton(_) => AttackKind::Newton,
        }
    }

    /// The decoding its verdict is judged with.
    pub fn decode(&self) -> &DecodeOptions {
        match self {
            Attack::Pgd(c) => &c.decode,
            Attack::Cw(c) => &c.decode,
            Attack::DeepFool(c) => &c.decode,
            Attack::Jsma(c) => &c.decode,
            Attack::Imperceptible(c) => &c.stage1.decode,
            Attack::Newton(c) => &c.decode,
        }
    }

    /// The most gradient steps it takes (for progress bars).
    pub fn max_steps(&self) -> usize {
        match self {
            Attack::Pgd(c) if c.method == Method::Fgsm => 1,
            Attack::Pgd(c) => c.steps.max(1) * (1 + c.restarts),
            Attack::Cw(c) => c.steps.max(1) * c.search_steps.max(1),
            Attack::DeepFool(c) => c.max_iterations.max(1),
            Attack::Jsma(c) => c.iterations.max(1),
            Attack::Imperceptible(c) => c.stage1_budget() + c.steps,
            Attack::Newton(c) => c.iterations.max(1),
        }
    }

    /// Run it on 16-kHz samples `x` (at most 30 s) for `objective`. `cancel` stops it at the
    /// next step, keeping the best point so far; `on_step` reports progress.
    pub fn run(
        &self,
        model: &LoadedModel,
        x: &[f32],
        objective: &Objective,
        cancel: &AtomicBool,
        on_step: &mut dyn FnMut(&StepInfo),
    ) -> Result<AttackRun> {
        let plain = |outcome| AttackRun {
            outcome,
            details: AttackDetails::None,
        };
        Ok(match self {
            Attack::Pgd(c) => plain(run_attack(model, x, objective, c, cancel, on_step)?),
            Attack::Cw(c) => plain(run_cw(model, x, objective, c, cancel, on_step)?),
            Attack::DeepFool(c) => plain(run_deepfool(model, x, objective, c, cancel, on_step)?),
            Attack::Jsma(c) => {
                let out = run_jsma(model, x, objective, c, cancel, on_step)?;
                AttackRun {
                    outcome: out.attack,
                    details: AttackDetails::Jsma {
                        bins_fraction: out.bins_fraction,
                    },
                }
            }
            Attack::Imperceptible(c) => {
                let out = run_imperceptible(model, x, objective, c, cancel, on_step)?;
                AttackRun {
                    outcome: out.attack,
                    details: AttackDetails::Imperceptible {
                        stage1_steps: out.stage1_steps,
                        stage1_margin_db: out.stage1_margin_db,
                        alpha: out.alpha,
                        masking_loss: out.masking_loss,
                    },
                }
            }
            Attack::Newton(c) => {
                let out = run_newton(model, x, objective, c, cancel, on_step)?;
                AttackRun {
                    outcome: out.attack,
                    details: AttackDetails::Newton {
                        iterations: out.iterations,
                        hessian_products: out.hessian_products,
                        rejected_steps: out.rejected,
                        trust_radius: out.radius,
                    },
                }
            }
        })
    }
}

/// A black-box attack with its settings.
#[derive(Debug, Clone)]
pub enum BlackBox {
    /// Genetic algorithm with momentum mutation.
    Ga(GaConfig),
    /// NES or SPSA gradient estimation (by `estimator`).
    Nes(NesConfig),
}

impl BlackBox {
    /// Its name.
    pub fn kind(&self) -> AttackKind {
        match self {
            BlackBox::Ga(_) => AttackKind::Ga,
            BlackBox::Nes(c) if c.estimator == Estimator::Spsa => AttackKind::Spsa,
            BlackBox::Nes(_) => AttackKind::Nes,
        }
    }

    /// Its query budget.
    pub fn budget(&self) -> usize {
        match self {
            BlackBox::Ga(c) => c.query_budget,
            BlackBox::Nes(c) => c.query_budget,
        }
    }

    /// The same search with another query budget.
    pub fn with_budget(&self, queries: usize) -> BlackBox {
        let mut b = self.clone();
        match &mut b {
            BlackBox::Ga(c) => c.query_budget = queries,
            BlackBox::Nes(c) => c.query_budget = queries,
        }
        b
    }

    /// Its seed.
    pub fn seed(&self) -> u64 {
        match self {
            BlackBox::Ga(c) => c.seed,
            BlackBox::Nes(c) => c.seed,
        }
    }

    /// Generations or gradient steps the budget allows (for progress bars).
    pub fn iterations(&self) -> usize {
        match self {
            BlackBox::Ga(c) => c.query_budget / c.population.max(1),
            BlackBox::Nes(c) => c.query_budget / (2 * c.directions).max(1),
        }
    }

    /// Run it through `recognizer` on 16-kHz samples `x` whose clean transcript is `original`.
    pub fn run(
        &self,
        recognizer: &mut dyn Recognizer,
        x: &[f32],
        goal: &Goal,
        original: &str,
        cancel: &AtomicBool,
        on_step: &mut dyn FnMut(&StepInfo),
    ) -> Result<BlackBoxOutcome> {
        match self {
            BlackBox::Ga(c) => run_ga(recognizer, x, goal, original, c, cancel, on_step),
            BlackBox::Nes(c) => run_nes(recognizer, x, goal, original, c, cancel, on_step),
        }
    }
}
