//! The standalone applications start on the dummy backend (no sound card needed) and exit
//! cleanly on SIGINT.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn starts_and_stops_on_a_signal(exe: &str) {
    let mut child = Command::new(exe)
        .args([
            "--backend",
            "dummy",
            "--sample-rate",
            "48000",
            "--period-size",
            "512",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the standalone");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{exe} exited on its own"
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{exe} did not exit within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{exe}: {status}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cloak_standalone_runs_on_the_dummy_backend() {
    starts_and_stops_on_a_signal(env!("CARGO_BIN_EXE_advox-cloak"));
}

#[test]
fn sentinel_standalone_runs_on_the_dummy_backend() {
    starts_and_stops_on_a_signal(env!("CARGO_BIN_EXE_advox-sentinel"));
}
