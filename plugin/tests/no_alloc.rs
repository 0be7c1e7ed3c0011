//! No allocation in either plugin's `process()`: the plugin built with nice-plug's
//! `assert_process_allocs` runs in a child process (an allocation aborts it), under parameter
//! automation, odd block sizes and a NaN burst.

mod host;

use host::*;

const CHILD: &str = "ADVOX_ALLOC_CHILD";

#[test]
fn process_does_not_allocate() {
    // Built in the debug profile even under `--release`: the checker works only there.
    let clap = alloc_checking_clap_path();
    let (ok, text) = run_child("child_process_run", CHILD, &clap);
    assert!(
        ok,
        "the child aborted (an allocation in process()?):\n{text}"
    );
    assert!(text.contains("processed without allocating"), "{text}");
}

/// The child half of `process_does_not_allocate`, which runs it in a child process; ignored by a plain
/// `cargo test`, and a failure when run without its parent (it would check nothing).
#[test]
#[ignore = "the child half of `process_does_not_allocate`, which runs it"]
fn child_process_run() {
    let clap = std::env::var(CHILD).unwrap_or_else(|_| {
        panic!("run by `process_does_not_allocate` (which sets {CHILD}), not on its own")
    });
    let entry = entry_at(std::path::Path::new(&clap));
    let mut rng = advox::rng::Rng::new(1);
    let mut blocks = 0;
    for id in [CLOAK, SENTINEL] {
        let mut plugin = instance(&entry, id);
        let ids: Vec<_> = params(&mut plugin).into_iter().map(|p| p.0).collect();
        for rate in [44_100u32, 96_000] {
            let mut x = speech("whats_the_weather_today.wav", rate);
            x[5_000..5_100].iter_mut().for_each(|v| *v = f32::NAN);
            let mut run = start(&mut plugin, rate as f64, 8192, 2);
            for chunk in x.chunks(4_000) {
                let automation: Vec<_> = ids.iter().map(|&p| (p, rng.uniform() as f64)).collect();
                let sizes = [1 + rng.below(600), 1 + rng.below(8192)];
                run.process(&[chunk.to_vec(), chunk.to_vec()], &sizes, &automation);
                blocks += 1;
            }
            run.stop(&mut plugin);
        }
    }
    // Cloak's mute mode (Mode 3; random automation never reaches it either).
    let mut cloak = instance(&entry, CLOAK);
    let mute = param_id(&mut cloak, "Mode");
    let x = speech("whats_the_weather_today.wav", 48_000);
    let mut run = start(&mut cloak, 48_000.0, 8192, 2);
    for chunk in x.chunks(4_000) {
        run.process(
            &[chunk.to_vec(), chunk.to_vec()],
            &[1 + rng.below(4_000)],
            &[(mute, 3.0)],
        );
        blocks += 1;
    }
    run.stop(&mut cloak);
    // Cloak's model mode (a stepped parameter's value is its step: Mode 2 = Model; random
    // automation never reaches it): activated in it, its audio thread feeds the worker and
    // plays the delayed input plus whatever perturbation came back, live and offline.
    let mut cloak = instance(&entry, CLOAK);
    let (mode, window) = (
        param_id(&mut cloak, "Mode"),
        param_id(&mut cloak, "Model window"),
    );
    let x = speech("whats_the_weather_today.wav", 48_000);
    let mut run = start(&mut cloak, 48_000.0, 8192, 2);
    run.process(
        &[x.clone(), x.clone()],
        &[512],
        &[(mode, 2.0), (window, 0.0)],
    );
    run.stop(&mut cloak);
    for offline in [false, true] {
        if offline {
            render_offline(&mut cloak);
        }
        let mut run = start(&mut cloak, 48_000.0, 8192, 2);
        assert_eq!(latency(&mut cloak), 480_000);
        for chunk in x.chunks(4_000) {
            run.process(
                &[chunk.to_vec(), chunk.to_vec()],
                &[1 + rng.below(4_000)],
                &[],
            );
            blocks += 1;
        }
        run.stop(&mut cloak);
    }
    println!("{blocks} chunks processed without allocating");
}
