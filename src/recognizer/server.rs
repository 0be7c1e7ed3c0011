//! A persistent external recogniser (`--asr-server 'CMD'`): `sh -c CMD` is started once and
//! gets one 16-bit WAV path per line on its stdin, answering each with one line on its stdout,
//! the transcript. Black-box attacks query a recogniser hundreds of times; started afresh per
//! query, most of each query is the recogniser loading its model.
//!
//! Every query waits at most the timeout for its line. A server that times out, exits, closes
//! its output or prints something that is not a transcript is killed and reported with the
//! last lines it wrote to stderr; the next query starts it again, and a query whose server
//! failed is tried once more on a fresh one before it is an error.

use super::{query_folder, Recognizer};
use crate::audio::{write_wav, WavFormat, SAMPLE_RATE};
use crate::{Error, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of the server's stderr kept for error messages.
const STDERR_LINES: usize = 5;

/// A running server.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Running {
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An external recogniser kept running between queries.
pub struct ServerRecognizer {
    command: String,
    timeout: Duration,
    dir: PathBuf,
    queries: usize,
    starts: usize,
    running: Option<Running>,
}

impl ServerRecognizer {
    /// A recogniser served by `sh -c command`, each answer awaited at most `timeout` (the
    /// first one includes the server's start). Nothing starts before the first query.
    pub fn new(command: &str, timeout: Duration) -> Result<Self> {
        if command.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "the recogniser server command is empty".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the recogniser timeout must be positive".into(),
            ));
        }
        let dir = query_folder("advox-asr-server")?;
        Ok(ServerRecognizer {
            command: command.to_string(),
            timeout,
            dir,
            queries: 0,
            starts: 0,
            running: None,
        })
    }

    /// How many times the server was started (1 when it never failed).
    pub fn starts(&self) -> usize {
        self.starts
    }

    fn fail(&self, what: String) -> Error {
        Error::InvalidArgument(format!("recogniser server `{}`: {what}", self.command))
    }

    fn start(&mut self) -> Result<Running> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.fail(format!("could not start: {e}")))?;
        self.starts += 1;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.fail("its pipes could not be opened".into()));
                }
            };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if let Ok(mut t) = keep.lock() {
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        Ok(Running {
            child,
            stdin,
            lines,
            stderr: tail,
        })
    }

    /// One query on the running server (started if need be); on failure the server is stopped.
    fn ask(&mut self, wav: &str) -> Result<String> {
        let mut running = match self.running.take() {
            Some(r) => r,
            None => self.start()?,
        };
        let answer = (|| {
            writeln!(running.stdin, "{wav}")
                .and_then(|_| running.stdin.flush())
                .map_err(|e| format!("could not send it the file: {e}"))?;
            match running.lines.recv_timeout(self.timeout) {
                Ok(Ok(line)) if line.chars().any(|c| c.is_control() && c != '\t') => {
                    Err("printed control characters, not a transcript".to_string())
                }
                Ok(Ok(line)) => Ok(line.trim().to_string()),
                Ok(Err(e)) => Err(format!("printed something that is not UTF-8 text ({e})")),
                Err(RecvTimeoutError::Timeout) => Err(format!(
                    "no answer within {:.1} s; killed",
                    self.timeout.as_secs_f64()
                )),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = running
                        .child
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    Err(format!("exited ({status}) without answering"))
                }
            }
        })();
        match answer {
            Ok(text) => {
                self.running = Some(running);
                Ok(text)
            }
            Err(what) => {
                // Give a dying server a moment to finish its last words on stderr.
                std::thread::sleep(Duration::from_millis(50));
                let tail: Vec<String> = running
                    .stderr
                    .lock()
                    .map(|t| t.iter().cloned().collect())
                    .unwrap_or_default();
                running.stop();
                let said = if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its stderr ended: {}", tail.join(" | "))
                };
                Err(self.fail(format!("{what}{said}")))
            }
        }
    }
}

impl Recognizer for ServerRecognizer {
    fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
        self.queries += 1;
        let wav = self.dir.join(format!("query-{}.wav", self.queries));
        write_wav(&wav, samples, SAMPLE_RATE, WavFormat::Pcm16, &[])?;
        let path = wav.to_string_lossy().into_owned();
        // A failed server gets one fresh start for the same query.
        let result = self.ask(&path).or_else(|first| {
            self.ask(&path)
                .map_err(|second| self.fail(format!("{first}; restarted, then: {second}")))
        });
        let _ = std::fs::remove_file(&wav);
        result
    }
    fn queries(&self) -> usize {
        self.queries
    }
    fn describe(&self) -> String {
        format!("server `{}`", self.command)
    }
}

impl Drop for ServerRecognizer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            // Closing stdin lets a well-behaved server exit; the kill covers the rest.
            drop(r.stdin);
            let mut child = r.child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone() -> Vec<f32> {
        (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.1).collect()
    }

    #[test]
    fn a_server_answers_every_query_and_starts_once() {
        // Answers with the size of each file it gets: one process for all queries.
        let mut r = ServerRecognizer::new(
            r#"while read -r p; do echo "heard $(wc -c < "$p") bytes from $$"; done"#,
            Duration::from_secs(10),
        )
        .unwrap();
        let a = r.transcribe(&tone()).unwrap();
        let b = r.transcribe(&tone()).unwrap();
        assert!(a.starts_with("heard 3244 bytes from"), "{a}");
        assert_eq!(a, b, "the same process answers both");
        assert_eq!((r.queries(), r.starts()), (2, 1));
    }

    #[test]
    fn failing_servers_are_restarted_then_reported() {
        // Exits after printing to stderr: restarted once for the query, then an error.
        let mut r = ServerRecognizer::new(
            "read -r p; echo 'model not found' >&2; exit 3",
            Duration::from_secs(10),
        )
        .unwrap();
        let e = r.transcribe(&tone()).unwrap_err().to_string();
        assert!(e.contains("exited") && e.contains("model not found"), "{e}");
        assert!(e.contains("restarted"), "{e}");
        assert_eq!(r.starts(), 2);
        // Silent: killed after the timeout (twice).
        let mut r =
            ServerRecognizer::new("read -r p; sleep 30", Duration::from_millis(300)).unwrap();
        let e = r.transcribe(&tone()).unwrap_err().to_string();
        assert!(e.contains("no answer within 0.3 s"), "{e}");
        // Garbage: control characters are not a transcript.
        let mut r = ServerRecognizer::new(
            r#"while read -r p; do printf 'a\001b\n'; done"#,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(r
            .transcribe(&tone())
            .unwrap_err()
            .to_string()
            .contains("control characters"));
        // A server that dies on one query and works on the next start answers.
        let flag = std::env::temp_dir().join(format!("advox-server-flag-{}", std::process::id()));
        let _ = std::fs::remove_file(&flag);
        let cmd = format!(
            r#"while read -r p; do if [ -e '{f}' ]; then echo ok; else touch '{f}'; exit 1; fi; done"#,
            f = flag.display()
        );
        let mut r = ServerRecognizer::new(&cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(r.transcribe(&tone()).unwrap(), "ok");
        assert_eq!(r.starts(), 2);
        let _ = std::fs::remove_file(&flag);
        assert!(ServerRecognizer::new(" ", Duration::from_secs(1)).is_err());
        assert!(ServerRecognizer::new("cat", Duration::ZERO).is_err());
    }
}
