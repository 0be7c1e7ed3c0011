//! Psychoacoustically hidden attacks on the real tiny.en model, checked on the written 16-bit
//! WAV: the imperceptible two-stage attack, and PGD under the masking bound.

use crate::common;

use advox::attack::imperceptible::{run_imperceptible, ImperceptibleConfig};
use advox::attack::AttackConfig;
use advox::masking::{MaskingConfig, MaskingThreshold};
use advox::model::DecodeOptions;
use advox::objective::{Goal, Objective};
use advox::perturb::{Constraints, MaskingBound};
use advox::text::normalize_transcript;
use advox::transcribe::transcribe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::{sample, written};

fn objective(x: &[f32], target: &str) -> Objective {
    common::objective(x, Goal::Targeted(target.into()))
}

fn stage1() -> AttackConfig {
    AttackConfig {
        constraints: Constraints {
            linf: Some(0.02),
            ..Default::default()
        },
        step_size: 0.002,
        steps: 80,
        ..Default::default()
    }
}

#[test]
fn imperceptible_attack_hides_the_perturbation_under_the_threshold() {
    let x = sample("open_the_front_door.wav");
    let target = "turn off the lights";
    let obj = objective(&x, target);
    // 80 stage-2 steps (of the default 200), measured 2026-12-01: after 40 steps 87.6 % of δ's
    // energy was masked; after 60, at least 95 % with gemm's AVX2 kernels but 94.3 % when built
    // with its AVX-512 ones (the same attack, other rounding): 60 was too close to the bound.
    // Qin et al.'s stage 1 (no masking bound): stage 2 does the hiding.
    let cfg = ImperceptibleConfig {
        stage1: stage1(),
        stage1_margins_db: Vec::new(),
        steps: 80,
        ..Default::default()
    };
    let out = run_imperceptible(
        common::model(),
        &x,
        &obj,
        &cfg,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    eprintln!(
        "imperceptible: {} steps ({} in stage 1), {:?}",
        out.attack.steps, out.stage1_steps, out.masking
    );
    assert!(out.attack.success, "transcript {:?}", out.attack.transcript);
    let back = written(&out.attack.adversarial, "imperceptible.wav");
    let text = transcribe(common::model(), &back, &DecodeOptions::default())
        .unwrap()
        .text;
    assert_eq!(normalize_transcript(&text), target);
    let delta: Vec<f32> = back.iter().zip(&x).map(|(a, b)| a - b).collect();
    let threshold = MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap();
    let stats = threshold.stats(&delta).unwrap();
    assert!(
        stats.energy_under_threshold >= 0.95,
        "only {:.1} % of the perturbation's energy is masked ({stats:?})",
        100.0 * stats.energy_under_threshold
    );
    // Stage 2 ran (stage 1 alone, plain PGD, leaves about a third of the energy unmasked here).
    assert!(out.attack.steps > out.stage1_steps);
}

#[test]
fn pgd_under_the_masking_bound_stays_under_the_threshold() {
    let x = sample("open_the_front_door.wav");
    let target = "turn off the lights";
    let obj = objective(&x, target);
    let threshold = Arc::new(MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap());
    let mut cfg = stage1();
    cfg.constraints = Constraints {
        linf: Some(0.05),
        masking: Some(MaskingBound {
            threshold: threshold.clone(),
            margin_db: 0.0,
        }),
        ..Default::default()
    };
    let out = common::attack(&x, &obj, &cfg);
    eprintln!("masked PGD: {} steps", out.steps);
    assert!(out.success, "transcript {:?}", out.transcript);
    let back = written(&out.adversarial, "pgd_masked.wav");
    let text = transcribe(common::model(), &back, &DecodeOptions::default())
        .unwrap()
        .text;
    assert_eq!(normalize_transcript(&text), target);
    let delta: Vec<f32> = back.iter().zip(&x).map(|(a, b)| a - b).collect();
    let stats = threshold.stats(&delta).unwrap();
    assert!(
        stats.energy_under_threshold >= 0.95 && stats.mean_margin_db > 3.0,
        "{stats:?}"
    );
}
