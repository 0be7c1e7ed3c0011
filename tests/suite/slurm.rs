//! Scale-out on an existing engine: `advox eval` sharded as a Slurm array job and merged by a
//! dependent job (`bench/slurm/eval-array.sh`), on a private single-node cluster that the test
//! starts and stops (`bench/slurm/local-cluster.sh`: Debian's `slurm-wlm` and `munge`, as root;
//! `.ci/run` installs them).

use crate::common;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The local cluster, stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: String,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let script = common::root().join("bench/slurm/local-cluster.sh");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the local Slurm cluster did not start (needs root and Debian's slurm-wlm and munge, \
             which .ci/run installs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let conf = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SLURM_CONF="))
            .expect("the script prints SLURM_CONF")
            .to_string();
        Cluster {
            dir: dir.to_path_buf(),
            conf,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(common::root().join("bench/slurm/local-cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

#[test]
fn eval_shards_run_as_a_slurm_array_and_merge_in_a_dependent_job() {
    let dir = common::fresh_dir("slurm");
    let cluster = Cluster::start(&dir.join("cluster"));
    let samples = common::root().join("samples");
    let manifest = dir.join("m.csv");
    let names = ["open_the_front_door", "play_some_music", "call_my_mother"];
    let inputs: Vec<PathBuf> = names
        .iter()
        .map(|n| samples.join(format!("{n}.wav")))
        .collect();
    common::write_manifest(&manifest, &inputs);
    let out = dir.join("out");
    let submitted = Command::new(common::root().join("bench/slurm/eval-array.sh"))
        .arg(&manifest)
        .arg(&out)
        .arg("2")
        .args([
            "--attacks",
            "fgsm",
            "--eps",
            "0.02",
            "--defenses",
            "none",
            "--detectors",
            "noise-floor",
            "--no-adaptive",
        ])
        .env("SLURM_CONF", &cluster.conf)
        .env("ADVOX", env!("CARGO_BIN_EXE_advox"))
        .env(advox::model::provision::MODEL_ENV, common::model_dir())
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&submitted.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2, "array and merge job ids: {ids:?}");
    // Wait until the queue is empty (the merge job runs only after both tasks succeeded).
    let start = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-o", "%i"])
            .env("SLURM_CONF", &cluster.conf)
            .output()
            .unwrap();
        if q.status.success() && String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        let logs = std::fs::read_dir(out.join("logs"))
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "jobs still queued after 10 min; logs:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let read = |p: PathBuf| -> serde_json::Value {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            let logs = std::fs::read_to_string(out.join("logs/merge.log")).unwrap_or_default();
            panic!("{}: {e}; merge log:\n{logs}", p.display())
        });
        serde_json::from_str(&text).unwrap()
    };
    // Each array task evaluated its own shard: entries 0 and 2, and entry 1.
    for (task, indices) in [(1, vec![0, 2]), (2, vec![1])] {
        let shard = read(out.join(format!("shard-{task}/report.json")));
        let got: Vec<u64> = shard["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(got, indices, "shard {task}");
    }
    // The dependent job merged them into one report covering the manifest once.
    let merged = read(out.join("merged/report.json"));
    assert_eq!(merged["examples"], 3, "{merged}");
    let mut got: Vec<u64> = merged["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2]);
    assert!(out.join("merged/report.html").exists());
}
