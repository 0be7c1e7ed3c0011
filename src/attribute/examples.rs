//! The examples attribution learns from: each clean recording attacked by every algorithm
//! (untargeted, on the built-in model), at a bound drawn per example from a small set so the
//! classifier sees each algorithm at several strengths, with budgets small enough to make a
//! training set on a CPU (the signature of an algorithm shows in its first steps). Every
//! example is quantised to 16 bits, as a WAV file carries it.

use super::Class;
use crate::attack::cw::CwConfig;
use crate::attack::deepfool::DeepFoolConfig;
use crate::attack::ga::GaConfig;
use crate::attack::imperceptible::ImperceptibleConfig;
use crate::attack::jsma::JsmaConfig;
use crate::attack::nes::NesConfig;
use crate::attack::universal::UniversalMode;
use crate::attack::{Attack, BlackBox};
use crate::attack::{AttackConfig, Method};
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::perturb::Constraints;
use crate::recognizer::BuiltinRecognizer;
use crate::rng::Rng;
use crate::transcribe::Transcript;
use crate::{Error, Result};
use std::sync::atomic::AtomicBool;

/// L∞ bounds an example's attack draws from.
pub const BOUNDS: [f32; 3] = [0.003, 0.006, 0.012];

/// How much work each attack gets.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Gradient steps of PGD, of CW, of JSMA's iterations and of each imperceptible stage.
    pub steps: usize,
    /// DeepFool's iterations.
    pub deepfool_iterations: usize,
    /// Queries of GA and of NES.
    pub queries: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps: 10,
            deepfool_iterations: 5,
            queries: 40,
        }
    }
}

/// Make the example of `class` from clean 16-kHz samples `x` whose greedy transcript is
/// `clean`: `seed` draws its bound (and seeds the attack); `universal` is the additive
/// universal perturbation the universal class adds (at a random offset). Returns the example
/// and the bound used (0 for clean).
pub fn make_example(
    model: &LoadedModel,
    x: &[f32],
    clean: &Transcript,
    class: Class,
    budget: &Budget,
    universal: &[f32],
    seed: u64,
) -> Result<(Vec<f32>, f32)> {
    let mut rng = Rng::new(seed);
    let eps = BOUNDS[rng.below(BOUNDS.len())];
    let quantised = |v: &[f32]| UniversalMode::Additive.apply(&[], v, 0);
    let decode = DecodeOptions::default();
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let objective = || {
        Objective::new(model, goal.clone(), &clean.text, &clean.tokens)
            .map_err(|e| Error::InvalidArgument(format!("{e} (attribution needs speech)")))
    };
    let cancel = AtomicBool::new(false);
    let linf = Constraints {
        linf: Some(eps),
        ..Default::default()
    };
    let pgd = AttackConfig {
        constraints: linf.clone(),
        steps: budget.steps,
        step_size: eps / 4.0,
        seed,
        ..Default::default()
    };
    let white = |attack: Attack| -> Result<Vec<f32>> {
        let run = attack.run(model, x, &objective()?, &cancel, &mut |_| {})?;
        Ok(run.outcome.adversarial)
    };
    let black = |search: BlackBox| -> Result<Vec<f32>> {
        let mut recognizer = BuiltinRecognizer::new(model, decode.clone());
        recognizer.expose_scores(goal.clone(), &clean.text, &clean.tokens)?;
        let out = search.run(&mut recognizer, x, &goal, &clean.text, &cancel, &mut |_| {})?;
        Ok(out.attack.adversarial)
    };
    let example = match class {
        Class::Clean => return Ok((quantised(x), 0.0)),
        Class::Universal => {
            if universal.is_empty() {
                return Err(Error::InvalidArgument(
                    "the universal class needs a universal perturbation".into(),
                ));
            }
            let offset = rng.below(universal.len());
            let peak = universal.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let k = if peak > 0.0 { eps / peak } else { 0.0 };
            let scaled: Vec<f32> = universal.iter().map(|v| v * k).collect();
            return Ok((UniversalMode::Additive.apply(&scaled, x, offset), eps));
        }
        Class::Fgsm => white(Attack::Pgd(AttackConfig {
            method: Method::Fgsm,
            ..pgd
        }))?,
        Class::Pgd => white(Attack::Pgd(pgd))?,
        Class::Cw => white(Attack::Cw(CwConfig {
            steps: budget.steps,
            search_steps: 1,
            learning_rate: eps / 4.0,
            ..Default::default()
        }))?,
        Class::Deepfool => white(Attack::DeepFool(DeepFoolConfig {
            max_iterations: budget.deepfool_iterations,
            ..Default::default()
        }))?,
        Class::Jsma => white(Attack::Jsma(JsmaConfig {
            iterations: budget.steps,
            amplitude: eps / 3.0,
            ..Default::default()
        }))?,
        Class::Imperceptible => white(Attack::Imperceptible(ImperceptibleConfig {
            stage1: pgd,
            stage1_margins_db: Vec::new(),
            steps: budget.steps,
            check_every: budget.steps.max(1),
            ..Default::default()
        }))?,
        Class::Ga => black(BlackBox::Ga(GaConfig {
            linf: eps,
            query_budget: budget.queries,
            seed,
            ..Default::default()
        }))?,
        Class::Nes => black(BlackBox::Nes(NesConfig {
            linf: eps,
            step_size: eps / 4.0,
            sigma: eps / 2.0,
            query_budget: budget.queries,
            seed,
            ..Default::default()
        }))?,
    };
    Ok((quantised(&example), eps))
}
