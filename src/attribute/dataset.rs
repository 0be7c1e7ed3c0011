//! A labelled set of attribution examples on disk (JSON lines, one example each, appended as
//! each is made so a long run resumes where it stopped), and how a classifier fares on the
//! held-out part of it: accuracy, per-class rates, the confusion matrix and, for a class left
//! out of training, how often its examples are rejected as unknown.

use super::classifier::{Classifier, Labelled};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One example's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The clean recording it was made from.
    pub clip: String,
    /// `train` or `held-out`.
    pub split: String,
    /// Its class ([`super::Class::name`]).
    pub class: String,
    /// The L∞ bound its attack had (0 for clean).
    pub eps: f32,
    /// Seconds it took to make.
    pub seconds: f32,
    /// Its features ([`super::features::names`] order).
    pub features: Vec<f32>,
}

impl Record {
    /// As a training example (grouped by its clip).
    pub fn labelled(&self) -> Labelled {
        Labelled {
            features: self.features.clone(),
            class: self.class.clone(),
            group: self.clip.clone(),
        }
    }
}

/// The records of a file (none if it does not exist yet).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::bad_file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Append one record (a line, flushed).
pub fn append_record(path: &Path, record: &Record) -> Result<()> {
    let line = serde_json::to_string(record)
        .map_err(|e| Error::Internal(format!("attribution record: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// Replace a file's records (through a temporary file).
pub fn write_records(path: &Path, records: &[Record]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text += &serde_json::to_string(r)
            .map_err(|e| Error::Internal(format!("attribution record: {e}")))?;
        text.push('\n');
    }
    crate::atomic_file::write_bytes_atomic(path, text.as_bytes())
}

/// A stable seed for the example of `class` made from `clip`.
pub fn seed_of(clip: &str, class: &str) -> u64 {
    // FNV-1a: the same on every platform and run.
    clip.bytes()
        .chain([0u8])
        .chain(class.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// How a class fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// Examples of it.
    pub examples: usize,
    /// Attributed to it.
    pub correct: usize,
    /// Rejected as unknown.
    pub unknown: usize,
}

/// A classifier's results on a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Examples scored (of the classes the classifier knows).
    pub examples: usize,
    /// Share attributed to their own class (a rejection counts as wrong).
    pub accuracy: f64,
    /// Share attributed to their own class when rejection is off (the most likely class).
    pub accuracy_without_rejection: f64,
    /// Share rejected as unknown.
    pub unknown_rate: f64,
    /// Per class.
    pub per_class: BTreeMap<String, ClassScore>,
    /// `confusion[true][said]`, `said` a class or `unknown`.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// The classes the classifier does not know, with how their examples fared: the share
    /// rejected as unknown, and what the rest were taken for.
    pub unseen: BTreeMap<String, Unseen>,
}

/// Examples of a class the classifier was not trained on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unseen {
    /// Examples of it.
    pub examples: usize,
    /// Share rejected as unknown (the right answer).
    pub rejected: f64,
    /// What they were taken for.
    pub said: BTreeMap<String, usize>,
}

/// Score `classifier` on `records`.
pub fn evaluate(classifier: &Classifier, records: &[Record]) -> Result<Evaluation> {
    let mut per_class: BTreeMap<String, ClassScore> = BTreeMap::new();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut unseen: BTreeMap<String, Unseen> = BTreeMap::new();
    let (mut n, mut right, mut right_any, mut unknown) = (0usize, 0usize, 0usize, 0usize);
    for r in records {
        let (class, p) = classifier.attribute(&r.features)?;
        let said = class.unwrap_or("unknown").to_string();
        if !classifier.classes.contains(&r.class) {
            let u = unseen.entry(r.class.clone()).or_insert(Unseen {
                examples: 0,
                rejected: 0.0,
                said: BTreeMap::new(),
            });
            u.examples += 1;
            *u.said.entry(said).or_default() += 1;
            continue;
        }
        n += 1;
        let best = super::classifier::argmax(&p);
        right_any += usize::from(classifier.classes[best] == r.class);
        let s = per_class.entry(r.class.clone()).or_insert(ClassScore {
            examples: 0,
            correct: 0,
            unknown: 0,
        });
        s.examples += 1;
        if said == r.class {
            s.correct += 1;
            right += 1;
        }
        if class.is_none() {
            s.unknown += 1;
            unknown += 1;
        }
        *confusion
            .entry(r.class.clone())
            .or_default()
            .entry(said)
            .or_default() += 1;
    }
    for u in unseen.values_mut() {
        u.rejected = *u.said.get("unknown").unwrap_or(&0) as f64 / u.examples as f64;
    }
    let share = |k: usize| if n > 0 { k as f64 / n as f64 } else { 0.0 };
    Ok(Evaluation {
        examples: n,
        accuracy: share(right),
        accuracy_without_rejection: share(right_any),
        unknown_rate: share(unknown),
        per_class,
        confusion,
        unseen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(clip: &str, class: &str, features: Vec<f32>) -> Record {
        Record {
            clip: clip.into(),
            split: "train".into(),
            class: class.into(),
            eps: 0.0,
            seconds: 0.0,
            features,
        }
    }

    #[test]
    fn records_append_read_back_and_score() {
        let dir = std::env::temp_dir().join(format!("advox-attr-ds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("examples.jsonl");
        assert!(read_records(&path).unwrap().is_empty());
        let mut all = Vec::new();
        for i in 0..12 {
            let t = i as f32 * 0.01;
            for (class, f) in [("a", vec![1.0 + t, 0.0]), ("b", vec![0.0, 1.0 + t])] {
                let r = record(&format!("clip{i}"), class, f);
                append_record(&path, &r).unwrap();
                all.push(r);
            }
        }
        // A third class the classifier never sees, between the two.
        let odd = record("clip0", "c", vec![0.5, 0.5]);
        append_record(&path, &odd).unwrap();
        let back = read_records(&path).unwrap();
        assert_eq!(back.len(), 25);
        assert_eq!(back[..24], all[..]);
        let examples: Vec<_> = all.iter().map(Record::labelled).collect();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = Classifier::train(&names(&["a", "b"]), &names(&["x", "y"]), &examples).unwrap();
        let e = evaluate(&c, &back).unwrap();
        assert_eq!(e.examples, 24);
        assert!(e.accuracy_without_rejection > 0.99, "{e:?}");
        assert_eq!(e.unseen["c"].examples, 1);
        assert_eq!(e.unseen["c"].rejected, 1.0, "{e:?}");
        std::fs::write(&path, "{not json\n").unwrap();
        let err = read_records(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert_ne!(seed_of("a", "pgd"), seed_of("a", "fgsm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
