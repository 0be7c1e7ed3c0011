//! A host that restarts Sentinel many times in a row, its model check on (the default), as
//! clap-validator's fuzzer does (a deactivate in one block of twenty): every activation starts
//! a worker that needs Whisper, and the process must still hold about one model's memory, not
//! one per activation (the fuzzer's process was killed for memory when each worker loaded its
//! own). Run in a child process so that its peak memory is its own.

mod host;

use host::*;

const CHILD: &str = "ADVOX_RESTARTS_CHILD";
const RESTARTS: usize = 40;

#[test]
fn rapid_restarts_of_sentinel_hold_one_model_in_memory() {
    let clap = clap_path();
    let (ok, text) = run_child("child_run", CHILD, &clap);
    assert!(ok, "the restart run failed:\n{text}");
    if let Some(line) = text.lines().find(|l| l.starts_with("peak growth")) {
        eprintln!("{line}");
    }
    assert!(text.contains("restarts passed"), "{text}");
}

/// Kibibytes on a line of /proc/self/status (`VmHWM`: peak resident memory, `VmRSS`: now).
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// Threads of this process with the model check's name.
fn monitor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "advox-monitor")
        .count()
}

/// Wait until at most `n` model-check workers are left (a stopped worker exits once it holds
/// the model).
fn wait_for_monitors(n: usize) {
    for _ in 0..6_000 {
        if monitor_threads() <= n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} model-check workers still running", monitor_threads());
}

/// The child half of the test above, which runs it; ignored by a plain `cargo test`, and a
/// failure when run without its parent.
#[test]
#[ignore = "the child half of `rapid_restarts_of_sentinel_hold_one_model_in_memory`"]
fn child_run() {
    let clap = std::env::var(CHILD)
        .unwrap_or_else(|_| panic!("run by its parent (which sets {CHILD}), not on its own"));
    let entry = entry_at(std::path::Path::new(&clap));
    let mut plugin = instance(&entry, SENTINEL);
    let x = speech("turn_off_the_lights.wav", 48_000);
    let input = vec![x[..4_800].to_vec(), x[..4_800].to_vec()];

    // One activation that loads the model and is stopped: the memory of one model.
    let run = start(&mut plugin, 48_000.0, 512, 2);
    while monitor_threads() == 0 {
        std::thread::yield_now();
    }
    let before = status_kib("VmRSS");
    run.stop(&mut plugin);
    wait_for_monitors(0);
    let one_model = status_kib("VmHWM").saturating_sub(before);

    // A burst of restarts, each with a little audio: every activation's worker wants the model
    // at once.
    for _ in 0..RESTARTS {
        let mut run = start(&mut plugin, 48_000.0, 512, 2);
        run.process(&input, &[512], &[]);
        run.stop(&mut plugin);
    }
    let mut run = start(&mut plugin, 48_000.0, 512, 2);
    run.process(&input, &[512], &[]);
    wait_for_monitors(1);
    let grown = status_kib("VmHWM").saturating_sub(before);
    run.stop(&mut plugin);
    wait_for_monitors(0);
    eprintln!(
        "peak growth: one load {} MiB, {RESTARTS} restarts {} MiB",
        one_model / 1024,
        grown / 1024
    );
    assert!(one_model > 50 * 1024, "the model was never loaded");
    assert!(
        grown < 2 * one_model + 200 * 1024,
        "{RESTARTS} restarts raised the peak by {} MiB, one model load by {} MiB",
        grown / 1024,
        one_model / 1024
    );
    eprintln!("restarts passed");
}
