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
        let heard = v.transcribe_files(model_dir, &files, None, progress)?;
        let mut per_file = heard.into_iter();
        for (r, goal) in records.iter_mut().zip(&goals) {
            let clean = per_file.next().unwrap_or_default();
            for h in &clean {
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
