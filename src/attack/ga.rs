//! Black-box attack on any [`Recognizer`]: a genetic algorithm with momentum mutation (after
//! Taori et al. 2019). Score-based where the recogniser exposes scores (fitness = minus the
//! goal's loss, the best candidate of each generation transcribed to test success), else on a
//! transcript-distance fitness, so it works on the built-in model used as an opaque box and on
//! external recognisers alike. Every score and every transcription is one counted query.

use super::{check_input, quantized_sum_within, AttackOutcome, StepInfo};
use crate::metrics::{cer, wer};
use crate::objective::Goal;
use crate::recognizer::Recognizer;
use crate::rng::Rng;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings of the genetic algorithm.
#[derive(Debug, Clone)]
pub struct GaConfig {
    /// Candidates per generation.
    pub population: usize,
    /// Best candidates carried over unchanged.
    pub elite: usize,
    /// Largest absolute sample value of δ.
    pub linf: f32,
    /// Initial share of samples a mutation changes.
    pub mutation_rate: f32,
    /// Momentum of the mutation-rate update.
    pub momentum: f32,
    /// Most queries to the recogniser.
    pub query_budget: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for GaConfig {
    fn default() -> Self {
        GaConfig {
            population: 10,
            elite: 2,
            linf: 0.02,
            mutation_rate: 0.01,
            momentum: 0.9,
            query_budget: 300,
            seed: 0,
        }
    }
}

/// The outcome of a black-box attack.
#[derive(Debug, Clone)]
pub struct BlackBoxOutcome {
    /// The best example (as an [`AttackOutcome`]; `steps` counts generations).
    pub attack: AttackOutcome,
    /// Queries made by this attack.
    pub queries: usize,
}

/// Fitness of a transcript (higher is better): untargeted, how far it moved from the original
/// (WER plus CER for a finer signal); targeted, minus its CER to the target; mute, minus its
/// length relative to the original.
pub fn fitness(goal: &Goal, original: &str, transcript: &str) -> f64 {
    match goal {
        Goal::Untargeted { .. } => wer(original, transcript) + 0.5 * cer(original, transcript),
        Goal::Targeted(t) => -cer(t, transcript),
        Goal::Mute => -(transcript.trim().chars().count() as f64) / original.len().max(1) as f64,
    }
}

struct Candidate {
    delta: Vec<f32>,
    fitness: f64,
    transcript: Option<String>,
}

/// Run the genetic algorithm on 16-kHz samples `x` whose clean transcript is `original`.
pub fn run_ga(
    recognizer: &mut dyn Recognizer,
    x: &[f32],
    goal: &Goal,
    original: &str,
    cfg: &GaConfig,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<BlackBoxOutcome> {
    check_input(x)?;
    if cfg.population < 2
        || cfg.elite >= cfg.population
        || !(cfg.linf.is_finite() && cfg.linf > 0.0)
    {
        return Err(Error::InvalidArgument(
            "the genetic algorithm needs a population of at least 2, fewer elites than that, \
             and a positive L∞ bound"
                .into(),
        ));
    }
    let start_queries = recognizer.queries();
    let mut rng = Rng::new(cfg.seed);
    let scored = recognizer.has_scores();
    // Score mode: the candidate's transcript is filled in when it is the generation's best.
    let evaluate = |delta: Vec<f32>, rec: &mut dyn Recognizer| -> Result<Candidate> {
        let signal = quantized_sum_within(x, &delta, Some(cfg.linf));
        if let Some(loss) = rec.score(&signal) {
            return Ok(Candidate {
                fitness: -(loss? as f64),
                delta,
                transcript: None,
            });
        }
        let transcript = rec.transcribe(&signal)?;
        Ok(Candidate {
            fitness: fitness(goal, original, &transcript),
            delta,
            transcript: Some(transcript),
        })
    };
    let budget = cfg.query_budget.max(cfg.population);
    let mut population = Vec::with_capacity(cfg.population);
    for _ in 0..cfg.population {
        let delta: Vec<f32> = x.iter().map(|_| rng.symmetric(cfg.linf)).collect();
        population.push(evaluate(delta, recognizer)?);
    }
    let mut rate = cfg.mutation_rate.clamp(1e-4, 0.5);
    let mut generation = 0;
    let mut cancelled = false;
    loop {
        population.sort_by(|a, b| b.fitness.total_cmp(&a.fitness));
        if population[0].transcript.is_none() {
            let signal = quantized_sum_within(x, &population[0].delta, Some(cfg.linf));
            population[0].transcript = Some(recognizer.transcribe(&signal)?);
        }
        let best = &population[0];
        let transcript = best.transcript.clone().unwrap_or_default();
        let success = goal.is_met(original, &transcript);
        on_step(&StepInfo {
            run: 0,
            step: generation,
            steps: budget / cfg.population,
            loss: -best.fitness as f32,
            transcript: Some(transcript),
        });
        let used = recognizer.queries() - start_queries;
        let per_generation = cfg.population - cfg.elite + usize::from(scored);
        if success || used + per_generation > budget {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        generation += 1;
        let previous_best = best.fitness;
        // Parents are drawn in proportion to softmax(fitness / temperature).
        let top = population[0].fitness;
        let weights: Vec<f64> = population
            .iter()
            .map(|c| ((c.fitness - top) / 0.1).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let pick = |rng: &mut Rng| {
            let mut r = rng.uniform() as f64 * total;
            for (i, w) in weights.iter().enumerate() {
                if r < *w {
                    return i;
                }
                r -= w;
            }
            weights.len() - 1
        };
        let mut children = Vec::with_capacity(cfg.population - cfg.elite);
        for _ in cfg.elite..cfg.population {
            let (a, b) = (pick(&mut rng), pick(&mut rng));
            let child: Vec<f32> = population[a]
                .delta
                .iter()
                .zip(&population[b].delta)
                .map(|(da, db)| {
                    let mut d = if rng.uniform() < 0.5 { *da } else { *db };
                    if rng.uniform() < rate {
                        d += rng.symmetric(cfg.linf);
                    }
                    d.clamp(-cfg.linf, cfg.linf)
                })
                .collect();
            children.push(child);
        }
        population.truncate(cfg.elite);
        for child in children {
            population.push(evaluate(child, recognizer)?);
        }
        let new_best = population
            .iter()
            .map(|c| c.fitness)
            .fold(f64::NEG_INFINITY, f64::max);
        // Momentum mutation: mutate more while the best stagnates, less while it improves.
        let change = (new_best - previous_best).abs().max(1e-3) as f32;
        rate = (cfg.momentum * rate + 0.001 / change).clamp(1e-4, 0.5);
    }
    // The sorted population's best was transcribed in the loop's last pass.
    let best = population.swap_remove(0);
    let transcript = best.transcript.unwrap_or_default();
    let adversarial = quantized_sum_within(x, &best.delta, Some(cfg.linf));
    let perturbation = adversarial.iter().zip(x).map(|(a, b)| a - b).collect();
    Ok(BlackBoxOutcome {
        attack: AttackOutcome {
            success: goal.is_met(original, &transcript),
            adversarial,
            perturbation,
            transcript,
            steps: generation,
            loss: -best.fitness as f32,
            cancelled,
        },
        queries: recognizer.queries() - start_queries,
    })
}
