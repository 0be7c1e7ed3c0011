//! Black-box attacks against the built-in model used as an opaque recogniser (transcripts only),
//! and transfer evaluation through the recogniser abstraction.

mod common;

use advox::attack::blackbox::{fitness, run_ga, GaConfig};
use advox::audio::read_audio_16k_mono;
use advox::model::DecodeOptions;
use advox::objective::Goal;
use advox::recognizer::{BuiltinRecognizer, Recognizer};
use std::sync::atomic::AtomicBool;

#[test]
fn genetic_algorithm_changes_the_transcript_within_its_query_budget() {
    let x = read_audio_16k_mono(&common::root().join("samples/open_the_front_door.wav")).unwrap();
    let mut asr = BuiltinRecognizer::new(common::model(), DecodeOptions::default());
    let original = asr.transcribe(&x).unwrap();
    assert_eq!(asr.queries(), 1);
    let goal = Goal::Untargeted { min_wer: 0.5 };
    let cfg = GaConfig {
        linf: 0.03,
        query_budget: 200,
        seed: 1,
        ..Default::default()
    };
    let mut generations = 0;
    let out = run_ga(
        &mut asr,
        &x,
        &goal,
        &original,
        &cfg,
        &AtomicBool::new(false),
        &mut |_| generations += 1,
    )
    .unwrap();
    assert!(out.attack.success, "still {:?}", out.attack.transcript);
    // Exact query count: the initial population, then (population − elite) per generation.
    let expected = cfg.population + out.attack.steps * (cfg.population - cfg.elite);
    assert_eq!(out.queries, expected);
    assert_eq!(asr.queries(), 1 + expected);
    assert!(out.queries <= cfg.query_budget);
    assert!(out
        .attack
        .perturbation
        .iter()
        .all(|d| d.abs() <= 0.03 + 1.0 / 32768.0));
    // The kept example really fools the recogniser (one more query).
    let again = asr.transcribe(&out.attack.adversarial).unwrap();
    assert!(goal.is_met(&original, &again), "{again:?}");
}

#[test]
fn fitness_orders_transcripts_by_the_goal() {
    let un = Goal::Untargeted { min_wer: 0.5 };
    assert!(
        fitness(&un, "open the door", "a pen the floor")
            > fitness(&un, "open the door", "open the door")
    );
    let t = Goal::Targeted("turn off the lights".into());
    assert!(fitness(&t, "x", "turn off the light") > fitness(&t, "x", "open the door"));
    assert!(
        fitness(&Goal::Mute, "open the door", "") > fitness(&Goal::Mute, "open the door", "open")
    );
}
