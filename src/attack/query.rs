//! A query-based attack on a recogniser advox did not build, in three phases:
//!
//! 1. **Surrogate prior** (optional): advox's own differentiable Whisper is attacked white-box
//!    (PGD under the same bound, window by window) and the result is sent to the target as one
//!    query; a round that does not fool the target is followed by one with a stronger goal on
//!    the surrogate (untargeted: a WER threshold 0.25 higher; targeted or mute: twice the
//!    margin), each one query. This is the transfer prior of TREMBA-style attacks: the
//!    surrogate's gradient spends no queries, the target only judges.
//! 2. **Quiet-frame prior** (optional, [`super::quiet_prior`]): noise that spends the whole
//!    bound in the input's quietest frames, one query per candidate, for targets the
//!    surrogate does not resemble.
//! 3. **Search**: the chosen query-based search (GA, NES, SPSA) from the priors' best point
//!    (by the target's transcript), or from the clean input without a prior, on what is left
//!    of the budget.
//! 4. **Shrinking**: after a success, the remaining queries (up to [`SHRINK_PROBES`]) search
//!    the least scale `α` of δ at which the target still meets the goal (bisection, as
//!    decision-based attacks do), recording the SNR after each query that shrank it.
//!
//! Every candidate the target hears is projected onto the user's constraints first
//! ([`Bounded`]), so the written example is always inside them.

use super::bounded::Bounded;
use super::ga::{fitness, BlackBoxOutcome};
use super::plan::AttackOptions;
use super::quiet_prior::{quiet_noise, round_share, QuietPrior, QuietRound};
use super::windowed::{attack_windows, WindowPlan};
use super::{AttackOutcome, BlackBox, StepInfo};
use crate::mel::N_SAMPLES;
use crate::metrics::snr_db;
use crate::model::LoadedModel;
use crate::objective::{Goal, Robustness};
use crate::perturb::Constraints;
use crate::recognizer::Recognizer;
use crate::rng::Rng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Most queries the shrinking phase spends (bisection: 2⁻¹⁰ of the scale is far below what
/// one query can tell).
pub const SHRINK_PROBES: usize = 10;

/// Rounds of the surrogate prior by default.
pub const SURROGATE_ROUNDS: usize = 3;

/// The surrogate prior: advox's model attacked white-box, its result sent to the target.
pub struct Surrogate<'m> {
    /// The surrogate model.
    pub model: &'m LoadedModel,
    /// Its white-box attack (a bounded one, e.g. PGD under the black-box attack's bound).
    pub options: AttackOptions,
    /// Rounds, one query each, the surrogate's goal made stronger each round.
    pub rounds: usize,
}

/// What the query-based attack runs.
pub struct QueryPlan<'m> {
    /// The search, with the whole query budget.
    pub search: BlackBox,
    /// The bounds every heard candidate is projected onto (relative to the clean input).
    pub constraints: Constraints,
    /// The surrogate prior, if any.
    pub surrogate: Option<Surrogate<'m>>,
    /// The quiet-frame prior, if any (after the surrogate's rounds).
    pub quiet: Option<QuietPrior>,
    /// Shrink δ after a success with the queries left.
    pub shrink: bool,
}

/// One round of the surrogate prior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurrogateRound {
    /// The surrogate's goal in this round.
    pub goal: String,
    /// The margin its success needed (targeted and mute goals).
    pub margin: Option<f32>,
    /// Whether the surrogate met that goal in every attacked window.
    pub surrogate_success: bool,
    /// Seconds of white-box computation.
    pub seconds: f64,
    /// What the target heard (one query).
    pub transcript: String,
    /// Whether that met the goal.
    pub success: bool,
    /// SNR of the candidate as heard (after the bound's projection).
    pub snr_db: f64,
}

/// A point of the shrinking phase: the SNR of the kept success after `queries` queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SnrPoint {
    /// Queries of the whole attack so far.
    pub queries: usize,
    /// SNR of the kept example (dB).
    pub snr_db: f64,
}

/// The outcome of the query-based attack.
#[derive(Debug, Clone)]
pub struct QueryOutcome {
    /// The example (inside the constraints) and its transcript by the target.
    pub attack: AttackOutcome,
    /// Queries of the whole attack.
    pub queries: usize,
    /// The surrogate rounds (empty without a surrogate).
    pub surrogate: Vec<SurrogateRound>,
    /// The quiet-frame prior's candidates (empty without it).
    pub quiet: Vec<QuietRound>,
    /// Queries of the search phase (0 where a prior alone succeeded).
    pub search_queries: usize,
    /// Queries when the goal was first met (`None`: never).
    pub first_success_queries: Option<usize>,
    /// The SNR of the kept success after the first success and after each query that shrank
    /// it (empty without a success).
    pub snr_trajectory: Vec<SnrPoint>,
}

/// The surrogate's goal and options in round `round` (0-based): untargeted, a WER threshold
/// 0.25 higher per round; targeted or mute, the margin doubled per round.
pub fn round_goal(goal: &Goal, options: &AttackOptions, round: usize) -> (Goal, AttackOptions) {
    let mut options = options.clone();
    let goal = match goal {
        Goal::Untargeted { min_wer } => Goal::Untargeted {
            min_wer: min_wer + 0.25 * round as f64,
        },
        g => {
            let base = options.margin.unwrap_or(Robustness::DEFAULT_MARGIN);
            options.margin = Some(base * 2f32.powi(round as i32));
            g.clone()
        }
    };
    (goal, options)
}

/// The best point so far by the target's verdict: (fitness, heard signal, transcript).
type Best = Option<(f64, Vec<f32>, String)>;

/// One prior candidate as the target heard it.
struct Probe {
    heard: Vec<f32>,
    transcript: String,
    met: bool,
    fitness: f64,
    snr_db: f64,
}

impl Probe {
    /// Project `x + delta` onto the bound and query the target with it (one query).
    fn hear(bounded: &mut Bounded, delta: &[f32], goal: &Goal, original: &str) -> Result<Self> {
        let x = bounded.clean();
        let proposed: Vec<f32> = x.iter().zip(delta).map(|(a, d)| a + d).collect();
        let heard = bounded.apply(&proposed)?;
        let transcript = bounded.hear(&heard)?;
        let x = bounded.clean();
        let heard_delta: Vec<f32> = heard.iter().zip(x).map(|(a, b)| a - b).collect();
        Ok(Probe {
            met: goal.is_met(original, &transcript),
            fitness: fitness(goal, original, &transcript),
            snr_db: snr_db(x, &heard_delta),
            heard,
            transcript,
        })
    }

    /// Keep the probe as the best point if it is, and as the success if it met the goal;
    /// whether it did.
    fn keep(self, best: &mut Best, success: &mut Option<(Vec<f32>, String)>) -> bool {
        if best.as_ref().is_none_or(|b| self.fitness > b.0) {
            *best = Some((self.fitness, self.heard.clone(), self.transcript.clone()));
        }
        if self.met {
            *success = Some((self.heard, self.transcript));
        }
        self.met
    }
}

/// Run the attack through `recognizer` on 16-kHz samples `x` whose clean transcript (by that
/// recogniser) is `original`.
pub fn run_query_attack(
    recognizer: &mut dyn Recognizer,
    x: &[f32],
    goal: &Goal,
    original: &str,
    plan: &QueryPlan,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<QueryOutcome> {
    super::check_input(x)?;
    let budget = plan.search.budget();
    let mut bounded = Bounded::new(recognizer, x, plan.constraints.clone())?;
    let start_queries = bounded.queries();
    let used = |b: &Bounded| b.queries() - start_queries;
    let cancelled = || cancel.load(Ordering::Relaxed);
    let mut rounds = Vec::new();
    let mut best: Best = None;
    let mut success: Option<(Vec<f32>, String)> = None;
    let mut steps = 0;
    if let Some(surrogate) = &plan.surrogate {
        for round in 0..surrogate.rounds.max(1) {
            if cancelled() || used(&bounded) >= budget {
                break;
            }
            let (round_goal, options) = round_goal(goal, &surrogate.options, round);
            let started = Instant::now();
            let windowed = match attack_windows(
                surrogate.model,
                x,
                &WindowPlan {
                    goal: round_goal.clone(),
                    options: options.clone(),
                    window: N_SAMPLES,
                },
                cancel,
                &mut |_| {},
                on_step,
            ) {
                Ok(w) => w,
                // The surrogate hears nothing to move away from: no prior, the search goes on.
                Err(Error::NothingToAttack(_)) => break,
                Err(e) => return Err(e),
            };
            let seconds = started.elapsed().as_secs_f64();
            steps += windowed.steps();
            let q = Probe::hear(&mut bounded, &windowed.perturbation, goal, original)?;
            rounds.push(SurrogateRound {
                goal: round_goal.describe(),
                margin: (!matches!(goal, Goal::Untargeted { .. }))
                    .then_some(options.margin)
                    .flatten(),
                surrogate_success: windowed.succeeded() == windowed.attacked(),
                seconds,
                transcript: q.transcript.clone(),
                success: q.met,
                snr_db: q.snr_db,
            });
            if q.keep(&mut best, &mut success) {
                break;
            }
        }
    }
    let mut quiet = Vec::new();
    if let Some(prior) = &plan.quiet {
        let mut rng = Rng::new(prior.seed ^ 0x5157);
        let mut best_share = 0.5f32;
        let mut best_fitness = f64::NEG_INFINITY;
        for round in 0..prior.rounds {
            if success.is_some() || cancelled() || used(&bounded) >= budget {
                break;
            }
            let share = round_share(round, best_share, &mut rng);
            let seed = prior.seed.wrapping_add(round as u64);
            let delta = quiet_noise(x, share, seed, &plan.constraints);
            let q = Probe::hear(&mut bounded, &delta, goal, original)?;
            quiet.push(QuietRound {
                share,
                seed,
                transcript: q.transcript.clone(),
                success: q.met,
                snr_db: q.snr_db,
            });
            if q.fitness > best_fitness {
                best_fitness = q.fitness;
                best_share = share;
            }
            q.keep(&mut best, &mut success);
        }
    }
    let prior_queries = used(&bounded);
    let mut search_queries = 0;
    let mut last: Option<(Vec<f32>, String, f32)> = None;
    if success.is_none() && !cancelled() && prior_queries < budget {
        // The search starts from the priors' best point (or the clean input) and keeps every
        // candidate inside the bound through `bounded`.
        let from = best.as_ref().map_or(x.to_vec(), |b| b.1.clone());
        let search = plan.search.with_budget(budget - prior_queries);
        let BlackBoxOutcome { attack, queries } =
            search.run(&mut bounded, &from, goal, original, cancel, on_step)?;
        search_queries = queries;
        steps += attack.steps;
        let heard = bounded.apply(&attack.adversarial)?;
        if attack.success {
            success = Some((heard, attack.transcript));
        } else {
            last = Some((heard, attack.transcript, attack.loss));
        }
    }
    let first_success_queries = success.as_ref().map(|_| used(&bounded));
    let (adversarial, transcript, loss) = match (success, last, best) {
        (Some((s, t)), _, _) => (s, t, f32::NAN),
        (None, Some((s, t, l)), _) => (s, t, l),
        (None, None, Some((_, s, t))) => (s, t, f32::NAN),
        (None, None, None) => {
            let heard = bounded.apply(x)?;
            (heard, original.to_string(), f32::NAN)
        }
    };
    let met = goal.is_met(original, &transcript);
    let (adversarial, transcript, snr_trajectory) = if met && plan.shrink {
        shrink(
            &mut bounded,
            adversarial,
            transcript,
            goal,
            original,
            budget,
            start_queries,
            cancel,
        )?
    } else {
        (adversarial, transcript, Vec::new())
    };
    let perturbation = adversarial.iter().zip(x).map(|(a, b)| a - b).collect();
    Ok(QueryOutcome {
        attack: AttackOutcome {
            success: goal.is_met(original, &transcript),
            adversarial,
            perturbation,
            transcript,
            steps,
            loss,
            cancelled: cancelled(),
        },
        queries: used(&bounded),
        surrogate: rounds,
        quiet,
        search_queries,
        first_success_queries,
        snr_trajectory,
    })
}

/// Bisect the scale of a successful δ with the queries left: keeps the least scale heard as a
/// success, with the SNR after each query that shrank it.
#[allow(clippy::too_many_arguments)]
fn shrink(
    bounded: &mut Bounded,
    adversarial: Vec<f32>,
    transcript: String,
    goal: &Goal,
    original: &str,
    budget: usize,
    start_queries: usize,
    cancel: &AtomicBool,
) -> Result<(Vec<f32>, String, Vec<SnrPoint>)> {
    let x = bounded.clean().to_vec();
    let delta: Vec<f32> = adversarial.iter().zip(&x).map(|(a, b)| a - b).collect();
    let point = |b: &Bounded, s: &[f32]| {
        let d: Vec<f32> = s.iter().zip(&x).map(|(a, b)| a - b).collect();
        SnrPoint {
            queries: b.queries() - start_queries,
            snr_db: snr_db(&x, &d),
        }
    };
    let mut trajectory = vec![point(bounded, &adversarial)];
    let mut kept = (adversarial, transcript);
    let (mut lo, mut hi) = (0.0f32, 1.0f32);
    for _ in 0..SHRINK_PROBES {
        if bounded.queries() - start_queries >= budget || cancel.load(Ordering::Relaxed) {
            break;
        }
        let mid = 0.5 * (lo + hi);
        let heard = bounded.scaled(&delta, mid)?;
        let t = bounded.hear(&heard)?;
        if goal.is_met(original, &t) {
            hi = mid;
            kept = (heard, t);
            trajectory.push(point(bounded, &kept.0));
        } else {
            lo = mid;
        }
    }
    Ok((kept.0, kept.1, trajectory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::ga::GaConfig;

    /// A recogniser that mishears ("something else entirely") when `measure` of δ (the heard
    /// signal minus the clean input) exceeds a threshold.
    struct Threshold {
        x: Vec<f32>,
        measure: fn(&[f32]) -> f64,
        threshold: f64,
        queries: usize,
    }

    impl Recognizer for Threshold {
        fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
            self.queries += 1;
            let d: Vec<f32> = samples.iter().zip(&self.x).map(|(a, b)| a - b).collect();
            Ok(if (self.measure)(&d) > self.threshold {
                "something else entirely".into()
            } else {
                "the clean words".into()
            })
        }
        fn queries(&self) -> usize {
            self.queries
        }
        fn describe(&self) -> String {
            "threshold".into()
        }
    }

    /// δ's RMS: a recogniser that hears any loud enough change.
    fn loudness(d: &[f32]) -> f64 {
        crate::metrics::l2(d) / (d.len() as f64).sqrt()
    }

    /// δ's largest RMS in one of the 20-ms pause frames of the bursts below (200-ms blocks 1,
    /// 3, 5, …): a front end that hears the pauses' noise as sounds.
    fn pause_loudness(d: &[f32]) -> f64 {
        crate::metrics::frame_energies(d, 320)
            .iter()
            .enumerate()
            .filter(|(f, _)| (f / 10) % 2 == 1)
            .map(|(_, e)| e.sqrt())
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_quiet_frame_prior_finds_a_recogniser_that_hears_the_pauses() {
        // Loud bursts (0.3) in 200-ms blocks 0, 2, 4, 6, 8; pauses (0.002) in between.
        let x: Vec<f32> = (0..32000usize)
            .map(|i| {
                let a = if (i / 3200).is_multiple_of(2) {
                    0.3
                } else {
                    0.002
                };
                a * (i as f32 * 0.05).sin()
            })
            .collect();
        let constraints = Constraints {
            linf: Some(0.05),
            snr_db: Some(25.0),
            ..Default::default()
        };
        // At 25 dB, δ's RMS spread evenly is 0.0095 in every frame; in the quietest half of
        // the frames (exactly the pauses) 0.013; in the quietest 30 % 0.017. The threshold
        // sits between the last two: the prior's first share (0.5) fails, its second (0.3)
        // succeeds.
        let run = |quiet: Option<QuietPrior>, budget: usize| {
            let mut rec = Threshold {
                x: x.clone(),
                measure: pause_loudness,
                threshold: 0.016,
                queries: 0,
            };
            let plan = QueryPlan {
                search: BlackBox::Ga(GaConfig {
                    linf: 0.05,
                    query_budget: budget,
                    seed: 3,
                    ..Default::default()
                }),
                constraints: constraints.clone(),
                surrogate: None,
                quiet,
                shrink: false,
            };
            let out = run_query_attack(
                &mut rec,
                &x,
                &Goal::Untargeted { min_wer: 0.5 },
                "the clean words",
                &plan,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(out.queries, rec.queries);
            out
        };
        let out = run(Some(QuietPrior { rounds: 5, seed: 1 }), 30);
        assert!(out.attack.success, "{:?}", out.quiet);
        let shares: Vec<f32> = out.quiet.iter().map(|r| r.share).collect();
        assert_eq!(shares, [0.5, 0.3], "{:?}", out.quiet);
        assert_eq!(out.first_success_queries, Some(2));
        assert_eq!(out.search_queries, 0);
        assert!(out.quiet.iter().all(|r| r.snr_db >= 25.0 - 0.05));
        let snr = snr_db(&x, &out.attack.perturbation);
        assert!(snr >= 25.0 - 0.05, "SNR {snr}");
        // Without the prior the same budget of GA queries, spread over every sample, does not.
        let plain = run(None, 30);
        assert!(!plain.attack.success && plain.quiet.is_empty());
    }

    #[test]
    fn a_success_is_shrunk_by_bisection_inside_the_bound_and_the_budget() {
        let x: Vec<f32> = (0..8000).map(|i| 0.2 * (i as f32 * 0.03).sin()).collect();
        let mut rec = Threshold {
            x: x.clone(),
            measure: loudness,
            threshold: 0.002,
            queries: 0,
        };
        let plan = QueryPlan {
            search: BlackBox::Ga(GaConfig {
                linf: 0.02,
                mutation_rate: 0.5,
                query_budget: 60,
                seed: 3,
                ..Default::default()
            }),
            constraints: Constraints {
                linf: Some(0.02),
                snr_db: Some(20.0),
                ..Default::default()
            },
            surrogate: None,
            quiet: None,
            shrink: true,
        };
        let goal = Goal::Untargeted { min_wer: 0.5 };
        let out = run_query_attack(
            &mut rec,
            &x,
            &goal,
            "the clean words",
            &plan,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert!(out.attack.success, "{:?}", out.attack.transcript);
        assert!(out.queries <= 60 && out.queries == rec.queries);
        let snr = snr_db(&x, &out.attack.perturbation);
        assert!(snr >= 20.0 - 0.05, "SNR {snr}");
        let t = &out.snr_trajectory;
        assert!(t.len() >= 2, "{t:?}");
        assert!(t
            .windows(2)
            .all(|w| w[1].snr_db > w[0].snr_db && w[1].queries > w[0].queries));
        assert_eq!(t.last().unwrap().snr_db, snr);
        // Bisection ends near the threshold: RMS of δ within a factor 2 above it.
        let rms = crate::metrics::l2(&out.attack.perturbation) / (x.len() as f64).sqrt();
        assert!(rms > 0.002 && rms < 0.004, "rms {rms}");
    }
}
