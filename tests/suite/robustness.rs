//! The command line under hostile conditions: Ctrl-C during a long attack keeps the best result;
//! a full disk or a read-only output directory gives a clear error naming the file and leaves
//! no file behind; a 6-hour input is refused without reading it into memory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

fn advox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_advox"))
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("advox-robust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `advox live --cloak --input-file INPUT -o OUT` (writes a 32-bit float WAV; no model needed).
fn live_cloak(input: &Path, out: &Path) -> Command {
    let mut command = advox();
    command
        .args(["live", "--cloak", "--input-file"])
        .arg(input)
        .arg("-o")
        .arg(out);
    command
}

/// The command failed, its error names `file` and contains one of `reasons`, and it did not
/// panic.
fn assert_clear_failure(out: &Output, file: &Path, reasons: &[&str], how: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "({how}) the command succeeded");
    assert!(
        err.contains(&file.display().to_string()),
        "({how}) the error does not name {}: {err}",
        file.display()
    );
    assert!(
        reasons.iter().any(|r| err.contains(r)),
        "({how}) the error does not say why: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A small tmpfs at `dir` (needs root and mount permission), unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, options: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Run `command` as if the disk filled up after `bytes`: a tmpfs of that size when this
/// process may mount one at `dir`, else a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) on
/// the child, which makes its writes fail the same way past the limit.
fn run_with_full_disk(mut command: Command, dir: &Path, bytes: u64) -> (Output, &'static str) {
    let disk = SmallDisk::mount(dir, &format!("size={bytes}"));
    let how = if disk.is_some() {
        "tmpfs"
    } else {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        "RLIMIT_FSIZE"
    };
    let out = command.output().unwrap();
    let leftovers = files_in(dir);
    drop(disk);
    assert!(
        leftovers.is_empty(),
        "({how}) files left after a failed write: {leftovers:?}"
    );
    (out, how)
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_no_file() {
    let input = common::root().join("samples/lock_the_back_door.wav");
    // `advox live` writes a 32-bit float WAV (~250 kB for this 2-s command); 64 kB of disk.
    let dir = fresh_dir("full-live");
    let out_path = dir.join("cloaked.wav");
    let (out, how) = run_with_full_disk(live_cloak(&input, &out_path), &dir, 64 * 1024);
    assert_clear_failure(
        &out,
        &out_path,
        &["No space left on device", "File too large"],
        how,
    );

    // An attack's three outputs (WAV, perturbation, report) on a disk too small for them.
    let dir = fresh_dir("full-attack");
    let out_path = dir.join("adv.wav");
    let mut command = advox();
    command
        .args(["attack"])
        .arg(&input)
        .args([
            "--target",
            "turn off the lights",
            "--eps",
            "0.01",
            "--steps",
            "1",
        ])
        .arg("-o")
        .arg(&out_path);
    let (out, how) = run_with_full_disk(command, &dir, 16 * 1024);
    let err = stderr(&out);
    assert!(!out.status.success(), "({how}) succeeded on a full disk");
    assert!(err.contains(&dir.display().to_string()), "({how}) {err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_read_only_output_directory_gives_a_clear_error_and_leaves_no_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("read-only");
    // The input lives where anyone may read it (the command may run as `nobody`, below).
    let input = dir.join("in.wav");
    std::fs::copy(common::root().join("samples/call_my_mother.wav"), &input).unwrap();
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out_path = out_dir.join("cloaked.wav");
    let mut command = live_cloak(&input, &out_path);
    // Root ignores permissions: a read-only tmpfs when it may mount one, else drop to `nobody`.
    let disk = if is_root() {
        SmallDisk::mount(&out_dir, "ro,size=1m")
    } else {
        None
    };
    if is_root() && disk.is_none() {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = command.output().unwrap();
    let leftovers = files_in(&out_dir);
    drop(disk);
    assert_clear_failure(
        &out,
        &out_path,
        &["Read-only file system", "Permission denied"],
        "read-only",
    );
    assert!(leftovers.is_empty(), "files left: {leftovers:?}");
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_stops_a_long_attack_and_writes_the_best_result() {
    let dir = fresh_dir("ctrl-c");
    let out_path = dir.join("adv.wav");
    let input = common::root().join("samples/lock_the_back_door.wav");
    let mut child = advox()
        .args(["attack"])
        .arg(&input)
        .args([
            "--target",
            "the quick brown fox jumps over the lazy dog again and again",
            "--eps",
            "0.002",
            "--steps",
            "100000",
        ])
        .arg("-o")
        .arg(&out_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Model loading takes a few seconds; then at least a handful of steps.
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the attack ended early"
    );
    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the attack did not stop within 60 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adv.json")).unwrap()).unwrap();
    assert_eq!(report["cancelled"], true, "{report}");
    let steps = report["steps"].as_u64().unwrap();
    assert!((1..100_000).contains(&steps), "steps {steps}");
    // The written example is whole and is the input plus a perturbation within the bound.
    let x = advox::audio::read_audio_16k_mono(&input).unwrap();
    let adv = advox::audio::read_audio_16k_mono(&out_path).unwrap();
    let delta = advox::audio::read_audio_16k_mono(&dir.join("adv.perturbation.wav")).unwrap();
    assert_eq!(adv.len(), x.len());
    assert_eq!(delta.len(), x.len());
    let linf = delta.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(linf > 0.0 && linf <= 0.002 + 1e-6, "‖δ‖∞ = {linf}");
    let leftovers: Vec<String> = files_in(&dir)
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_six_hour_file_is_refused_without_reading_it() {
    let dir = fresh_dir("six-hours");
    let path = dir.join("six_hours.wav");
    // A real header for 6 h of 16-bit mono at 16 kHz (691 MB), the data sparse on disk.
    let frames: u32 = 6 * 3600 * 16_000;
    let data_bytes = frames * 2;
    let mut header = Vec::new();
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&16_000u32.to_le_bytes());
    header.extend_from_slice(&32_000u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    std::fs::write(&path, &header).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(header.len() as u64 + data_bytes as u64)
        .unwrap();
    let out = advox().args(["detect"]).arg(&path).output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("too long"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
