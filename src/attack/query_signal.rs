//! `advox attack --blackbox` on one signal, short of reading and writing files: the built-in
//! model as an opaque box ([`builtin_target`]) or any [`Recognizer`], the plan from the user's
//! options, the run, and what it measured ([`QuerySignalAttack`]).

use super::plan::AttackOptions;
use super::query::{run_query_attack, QueryOutcome};
use super::{AttackKind, StepInfo};
use crate::formats::attack_report::BlackBoxStats;
use crate::model::LoadedModel;
use crate::objective::Goal;
use crate::recognizer::{BuiltinRecognizer, Recognizer};
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// A black-box attack on one signal: what it found and measured.
pub struct QuerySignalAttack {
    /// The attack (ga, nes, spsa).
    pub kind: AttackKind,
    /// The recogniser's transcript of the clean signal.
    pub original: String,
    /// The run (the example is `outcome.attack`).
    pub outcome: QueryOutcome,
    /// The recogniser and the queries, as reports record them.
    pub stats: BlackBoxStats,
    /// Wall time of the attack (seconds).
    pub seconds: f64,
    /// The seed.
    pub seed: u64,
}

/// The built-in model as the opaque box of a black-box attack on `x` towards `goal`: it
/// exposes the goal's loss as a score (no gradients). Returns it with its clean transcript.
pub fn builtin_target<'m>(
    model: &'m LoadedModel,
    options: &AttackOptions,
    goal: &Goal,
    x: &[f32],
) -> Result<(BuiltinRecognizer<'m>, String)> {
    let mut builtin = BuiltinRecognizer::new(model, options.decode());
    let (text, tokens) = builtin.transcribe_with_tokens(x)?;
    builtin.expose_scores(goal.clone(), &text, &tokens)?;
    Ok((builtin, text))
}

/// Refuse `--surrogate` without an external recogniser (`external`): against the built-in
/// model a white-box attack is the better surrogate of itself.
pub fn check_target(options: &AttackOptions, external: bool) -> Result<()> {
    if options.surrogate && !external {
        return Err(Error::InvalidArgument(
            "--surrogate attacks an external recogniser (--asr, --asr-server or --asr-cmd); \
             against the built-in model use a white-box attack (--attack)"
                .into(),
        ));
    }
    Ok(())
}

/// Attack `x` through `recognizer` (whose clean transcript is `original`) as `options` say;
/// `surrogate` is the white-box model of `--surrogate` (required with it, refused without).
#[allow(clippy::too_many_arguments)]
pub fn query_signal(
    recognizer: &mut dyn Recognizer,
    original: String,
    x: &[f32],
    goal: &Goal,
    options: &AttackOptions,
    surrogate: Option<&LoadedModel>,
    cancel: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> Result<QuerySignalAttack> {
    if options.surrogate && surrogate.is_none() {
        return Err(Error::InvalidArgument(
            "--surrogate needs the built-in model as its white-box surrogate".into(),
        ));
    }
    let plan = options.query_plan(goal, x, surrogate)?;
    let search = &plan.search;
    let start = Instant::now();
    let outcome = run_query_attack(recognizer, x, goal, &original, &plan, cancel, on_step)?;
    let seconds = start.elapsed().as_secs_f64();
    let stats = BlackBoxStats {
        recognizer: recognizer.describe(),
        score_based: recognizer.has_scores(),
        queries: outcome.queries,
        query_budget: search.budget(),
        surrogate: outcome.surrogate.clone(),
        quiet_prior: outcome.quiet.clone(),
        search_queries: outcome.search_queries,
        first_success_queries: outcome.first_success_queries,
        snr_trajectory: outcome.snr_trajectory.clone(),
    };
    Ok(QuerySignalAttack {
        kind: search.kind(),
        original,
        seed: search.seed(),
        outcome,
        stats,
        seconds,
    })
}
