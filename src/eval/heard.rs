//! Independent recognisers in an evaluation: after the matrix has run, every clean input and
//! every written (16-bit) adversarial example is transcribed by each verifier (one adapter run
//! per verifier for all files, so its model loads once), and each example's goal is judged
//! against what that recogniser heard in the clean input.

use super::{AttackRecord, ExampleRecord, HeardRecord};
use crate::objective::Goal;
use crate::verify::Verifier;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Fill `clean_heard` and each attack's `heard` of `records` with what `verifiers` hear.
/// `model_dir` is the attacked model's directory (the verifiers' weights sit beside it);
/// `example_wav` names the written file of an attack on a record. A recogniser that fails on
/// a file leaves no clean transcript (the goal is then judged against advox's) and an attack
/// verdict of failure; a verifier that cannot run at all is an error.
pub fn hear(
    records: &mut [ExampleRecord],
    verifiers: &[Verifier],
    model_dir: &Path,
    example_wav: &dyn Fn(&ExampleRecord, &AttackRecord) -> PathBuf,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    // A suite's carrier is the input of several records: its path recurs, and each
    // occurrence gets the recogniser's answers (`Verifier::transcribe_files`).
    let mut files: Vec<PathBuf> = Vec::new();
    for r in records.iter() {
        files.push(PathBuf::from(&r.input));
        files.extend(r.attacks.iter().map(|a| example_wav(r, a)));
    }
    if let Some(missing) = files.iter().find(|f| !f.exists()) {
        return Err(Error::bad_file(
            missing,
            "missing: the evaluation wrote no such file",
        ));
    }
    let goals: Vec<Goal> = records
        .iter()
        .map(|r| {
            Goal::parse_description(&r.goal).ok_or_else(|| {
                Error::Internal(format!(
                    "record {} has an unreadable goal {:?}",
                    r.index, r.goal
                ))
            })
        })
        .collect::<Result<_>>()?;
    for v in verifiers {
        let mut per_file = v
            .transcribe_files(model_dir, &files, None, progress)?
            .into_iter();
        for (r, goal) in records.iter_mut().zip(&goals) {
            for h in per_file.next().unwrap_or_default() {
                if let Ok(t) = &h.text {
                    r.clean_heard.insert(h.setting(), t.clone());
                }
            }
            for a in r.attacks.iter_mut() {
                for h in per_file.next().unwrap_or_default() {
                    let setting = h.setting();
                    let original = r.clean_heard.get(&setting).unwrap_or(&r.clean_transcript);
                    let transcript = h.text.ok();
                    a.heard.insert(
                        setting,
                        HeardRecord {
                            success: transcript
                                .as_deref()
                                .is_some_and(|t| goal.is_met(original, t)),
                            transcript,
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{write_wav, WavFormat, SAMPLE_RATE};
    use std::collections::BTreeMap;

    fn attack(len_tag: f32) -> AttackRecord {
        AttackRecord {
            attack: "pgd".into(),
            eps: Some(len_tag),
            snr_bound_db: None,
            success: false,
            transcript: String::new(),
            wer: 0.0,
            cer: 0.0,
            snr_db: 0.0,
            dbx: 0.0,
            linf: 0.0,
            seconds: 0.0,
            defended: BTreeMap::new(),
            adaptive: BTreeMap::new(),
            scores: BTreeMap::new(),
            evasive: BTreeMap::new(),
            over_the_air: None,
            heard: BTreeMap::new(),
        }
    }

    fn record(index: usize, input: &Path, eps: f32) -> ExampleRecord {
        ExampleRecord {
            index,
            input: input.display().to_string(),
            goal: Goal::Untargeted { min_wer: 0.5 }.describe(),
            reference: None,
            clean_transcript: "advox".into(),
            clean_wer: None,
            clean_cer: None,
            clean_defended: BTreeMap::new(),
            clean_scores: BTreeMap::new(),
            clean_over_the_air: None,
            clean_heard: BTreeMap::new(),
            attacks: vec![attack(eps)],
        }
    }

    #[test]
    fn every_record_hears_its_input_even_when_records_share_it() {
        let dir = std::env::temp_dir().join(format!("advox-heard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The "recogniser" prints the size of the file it gets: files of other lengths are
        // heard as other words.
        let wav = |name: &str, n: usize| {
            let p = dir.join(name);
            write_wav(&p, &vec![0.1f32; n], SAMPLE_RATE, WavFormat::Pcm16, &[]).unwrap();
            p
        };
        let carrier = wav("carrier.wav", 1600);
        let a0 = wav("a0.wav", 1600);
        let a1 = wav("a1.wav", 3200);
        let mut records = vec![record(0, &carrier, 0.0), record(1, &carrier, 1.0)];
        let verifier: Verifier = "cmd:stat -c %s {wav}".parse().unwrap();
        hear(
            &mut records,
            &[verifier],
            &dir,
            &|_, a| {
                if a.eps == Some(0.0) {
                    a0.clone()
                } else {
                    a1.clone()
                }
            },
            &mut |_| {},
        )
        .unwrap();
        let clean: Vec<&BTreeMap<String, String>> =
            records.iter().map(|r| &r.clean_heard).collect();
        assert_eq!(clean[0].len(), 1, "{clean:?}");
        assert_eq!(clean[0], clean[1]);
        // Same length as the carrier: same words, no success; twice as long: heard otherwise.
        let verdict = |r: &ExampleRecord| r.attacks[0].heard.values().next().unwrap().success;
        assert!(!verdict(&records[0]));
        assert!(verdict(&records[1]));
        // A file the evaluation did not write is named.
        let err = hear(
            &mut records,
            &[],
            &dir,
            &|_, _| dir.join("gone.wav"),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("gone.wav"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
