//! Torture test in a real CLAP host (after clap-validator's checklist), on the plugin built with
//! nice-plug's `assert_process_allocs` and run in a child process, so an allocation in
//! `process()` aborts it: parameter automation on every sample, random block sizes 1..8192,
//! activate/deactivate cycles across sample rates from 8 to 192 kHz, state loads from random
//! bytes between activations, two minutes of silence and then a full-scale burst, and
//! processing on a different thread than the one that activated. Every output sample must be
//! finite and bounded.

mod host;

use clack_host::prelude::ClapId;
use host::*;

const CHILD: &str = "ADVOX_TORTURE_CHILD";

#[test]
fn torture() {
    let clap = alloc_checking_clap_path();
    let (ok, text) = run_child("child_run", CHILD, &clap);
    assert!(ok, "the torture run failed:\n{text}");
    assert!(text.contains("torture passed"), "{text}");
}

/// Every sample finite and within `bound`.
fn check(out: &[Vec<f32>], bound: f32, what: &str) {
    for (c, channel) in out.iter().enumerate() {
        for (i, &v) in channel.iter().enumerate() {
            assert!(
                v.is_finite() && v.abs() <= bound,
                "{what}: channel {c} sample {i} is {v}"
            );
        }
    }
}

/// The child half of `torture`, which runs it in a child process; ignored by a plain
/// `cargo test`, and a failure when run without its parent (it would check nothing).
#[test]
#[ignore = "the child half of `torture`, which runs it"]
fn child_run() {
    let clap = std::env::var(CHILD)
        .unwrap_or_else(|_| panic!("run by `torture` (which sets {CHILD}), not on its own"));
    let entry = entry_at(std::path::Path::new(&clap));
    let mut rng = advox::rng::Rng::new(7);
    for id in [CLOAK, SENTINEL] {
        let mut plugin = instance(&entry, id);
        let ids: Vec<ClapId> = params(&mut plugin).into_iter().map(|p| p.0).collect();
        // Sentinel's model check would load Whisper on a worker at every activation: off here
        // (its thread is tested elsewhere); every other parameter is automated.
        let model_check = params(&mut plugin)
            .into_iter()
            .find(|p| p.1 == "Model check")
            .map(|p| p.0);
        let automated: Vec<ClapId> = ids
            .iter()
            .copied()
            .filter(|&p| Some(p) != model_check)
            .collect();
        let off: Vec<(ClapId, f64)> = model_check.map(|p| (p, 0.0)).into_iter().collect();

        for (cycle, rate) in [8_000u32, 22_050, 44_100, 48_000, 88_200, 96_000, 192_000]
            .into_iter()
            .enumerate()
        {
            // A state from random bytes before activating: refused or accepted, never a crash.
            let garbage: Vec<u8> = (0..1 + rng.below(300))
                .map(|_| rng.below(256) as u8)
                .collect();
            let _ = load_state(&mut plugin, &garbage);
            let x = speech("turn_off_the_lights.wav", rate);
            let input = vec![x.clone(), x.iter().map(|v| -v).collect()];
            let mut run = start(&mut plugin, rate as f64, 8192, 2);
            run.process(&input, &[64], &off);
            // Parameter changes at every sample, in blocks of 1..8192 samples.
            let sizes: Vec<usize> = (0..16).map(|_| 1 + rng.below(8192)).collect();
            let mut auto_rng = advox::rng::Rng::new(cycle as u64);
            let out = run.process_automated(&input, &sizes, &mut |_, size| {
                (0..size as u32)
                    .map(|offset| {
                        let p = automated[auto_rng.below(automated.len())];
                        (offset, p, auto_rng.uniform() as f64)
                    })
                    .collect()
            });
            check(&out, 8.0, &format!("{id} at {rate} Hz under automation"));
            run.stop(&mut plugin);
        }

        // Activated on this thread, processed on another.
        let mut run = start(&mut plugin, 48_000.0, 8192, 2);
        let handle = std::thread::spawn(move || {
            // Two minutes of silence, then a second of full-scale square wave.
            let silence = vec![vec![0.0f32; 48_000 * 120]; 2];
            let quiet = run.process(&silence, &[512], &[]);
            check(&quiet, 0.1, "silence");
            let burst: Vec<f32> = (0..48_000)
                .map(|i| if (i / 50) % 2 == 0 { 1.0 } else { -1.0 })
                .collect();
            let loud = run.process(&[burst.clone(), burst], &[512, 17, 4096], &[]);
            check(&loud, 8.0, "full-scale burst");
            run
        });
        let run = handle.join().expect("the processing thread panicked");
        run.stop(&mut plugin);
        println!("{id}: tortured");
    }
    println!("torture passed");
}
