//! From a user's choices to a universal perturbation: [`UniversalSettings`] holds what
//! `advox universal` (and the Python package's `universal`) was given and fills in the
//! library's defaults; [`judge_against_noise`] measures a perturbation next to random noise of
//! the same bound and length.

use super::universal::{
    evaluate_universal_shaped, prepare, MuteDecoding, Shaping, UniversalConfig, UniversalMode,
    Utterance,
};
use crate::audio::SAMPLE_RATE;
use crate::formats::universal_sidecar::{
    DecodingJudgement, ModelJudgement, UniversalJudgement, UniversalSidecar,
};
use crate::mel::FrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::Goal;
use crate::rng::Rng;
use crate::{Error, Result};

/// L∞ bound of a universal perturbation without `--eps`.
pub const UNIVERSAL_LINF: f32 = 0.02;

/// A user's settings of universal training; `None` means the mode's default.
#[derive(Debug, Clone)]
pub struct UniversalSettings {
    /// Additive or prefix-mute.
    pub mode: UniversalMode,
    /// The goal chosen (additive: default untargeted at `min_wer`; the mute modes always mute).
    pub goal: Option<Goal>,
    /// WER that counts as an untargeted success.
    pub min_wer: f64,
    /// `--eps`: L∞ bound (default [`UNIVERSAL_LINF`]).
    pub eps: Option<f32>,
    /// `--length-s`: length in seconds, in (0, 30] (default 0.64 prefix-mute, 1.0 additive).
    pub length_s: Option<f32>,
    /// `--steps`: minibatch steps.
    pub steps: usize,
    /// `--batch`: utterances per minibatch.
    pub batch: usize,
    /// `--step-size`: largest sample change of one Adam step (default per mode).
    pub step_size: Option<f32>,
    /// `--seed` of every random choice.
    pub seed: u64,
    /// `--snr-db` (additive): scaled where applied to keep this SNR to each input.
    pub snr_db: Option<f32>,
    /// `--masking-margin-db` (additive): projected under each input's masking threshold.
    pub masking_margin_db: Option<f32>,
    /// `--timestamps`: judge (and train a mute goal) against timestamp decoding; always on
    /// for prefix-mute.
    pub timestamps: bool,
    /// `--beam`: beam size of the evaluations.
    pub beam: usize,
    /// `--front-ends`: the front ends training takes turns over (default OpenAI's).
    pub front_ends: Option<Vec<FrontEnd>>,
    /// `--max-shift-s` (mute modes): up to this much digital silence before each training
    /// input (default none).
    pub max_shift_s: Option<f32>,
    /// `--decodings` (mute modes): the decodings to mute, taking turns in training (default
    /// timestamps alone); the first is the one the results are judged with.
    pub decodings: Option<Vec<MuteDecoding>>,
}

impl UniversalSettings {
    /// The goal: the mute modes mute (a target is an error), the additive mode pursues the chosen
    /// goal, untargeted by default.
    pub fn goal(&self) -> Result<Goal> {
        match (self.mode, &self.goal) {
            (m, Some(Goal::Targeted(_))) if m.is_mute_segment() => Err(Error::InvalidArgument(
                "prefix-mute and overlay-mute mute; drop --target".into(),
            )),
            (m, _) if m.is_mute_segment() => Ok(Goal::Mute),
            (_, Some(goal)) => Ok(goal.clone()),
            (_, None) => Ok(Goal::Untargeted {
                min_wer: self.min_wer,
            }),
        }
    }

    /// The training configuration, defaults filled in.
    pub fn config(&self) -> Result<UniversalConfig> {
        let base = match self.mode {
            UniversalMode::PrefixMute => UniversalConfig::prefix_mute(),
            UniversalMode::OverlayMute => UniversalConfig {
                mode: UniversalMode::OverlayMute,
                ..UniversalConfig::prefix_mute()
            },
            UniversalMode::Additive => UniversalConfig::additive(),
        };
        let length = match self.length_s {
            Some(s) if !(s.is_finite() && s > 0.0 && s <= 30.0) => {
                return Err(Error::InvalidArgument(format!(
                    "--length-s must be in (0, 30], got {s}"
                )))
            }
            Some(s) => (s * SAMPLE_RATE as f32).round() as usize,
            None => base.length,
        };
        let max_shift = match self.max_shift_s {
            Some(s) if !(s.is_finite() && (0.0..=1.0).contains(&s)) => {
                return Err(Error::InvalidArgument(format!(
                    "--max-shift-s must be in [0, 1], got {s}"
                )))
            }
            Some(_) if !self.mode.is_mute_segment() => {
                return Err(Error::InvalidArgument(
                    "--max-shift-s applies to the mute modes (prefix-mute, overlay-mute)".into(),
                ))
            }
            Some(s) => (s * SAMPLE_RATE as f32).round() as usize,
            None => 0,
        };
        let decodings = match &self.decodings {
            Some(_) if !self.mode.is_mute_segment() => {
                return Err(Error::InvalidArgument(
                    "--decodings applies to the mute modes (prefix-mute, overlay-mute); the \
                     additive mode is judged plain, or with --timestamps"
                        .into(),
                ))
            }
            Some(d) if d.is_empty() => {
                return Err(Error::InvalidArgument(
                    "--decodings needs at least one of timestamps, plain".into(),
                ))
            }
            Some(d) => once_each(d),
            None => base.decodings.clone(),
        };
        if self.mode.is_mute_segment()
            && self.timestamps
            && decodings.first() != Some(&MuteDecoding::Timestamps)
        {
            return Err(Error::InvalidArgument(
                "--timestamps does not apply: the mute modes are judged with the first of \
                 --decodings"
                    .into(),
            ));
        }
        if self.steps == 0 || self.batch == 0 || self.beam == 0 {
            return Err(Error::InvalidArgument(
                "--steps, --batch and --beam must be at least 1".into(),
            ));
        }
        Ok(UniversalConfig {
            length,
            linf: self.eps.unwrap_or(UNIVERSAL_LINF),
            steps: self.steps,
            batch: self.batch,
            step_size: self.step_size.unwrap_or(base.step_size),
            seed: self.seed,
            shaping: Shaping {
                snr_db: self.snr_db,
                masking_margin_db: self.masking_margin_db,
            },
            front_ends: self.front_ends.clone().unwrap_or(base.front_ends),
            max_shift,
            decodings,
            ..base
        })
    }

    /// The decoding of the clean transcripts and the evaluations: `--timestamps` or plain for
    /// the additive mode, the first of `--decodings` (default timestamps) for the mute modes.
    pub fn decode(&self) -> DecodeOptions {
        let timestamps = match (&self.decodings, self.mode.is_mute_segment()) {
            (_, false) => self.timestamps,
            (Some(d), true) => d.first() != Some(&MuteDecoding::Plain),
            (None, true) => true,
        };
        DecodeOptions {
            beam_size: self.beam.max(1),
            timestamps,
            ..Default::default()
        }
    }

    /// The mute modes' further decodings (after the first of `--decodings`), each judged on
    /// its own.
    pub fn further_decodings(&self) -> Vec<MuteDecoding> {
        match &self.decodings {
            Some(d) if self.mode.is_mute_segment() => once_each(d).into_iter().skip(1).collect(),
            _ => Vec::new(),
        }
    }
}

/// `decodings` in order, each once.
fn once_each(decodings: &[MuteDecoding]) -> Vec<MuteDecoding> {
    let mut out: Vec<MuteDecoding> = Vec::new();
    for d in decodings {
        if !out.contains(d) {
            out.push(*d);
        }
    }
    out
}

/// Judge `delta` on `set` (as [`evaluate_universal_shaped`] does) next to a control: uniform
/// noise within ±`cfg.linf` of the same length, drawn from `cfg.seed`.
pub fn judge_against_noise(
    model: &LoadedModel,
    set: &[Utterance],
    cfg: &UniversalConfig,
    delta: &[f32],
    decode: &DecodeOptions,
) -> Result<UniversalJudgement> {
    let mut rng = Rng::new(cfg.seed ^ 0xC0);
    let noise: Vec<f32> = (0..delta.len()).map(|_| rng.symmetric(cfg.linf)).collect();
    let judge = |d: &[f32]| {
        evaluate_universal_shaped(model, set, cfg.mode, d, &cfg.shaping, decode, cfg.seed)
    };
    Ok(UniversalJudgement {
        perturbation: judge(delta)?,
        random_noise: judge(&noise)?,
    })
}

/// Judge a mute segment under each of `settings`' further decodings
/// ([`UniversalSettings::further_decodings`]) on the training set and the held-out one, each
/// with its clean transcripts taken again in that decoding, next to the same noise control.
pub fn judge_other_decodings(
    model: &LoadedModel,
    settings: &UniversalSettings,
    cfg: &UniversalConfig,
    delta: &[f32],
    train: &[Utterance],
    eval: Option<&[Utterance]>,
) -> Result<Vec<DecodingJudgement>> {
    judge_decodings(
        model,
        &settings.further_decodings(),
        settings.beam,
        cfg,
        delta,
        train,
        eval,
    )
}

/// A mute segment trained for several models (see
/// [`super::universal::train_universal_ensemble`]) judged on one after the first: under every
/// decoding it was trained against (`cfg.decodings`), the sets' clean transcripts taken by that
/// model.
pub fn judge_other_model(
    model: &LoadedModel,
    settings: &UniversalSettings,
    cfg: &UniversalConfig,
    delta: &[f32],
    train: &[Utterance],
    eval: Option<&[Utterance]>,
) -> Result<ModelJudgement> {
    Ok(ModelJudgement {
        model: model.id(),
        decodings: judge_decodings(
            model,
            &cfg.decodings,
            settings.beam,
            cfg,
            delta,
            train,
            eval,
        )?,
    })
}

/// A mute segment under each of `decodings` (beam `beam`), the sets' clean transcripts taken
/// again by `model` in that decoding.
fn judge_decodings(
    model: &LoadedModel,
    decodings: &[MuteDecoding],
    beam: usize,
    cfg: &UniversalConfig,
    delta: &[f32],
    train: &[Utterance],
    eval: Option<&[Utterance]>,
) -> Result<Vec<DecodingJudgement>> {
    let again = |set: &[Utterance], decode: &DecodeOptions| -> Result<UniversalJudgement> {
        let raw = set
            .iter()
            .map(|u| (u.name.clone(), u.samples.clone()))
            .collect();
        let set = prepare(model, raw, &Goal::Mute, decode)?;
        judge_against_noise(model, &set, cfg, delta, decode)
    };
    decodings
        .iter()
        .map(|&decoding| {
            let decode = decoding.decode(beam);
            Ok(DecodingJudgement {
                decoding,
                train: again(train, &decode)?,
                eval: eval.map(|e| again(e, &decode)).transpose()?,
            })
        })
        .collect()
}

/// Judge a perturbation trained on `models` with `settings` (made into `cfg`) everywhere they
/// ask, and make its sidecar: on `train` and `eval` with the first model and decoding next to
/// noise, under the mute modes' further decodings, and on every further model. `log(how,
/// utterances, judgement)` hears each judgement as it is made (`how`: empty for the first,
/// else `", plain decoding"` or `", MODEL, timestamps decoding"`). The caller adds the
/// manifests' names and the starting perturbation where there are files.
#[allow(clippy::too_many_arguments)]
pub fn judge_into_sidecar(
    models: &[&LoadedModel],
    settings: &UniversalSettings,
    cfg: &UniversalConfig,
    delta: &[f32],
    train: &[Utterance],
    eval: Option<&[Utterance]>,
    train_seconds: f64,
    log: &mut dyn FnMut(&str, usize, &UniversalJudgement),
) -> Result<UniversalSidecar> {
    let Some(&model) = models.first() else {
        return Err(Error::InvalidArgument("judging needs a model".into()));
    };
    let decode = settings.decode();
    let mut first = |set: &[Utterance]| -> Result<UniversalJudgement> {
        let judged = judge_against_noise(model, set, cfg, delta, &decode)?;
        log("", set.len(), &judged);
        Ok(judged)
    };
    let train_judged = first(train)?;
    let eval_judged = eval.map(&mut first).transpose()?;
    let mut log_decodings = |model: &str, judged: &[DecodingJudgement]| {
        for other in judged {
            let how = format!("{model}, {} decoding", other.decoding.name());
            log(&how, train.len(), &other.train);
            if let (Some(set), Some(judged)) = (eval, &other.eval) {
                log(&how, set.len(), judged);
            }
        }
    };
    let other_decodings = judge_other_decodings(model, settings, cfg, delta, train, eval)?;
    log_decodings("", &other_decodings);
    let other_models = models[1..]
        .iter()
        .map(|m| {
            let judged = judge_other_model(m, settings, cfg, delta, train, eval)?;
            log_decodings(&format!(", {}", judged.model), &judged.decodings);
            Ok(judged)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(UniversalSidecar {
        other_decodings,
        other_models,
        ..sidecar(
            cfg,
            &settings.goal()?,
            model.id(),
            &decode,
            train_seconds,
            train_judged,
            eval_judged,
        )
    })
}

/// The sidecar of a perturbation trained with `cfg` towards `goal` on `model_id`, judged with
/// `decode` on the training set (`train`) and a held-out one (`eval`), in `train_seconds`;
/// the caller adds the manifests' names where there are files.
pub fn sidecar(
    cfg: &UniversalConfig,
    goal: &Goal,
    model_id: String,
    decode: &DecodeOptions,
    train_seconds: f64,
    train: UniversalJudgement,
    eval: Option<UniversalJudgement>,
) -> UniversalSidecar {
    UniversalSidecar {
        snr_db: cfg.shaping.snr_db,
        masking_margin_db: cfg.shaping.masking_margin_db,
        goal: Some(goal.clone()),
        model: Some(model_id),
        steps: Some(cfg.steps),
        batch: Some(cfg.batch),
        step_size: Some(cfg.step_size),
        decoding: Some(
            if decode.timestamps {
                "timestamps"
            } else {
                "plain"
            }
            .into(),
        ),
        seed: Some(cfg.seed),
        train_seconds: Some(train_seconds),
        train: Some(train),
        eval,
        front_ends: (cfg.front_ends != [FrontEnd::Openai]).then(|| cfg.front_ends.clone()),
        max_shift_s: (cfg.max_shift > 0).then(|| cfg.max_shift as f32 / SAMPLE_RATE as f32),
        decodings: (cfg.mode.is_mute_segment() && cfg.decodings != [MuteDecoding::Timestamps])
            .then(|| cfg.decodings.clone()),
        ..UniversalSidecar::new(SAMPLE_RATE, cfg.length, cfg.mode, Some(cfg.linf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: UniversalMode) -> UniversalSettings {
        UniversalSettings {
            mode,
            goal: None,
            min_wer: 0.5,
            eps: None,
            length_s: None,
            steps: 10,
            batch: 2,
            step_size: None,
            seed: 0,
            snr_db: None,
            masking_margin_db: None,
            timestamps: false,
            beam: 5,
            front_ends: None,
            max_shift_s: None,
            decodings: None,
        }
    }

    #[test]
    fn choices_become_goals_and_configurations_with_the_modes_defaults() {
        let additive = settings(UniversalMode::Additive);
        assert_eq!(additive.goal().unwrap(), Goal::Untargeted { min_wer: 0.5 });
        let cfg = additive.config().unwrap();
        assert_eq!((cfg.length, cfg.linf, cfg.step_size), (16_000, 0.02, 0.002));
        assert!(!additive.decode().timestamps);
        let prefix = settings(UniversalMode::PrefixMute);
        assert_eq!(prefix.goal().unwrap(), Goal::Mute);
        assert_eq!(prefix.config().unwrap().length, 10_240);
        assert!(prefix.decode().timestamps);
        let overlay = settings(UniversalMode::OverlayMute);
        assert_eq!(overlay.goal().unwrap(), Goal::Mute);
        let cfg = overlay.config().unwrap();
        assert_eq!((cfg.mode, cfg.length), (UniversalMode::OverlayMute, 10_240));
        assert!(overlay.decode().timestamps);
        for mode in [UniversalMode::PrefixMute, UniversalMode::OverlayMute] {
            let targeted = UniversalSettings {
                goal: Some(Goal::Targeted("x".into())),
                ..settings(mode)
            };
            assert!(targeted
                .goal()
                .unwrap_err()
                .to_string()
                .contains("overlay-mute mute"));
        }
        for s in [0.0, 31.0, f32::NAN] {
            let bad = UniversalSettings {
                length_s: Some(s),
                ..settings(UniversalMode::Additive)
            };
            assert!(bad.config().is_err(), "{s}");
        }
        let half = UniversalSettings {
            length_s: Some(0.5),
            eps: Some(0.01),
            ..settings(UniversalMode::Additive)
        };
        let cfg = half.config().unwrap();
        assert_eq!((cfg.length, cfg.linf), (8_000, 0.01));
        let no_steps = UniversalSettings {
            steps: 0,
            ..settings(UniversalMode::Additive)
        };
        assert!(no_steps.config().is_err());
    }

    #[test]
    fn mute_segments_take_the_decodings_to_mute_and_are_judged_with_the_first() {
        use MuteDecoding::{Plain, Timestamps};
        let with = |mode, d: Vec<MuteDecoding>, timestamps| UniversalSettings {
            decodings: Some(d),
            timestamps,
            ..settings(mode)
        };
        // Default: timestamps alone.
        let prefix = settings(UniversalMode::PrefixMute);
        assert_eq!(prefix.config().unwrap().decodings, [Timestamps]);
        assert!(prefix.further_decodings().is_empty());
        // Both, repeated names once; judged with timestamps, then plain.
        let both = with(
            UniversalMode::PrefixMute,
            vec![Timestamps, Plain, Timestamps],
            false,
        );
        assert_eq!(both.config().unwrap().decodings, [Timestamps, Plain]);
        assert!(both.decode().timestamps);
        assert_eq!(both.further_decodings(), [Plain]);
        // Plain first: judged plain, and --timestamps contradicts it.
        let plain = with(UniversalMode::OverlayMute, vec![Plain, Timestamps], false);
        assert!(!plain.decode().timestamps);
        assert_eq!(plain.further_decodings(), [Timestamps]);
        let contradiction = with(UniversalMode::PrefixMute, vec![Plain], true);
        assert!(contradiction
            .config()
            .unwrap_err()
            .to_string()
            .contains("--timestamps does not apply"));
        // Not for the additive mode, and not none.
        let additive = with(UniversalMode::Additive, vec![Timestamps], false);
        assert!(additive
            .config()
            .unwrap_err()
            .to_string()
            .contains("--decodings applies to the mute modes"));
        assert!(with(UniversalMode::PrefixMute, vec![], false)
            .config()
            .is_err());
        assert_eq!("plain".parse::<MuteDecoding>().unwrap(), Plain);
        assert!("segments"
            .parse::<MuteDecoding>()
            .unwrap_err()
            .to_string()
            .contains("timestamps, plain"));
    }
}
