//! Black-box gradient estimation: NES (Ilyas et al. 2018: antithetic Gaussian samples) or SPSA
//! (Spall 1992 / Uesato et al. 2018: Rademacher samples), followed by signed projected steps
//! under L∞.
//!
//! The loss is the recogniser's score of the goal where it exposes scores, else minus the
//! transcript-distance [`fitness`]. The estimate lives in a tiled space (one coordinate per
//! `tile` samples, linearly interpolated to the waveform), which cuts the dimension the few
//! queries per step must cover and keeps δ within the bound (interpolation is convex). Every
//! score and transcription is one counted query; with transcripts, every candidate queried is
//! also checked against the goal, so success is never missed.

use super::ga::{fitness, BlackBoxOutcome};
use super::{check_input, quantized_sum_within, AttackOutcome, StepInfo};
use crate::objective::Goal;
use crate::recognizer::Recognizer;
use crate::rng::Rng;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// How the search directions are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// Gaussian directions (natural evolution strategies).
    Nes,
    /// ±1 directions (simultaneous perturbation stochastic approximation).
    Spsa,
}

/// Settings of the gradient-estimation attack.
#[derive(Debug, Clone)]
pub struct NesConfig {
    /// Distribution of the directions.
    pub estimator: Estimator,
    /// Largest absolute sample value of δ.
    pub linf: f32,
    /// Directions per estimate (each costs two queries: antithetic pairs).
    pub directions: usize,
    /// Finite-difference radius, in sample units.
    pub sigma: f32,
    /// Largest sample change of one signed step.
    pub step_size: f32,
    /// Samples per coordinate of the estimated δ.
    pub tile: usize,
    /// With scores: transcribe the current δ every this many steps to test success.
    pub check_every: usize,
    /// Most queries to the recogniser.
    pub query_budget: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for NesConfig {
    fn default() -> Self {
        NesConfig {
            estimator: Estimator::Nes,
            linf: 0.02,
            directions: 10,
            sigma: 0.005,
            step_size: 0.004,
            tile: 8,
            check_every: 2,
            query_budget: 300,
            seed: 0,
        }
    }
}

/// δ from its tiled coordinates: coordinate j sits at sample j·tile, linear in between.
pub fn expand_tiled(z: &[f32], tile: usize, len: usize) -> Vec<f32> {
    let last = z.len().saturating_sub(1);
    (0..len)
        .map(|i| {
            let j = i / tile;
            let t = (i % tile) as f32 / tile as f32;
            let a = z[j.min(last)];
            let b = z[(j + 1).min(last)];
            a + t * (b - a)
        })
        .collect()
}

/// Coordinates needed to cover `len` samples (one more than the tiles, for the last ramp).
fn tiled_len(len: usize, tile: usize) -> usize {
    len.div_ceil(tile) + 1
}

/// Run NES/SPSA on 16-kHz samples `x` whose clean transcript is `original`.
pub fn run_nes(
    recognizer: &mut dyn Recognizer,
    x: &[f32],
    goal: &Goal,
    original: &str,
    cfg: &NesConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<BlackBoxOutcome> {
    check_input(x)?;
    let positive = |v: f32| v.is_finite() && v > 0.0;
    if cfg.directions == 0
        || cfg.tile == 0
        || !(positive(cfg.linf) && positive(cfg.sigma) && positive(cfg.step_size))
    {
        return Err(Error::InvalidArgument(
            "gradient estimation needs at least one direction, a tile of at least one sample, \
             and a positive L∞ bound, sigma and step size"
                .into(),
        ));
    }
    let start_queries = recognizer.queries();
    let used = |r: &dyn Recognizer| r.queries() - start_queries;
    let scored = recognizer.has_scores();
    let mut rng = Rng::new(cfg.seed);
    let dim = tiled_len(x.len(), cfg.tile);
    let mut z = vec![0.0f32; dim];
    // Best seen so far: (loss, δ coordinates, transcript if known).
    let mut best: Option<(f64, Vec<f32>, Option<String>)> = None;
    let mut success: Option<(Vec<f32>, String)> = None;
    // One query of the loss at coordinates `c`; with transcripts also a success test.
    let query = |c: &[f32],
                 rec: &mut dyn Recognizer,
                 best: &mut Option<(f64, Vec<f32>, Option<String>)>,
                 success: &mut Option<(Vec<f32>, String)>|
     -> Result<f64> {
        let signal = quantized_sum_within(x, &expand_tiled(c, cfg.tile, x.len()), Some(cfg.linf));
        let (loss, transcript) = match rec.score(&signal) {
            Some(l) => (l? as f64, None),
            None => {
                let t = rec.transcribe(&signal)?;
                (-fitness(goal, original, &t), Some(t))
            }
        };
        if let Some(t) = &transcript {
            if success.is_none() && goal.is_met(original, t) {
                *success = Some((c.to_vec(), t.clone()));
            }
        }
        if best.as_ref().is_none_or(|b| loss < b.0) {
            *best = Some((loss, c.to_vec(), transcript));
        }
        Ok(loss)
    };
    let steps = cfg.query_budget / (2 * cfg.directions + usize::from(scored)).max(1);
    let mut step = 0;
    let mut cancelled = false;
    let mut last_transcript = None;
    let mut last_loss = f32::NAN;
    let mut grad = vec![0.0f32; dim];
    let mut u = vec![0.0f32; dim];
    let mut probe = vec![0.0f32; dim];
    loop {
        if success.is_some() {
            break;
        }
        // With scores, test the current δ by transcription now and then.
        if scored && step % cfg.check_every.max(1) == 0 && step > 0 {
            if used(recognizer) + 1 > cfg.query_budget {
                break;
            }
            let signal =
                quantized_sum_within(x, &expand_tiled(&z, cfg.tile, x.len()), Some(cfg.linf));
            let t = recognizer.transcribe(&signal)?;
            if goal.is_met(original, &t) {
                success = Some((z.clone(), t));
                break;
            }
            last_transcript = Some(t);
        }
        // With scores, one query stays in reserve for the final transcription.
        if used(recognizer) + 2 * cfg.directions + usize::from(scored) > cfg.query_budget {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        step += 1;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut mean_loss = 0.0;
        for _ in 0..cfg.directions {
            for v in u.iter_mut() {
                *v = match cfg.estimator {
                    Estimator::Nes => rng.normal(),
                    Estimator::Spsa => {
                        if rng.uniform() < 0.5 {
                            -1.0
                        } else {
                            1.0
                        }
                    }
                };
            }
            let mut side = |sign: f32, rec: &mut dyn Recognizer| {
                for ((p, zi), ui) in probe.iter_mut().zip(&z).zip(&u) {
                    *p = (zi + sign * cfg.sigma * ui).clamp(-cfg.linf, cfg.linf);
                }
                query(&probe, rec, &mut best, &mut success)
            };
            let plus = side(1.0, recognizer)?;
            let minus = side(-1.0, recognizer)?;
            mean_loss += (plus + minus) / (2 * cfg.directions) as f64;
            let w = ((plus - minus) / (2.0 * cfg.sigma as f64 * cfg.directions as f64)) as f32;
            for (g, ui) in grad.iter_mut().zip(&u) {
                *g += w * ui;
            }
            if success.is_some() {
                break;
            }
        }
        for (zi, g) in z.iter_mut().zip(&grad) {
            *zi = (*zi - cfg.step_size * g.signum()).clamp(-cfg.linf, cfg.linf);
        }
        last_loss = mean_loss as f32;
        on_step(&StepInfo {
            run: 0,
            step,
            steps,
            loss: last_loss,
            transcript: last_transcript
                .clone()
                .or_else(|| best.as_ref().and_then(|b| b.2.clone())),
        });
    }
    // The result: the first candidate that met the goal, else (scores) the current δ, else the
    // candidate with the best transcript fitness.
    let (coords, transcript) = match success {
        Some(s) => s,
        None if scored => {
            let signal =
                quantized_sum_within(x, &expand_tiled(&z, cfg.tile, x.len()), Some(cfg.linf));
            let t = match last_transcript {
                Some(t) if step % cfg.check_every.max(1) == 0 => t,
                _ => recognizer.transcribe(&signal)?,
            };
            (z, t)
        }
        None => match best {
            Some((_, c, Some(t))) => (c, t),
            _ => {
                let signal =
                    quantized_sum_within(x, &expand_tiled(&z, cfg.tile, x.len()), Some(cfg.linf));
                let t = recognizer.transcribe(&signal)?;
                (z, t)
            }
        },
    };
    let adversarial =
        quantized_sum_within(x, &expand_tiled(&coords, cfg.tile, x.len()), Some(cfg.linf));
    let perturbation = adversarial.iter().zip(x).map(|(a, b)| a - b).collect();
    Ok(BlackBoxOutcome {
        attack: AttackOutcome {
            success: goal.is_met(original, &transcript),
            adversarial,
            perturbation,
            transcript,
            steps: step,
            loss: last_loss,
            cancelled,
        },
        queries: used(recognizer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_expansion_interpolates_and_stays_in_bounds() {
        let z = [0.0, 1.0, -1.0];
        let d = expand_tiled(&z, 4, 9);
        assert_eq!(d.len(), 9);
        assert_eq!(d[0], 0.0);
        assert_eq!(d[2], 0.5);
        assert_eq!(d[4], 1.0);
        assert_eq!(d[6], 0.0);
        assert_eq!(d[8], -1.0);
        assert!(d.iter().all(|v| v.abs() <= 1.0));
        assert_eq!(tiled_len(9, 4), 4);
        assert_eq!(expand_tiled(&[0.3, 0.7], 1, 2), vec![0.3, 0.7]);
    }

    /// A recogniser whose score is a known quadratic: NES must walk δ towards its minimum.
    struct Quadratic {
        target: Vec<f32>,
        queries: usize,
    }

    impl Recognizer for Quadratic {
        fn transcribe(&mut self, _samples: &[f32]) -> Result<String> {
            self.queries += 1;
            Ok("unchanged".into())
        }
        fn queries(&self) -> usize {
            self.queries
        }
        fn describe(&self) -> String {
            "quadratic".into()
        }
        fn score(&mut self, samples: &[f32]) -> Option<Result<f32>> {
            self.queries += 1;
            let e: f32 = samples
                .iter()
                .zip(&self.target)
                .map(|(s, t)| (s - t) * (s - t))
                .sum();
            Some(Ok(e))
        }
        fn has_scores(&self) -> bool {
            true
        }
    }

    #[test]
    fn estimated_gradient_descends_a_known_score_within_the_budget() {
        for estimator in [Estimator::Nes, Estimator::Spsa] {
            let x = vec![0.0f32; 16];
            let target: Vec<f32> = (0..16).map(|i| if i < 8 { 0.02 } else { -0.02 }).collect();
            let mut rec = Quadratic {
                target: target.clone(),
                queries: 0,
            };
            let cfg = NesConfig {
                estimator,
                tile: 1,
                directions: 8,
                sigma: 0.002,
                step_size: 0.002,
                query_budget: 400,
                ..Default::default()
            };
            let before: f32 = target.iter().map(|t| t * t).sum();
            let out = run_nes(
                &mut rec,
                &x,
                &Goal::Mute,
                "unchanged",
                &cfg,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap();
            assert!(out.queries <= 400 && out.queries == rec.queries);
            let after: f32 = out
                .attack
                .adversarial
                .iter()
                .zip(&target)
                .map(|(s, t)| (s - t) * (s - t))
                .sum();
            assert!(after < 0.2 * before, "{estimator:?}: {before} → {after}");
            assert!(out
                .attack
                .perturbation
                .iter()
                .all(|d| d.abs() <= 0.02 + 1e-4));
        }
    }
}
