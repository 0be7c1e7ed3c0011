//! The standalone applications start on the dummy backend (no sound card needed) and exit
//! cleanly on SIGINT: headless (no display), and with their editor window open on a virtual X
//! display, confirmed by the window's title in the display's window tree. Needs Xvfb and
//! xwininfo (`.ci/run` installs xvfb and x11-utils); without them the test fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private Xvfb server, killed on drop.
struct VirtualDisplay {
    server: Child,
    name: String,
}

impl VirtualDisplay {
    /// Start one; Xvfb and xwininfo must be installed.
    fn start() -> Self {
        for tool in ["Xvfb", "xwininfo"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(
                found,
                "{tool} is not installed: the editor-window check cannot run (apt-get install \
                 xvfb x11-utils, as .ci/run does)"
            );
        }
        // Xvfb picks a free display number itself and writes it to a pipe (`-displayfd`):
        // tests that run at once (and other X servers) never share a display.
        let mut server = Command::new("sh")
            .args([
                "-c",
                "exec Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>&1 1>/dev/null",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting Xvfb");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(server.stdout.take().expect("Xvfb's pipe"));
        std::io::BufRead::read_line(&mut out, &mut line).expect("reading Xvfb's display number");
        let number: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb did not start (it wrote {line:?})"));
        VirtualDisplay {
            server,
            name: format!(":{number}"),
        }
    }

    /// Whether a window titled `title` is in this display's window tree.
    fn has_window(&self, title: &str) -> bool {
        let out = Command::new("xwininfo")
            .args(["-root", "-tree", "-display", &self.name])
            .output()
            .expect("running xwininfo");
        String::from_utf8_lossy(&out.stdout).contains(&format!("\"{title}\""))
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Start `exe`, check it keeps running (with `display`: that its window titled `title` is
/// open), send SIGINT and check it exits cleanly.
fn starts_and_stops_on_a_signal(exe: &str, title: &str, display: Option<&VirtualDisplay>) {
    let mut command = Command::new(exe);
    match display {
        Some(d) => command.env("DISPLAY", &d.name).env_remove("ADVOX_NO_GUI"),
        None => command.env_remove("DISPLAY").env("ADVOX_NO_GUI", "1"),
    };
    let mut child = command
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
    if let Some(d) = display {
        let start = Instant::now();
        while !d.has_window(title) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{exe}: no window titled {title:?} on the virtual display"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
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
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{exe}: {status}\n{log}");
    if display.is_some() {
        assert!(
            !log.contains("No GUI available"),
            "{exe} ran without its editor window:\n{log}"
        );
    }
}

#[test]
fn cloak_standalone_runs_on_the_dummy_backend() {
    let exe = env!("CARGO_BIN_EXE_advox-cloak");
    starts_and_stops_on_a_signal(exe, "advox Cloak", None);
    let display = VirtualDisplay::start();
    starts_and_stops_on_a_signal(exe, "advox Cloak", Some(&display));
    // ADVOX_CLOAK_MODE picks the mode to start in (the editor screenshots' masked noise); an
    // unknown one is refused before anything starts.
    let refused = Command::new(exe)
        .env("ADVOX_CLOAK_MODE", "loud")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("ADVOX_CLOAK_MODE") && err.contains("masked-noise"),
        "{err}"
    );
}

#[test]
fn sentinel_standalone_runs_on_the_dummy_backend() {
    let exe = env!("CARGO_BIN_EXE_advox-sentinel");
    starts_and_stops_on_a_signal(exe, "advox Sentinel", None);
    let display = VirtualDisplay::start();
    starts_and_stops_on_a_signal(exe, "advox Sentinel", Some(&display));
}
