//! Detector-aware attacks: an attack that keeps what a transcript-comparing detector compares
//! consistent, so the detector has nothing to see (Carlini & Wagner 2018 on such defences;
//! Zhang et al. 2019 on temporal dependency).
//!
//! - [`Detector::Consistency`] compares the transcripts of `x` and of a transformed `T(x)`: the
//!   attack drives both to the same transcript (the gradient of `T(x)`'s loss passes back
//!   through [`Transform::backward`]).
//! - [`Detector::Temporal`] compares the transcript of the first portion of `x` with the prefix
//!   of the full transcript: the attack drives the portion to the first words of the full
//!   transcript (as many as its share of the time).
//!
//! The common transcript is the goal's target; an untargeted goal takes the transcript of the
//! undetected attack's success (the attacker first finds a success, then makes it consistent).
//! A point succeeds when every view is heard as its target (the detector then compares equal
//! transcripts) and the goal is met.

use super::transforms::Transform;
use super::Detector;
use crate::attack::channel::{averaged, objective_at, Channel};
use crate::mel::MelFrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Goal, Objective};
use crate::rng::Rng;
use crate::transcribe::{transcribe, Transcript};
use crate::Result;

/// What one view feeds the model.
#[derive(Debug, Clone, Copy)]
enum Through {
    /// The signal itself.
    Plain,
    /// The transformed signal.
    Transform(Transform),
    /// The first `n` samples.
    Prefix(usize),
}

struct View {
    through: Through,
    objective: Objective,
    target: Goal,
}

/// A transcript-comparing detector as a [`Channel`] for an attack that evades it.
pub struct DetectorChannel<'a> {
    model: &'a LoadedModel,
    views: Vec<View>,
    decode: &'a DecodeOptions,
    clean: String,
}

/// The target of a view of `n` words' share `portion`: the first `⌈portion · n⌉` words.
fn first_words(text: &str, portion: f32) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let k = ((words.len() as f32 * portion).ceil() as usize).min(words.len());
    words[..k].join(" ")
}

impl<'a> DetectorChannel<'a> {
    /// The evading attack on `detector` for `goal` on clean input `x` (clean transcript
    /// `clean`); `success` is the transcript of a plain success (the target of an untargeted
    /// goal). `None` when the detector compares no transcripts (nothing to keep consistent),
    /// or the goal is untargeted and there is no success to start from.
    pub fn new(
        detector: &Detector,
        model: &'a LoadedModel,
        x: &[f32],
        goal: &Goal,
        clean: &Transcript,
        success: Option<&str>,
        decode: &'a DecodeOptions,
    ) -> Result<Option<Self>> {
        let target = match goal {
            Goal::Targeted(t) => Goal::Targeted(t.clone()),
            Goal::Mute => Goal::Mute,
            Goal::Untargeted { .. } => match success {
                Some(t) => Goal::Targeted(t.to_string()),
                None => return Ok(None),
            },
        };
        let other = match detector {
            Detector::Consistency(t) => Through::Transform(*t),
            Detector::Temporal { portion } => {
                let n = ((x.len() as f32 * portion).round() as usize).clamp(1, x.len());
                Through::Prefix(n)
            }
            _ => return Ok(None),
        };
        let view = |through: Through, target: Goal| -> Result<View> {
            // The clean transcript of what this view feeds the model.
            let own = match through {
                Through::Plain => clean.clone(),
                Through::Transform(t) => transcribe(model, &t.apply(x)?, decode)?,
                Through::Prefix(n) => transcribe(model, &x[..n], decode)?,
            };
            Ok(View {
                through,
                objective: Objective::new(model, target.clone(), &own.text, &own.tokens)?,
                target,
            })
        };
        let other_target = match (&other, &target) {
            (Through::Prefix(_), Goal::Targeted(t)) => {
                let portion = match detector {
                    Detector::Temporal { portion } => *portion,
                    _ => 1.0,
                };
                Goal::Targeted(first_words(t, portion))
            }
            _ => target.clone(),
        };
        let views = vec![view(Through::Plain, target)?, view(other, other_target)?];
        Ok(Some(DetectorChannel {
            model,
            views,
            decode,
            clean: clean.text.clone(),
        }))
    }

    /// The transcripts the views are driven to (plain first), for reports.
    pub fn targets(&self) -> Vec<String> {
        self.views
            .iter()
            .map(|v| match &v.target {
                Goal::Targeted(t) => t.clone(),
                other => other.describe(),
            })
            .collect()
    }

    fn input(&self, through: Through, adv: &[f32]) -> Result<Vec<f32>> {
        Ok(match through {
            Through::Plain => adv.to_vec(),
            Through::Transform(t) => t.apply(adv)?,
            Through::Prefix(n) => adv[..n.min(adv.len())].to_vec(),
        })
    }
}

impl Channel for DetectorChannel<'_> {
    fn loss_and_grad(
        &self,
        front: &MelFrontEnd,
        adv: &[f32],
        _rng: &mut Rng,
    ) -> Result<(f32, Vec<f32>)> {
        // A prefix's gradient covers its samples only.
        averaged(self.views.len(), adv.len(), |i| {
            let v = &self.views[i];
            let (l, g) = objective_at(
                self.model,
                &v.objective,
                front,
                &self.input(v.through, adv)?,
            )?;
            match v.through {
                Through::Transform(t) => Ok((l, t.backward(&g)?)),
                _ => Ok((l, g)),
            }
        })
    }

    fn judge(&self, adv: &[f32], transcript: &str, plain: bool) -> Result<bool> {
        if !plain {
            return Ok(false);
        }
        for v in &self.views {
            // The plain view's transcript is the attack's own.
            let heard = match v.through {
                Through::Plain => transcript.to_string(),
                through => transcribe(self.model, &self.input(through, adv)?, self.decode)?.text,
            };
            if !v.target.is_met(&self.clean, &heard) {
                return Ok(false);
            }
        }
        // The plain view heard its target, which meets the goal.
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portion_targets_its_share_of_the_words() {
        assert_eq!(first_words("turn off the lights", 0.5), "turn off");
        assert_eq!(first_words("call my mother", 0.5), "call my");
        assert_eq!(first_words("", 0.5), "");
        assert_eq!(first_words("a b", 1.0), "a b");
    }
}
