//! What an attack wants from the recogniser: a chosen transcript, any other transcript, or
//! silence. Each goal gives a loss to minimise (with its waveform gradient) and a success test
//! on a decoded transcript.

use crate::gradient::{
    cross_entropy, loss_and_waveform_grad, margin_loss, teacher_forced_lead, TargetSequence,
};
use crate::mel::MelFrontEnd;
use crate::metrics::wer;
use crate::model::{DecodeOptions, LoadedModel};
use crate::text::normalize_transcript;
use crate::{Error, Result};
use candle_core::Tensor;
use std::cell::Cell;

/// One evaluation of the attack loss at a point.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// The loss to minimise.
    pub loss: f32,
    /// Its gradient w.r.t. the waveform.
    pub grad: Vec<f32>,
    /// Teacher-forced lead of the scored tokens (the target's text and end-of-text, the
    /// original transcript's, " ." and end-of-text for muting under plain decoding, end-of-text
    /// after the first timestamp under timestamp decoding): the smallest, over positions, of
    /// the scored token's logit minus the best other one. For a targeted or mute goal under
    /// plain decoding, a positive lead means greedy decoding emits those tokens and stops (see
    /// [`crate::gradient::teacher_forced_lead`]).
    pub lead: f32,
}

/// The goal of an attack.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Goal {
    /// The recogniser must output this text (compared after normalisation).
    Targeted(String),
    /// The recogniser must move away from the original transcript: success when the WER to it
    /// reaches `min_wer`.
    Untargeted {
        /// WER to the original transcript that counts as success.
        min_wer: f64,
    },
    /// The recogniser must output nothing.
    Mute,
}

/// A goal bound to a model and an input: the teacher-forced sequences it scores.
pub struct Objective {
    /// The goal.
    pub goal: Goal,
    /// Transcript of the clean input.
    pub original: String,
    sequence: TargetSequence,
    /// +1 to minimise the cross-entropy of `sequence`, −1 to maximise it.
    sign: f32,
}

impl Objective {
    /// Bind `goal` to `model` for the decoding that will judge it: as [`Objective::new`],
    /// except that muting under timestamp decoding targets an empty first segment (plain
    /// decoding never starts with end-of-text).
    pub fn for_decoding(
        model: &LoadedModel,
        goal: Goal,
        original: &str,
        original_tokens: &[u32],
        decode: &DecodeOptions,
    ) -> Result<Self> {
        let mut objective = Self::new(model, goal, original, original_tokens)?;
        if decode.timestamps && objective.goal == Goal::Mute {
            let tok = &model.tokenizer;
            let language = if tok.is_multilingual() {
                Some(tok.language_token("en")?)
            } else {
                None
            };
            objective.sequence = TargetSequence::timestamp_mute(tok, language);
        }
        Ok(objective)
    }

    /// Bind `goal` to `model`, given the clean input's transcript and tokens (for decoding
    /// without timestamps).
    pub fn new(
        model: &LoadedModel,
        goal: Goal,
        original: &str,
        original_tokens: &[u32],
    ) -> Result<Self> {
        let tok = &model.tokenizer;
        let language = if tok.is_multilingual() {
            Some(tok.language_token("en")?)
        } else {
            None
        };
        let (sequence, sign) = match &goal {
            Goal::Targeted(text) => {
                if normalize_transcript(text).is_empty() {
                    return Err(Error::InvalidArgument(
                        "the target transcript is empty; use the mute goal".into(),
                    ));
                }
                (TargetSequence::new(tok, text.trim(), language)?, 1.0)
            }
            Goal::Untargeted { min_wer } => {
                if min_wer.is_nan() || *min_wer <= 0.0 {
                    return Err(Error::InvalidArgument(
                        "the untargeted WER threshold must be above 0".into(),
                    ));
                }
                if original_tokens.is_empty() {
                    return Err(Error::InvalidArgument(
                        "the input transcribes as nothing; an untargeted attack has nothing to move away from".into(),
                    ));
                }
                (
                    TargetSequence::from_tokens(tok, original_tokens, language),
                    -1.0,
                )
            }
            // Plain decoding may not start with end-of-text (OpenAI's and faster-whisper's
            // decoders suppress it there), so the quietest transcript it can give is
            // punctuation: muting targets " ." and end-of-text, which normalises to nothing.
            Goal::Mute => (TargetSequence::new(tok, ".", language)?, 1.0),
        };
        Ok(Objective {
            goal,
            original: original.to_string(),
            sequence,
            sign,
        })
    }

    /// The decoder input and targets the loss scores.
    pub fn sequence(&self) -> &TargetSequence {
        &self.sequence
    }

    /// Loss to minimise at waveform `wave` `(n,)` and its gradient w.r.t. the waveform.
    pub fn loss_and_grad(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
    ) -> Result<(f32, Vec<f32>)> {
        let e = self.evaluate(model, front, wave)?;
        Ok((e.loss, e.grad))
    }

    /// As [`Objective::loss_and_grad`], with the teacher-forced lead of the scored tokens at
    /// the same point (see [`Evaluated::lead`]).
    pub fn evaluate(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
    ) -> Result<Evaluated> {
        let sign = self.sign;
        self.evaluate_with(model, front, wave, |logits| {
            let (l, g) = cross_entropy(logits, &self.sequence.targets)?;
            Ok((sign * l, (g * sign as f64)?))
        })
    }

    /// Carlini–Wagner margin form of the goal (zero-floored at −κ per token) and its waveform
    /// gradient: the target tokens must win by κ, or (untargeted) the original ones must lose.
    pub fn margin_and_grad(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        kappa: f32,
    ) -> Result<(f32, Vec<f32>)> {
        let e = self.evaluate_margin(model, front, wave, kappa)?;
        Ok((e.loss, e.grad))
    }

    /// As [`Objective::margin_and_grad`], with the teacher-forced lead at the same point.
    pub fn evaluate_margin(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        kappa: f32,
    ) -> Result<Evaluated> {
        let away = self.sign < 0.0;
        self.evaluate_with(model, front, wave, |logits| {
            margin_loss(logits, &self.sequence.targets, kappa, away)
        })
    }

    fn evaluate_with(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        loss: impl Fn(&Tensor) -> Result<(f32, Tensor)>,
    ) -> Result<Evaluated> {
        let lead = Cell::new(f32::NAN);
        let (value, grad) = loss_and_waveform_grad(
            &model.whisper,
            front,
            wave,
            &self.sequence.input,
            |logits| {
                lead.set(teacher_forced_lead(logits, &self.sequence.targets)?);
                loss(logits)
            },
        )?;
        Ok(Evaluated {
            loss: value,
            grad: grad.to_vec1::<f32>()?,
            lead: lead.get(),
        })
    }

    /// Whether this goal, judged by `decode`, is met only where the scored tokens lead
    /// ([`Evaluated::lead`] > 0): a targeted or mute goal under plain decoding, whose scored
    /// sequence is exactly what greedy decoding is to emit. Attacks then require the lead as
    /// part of success (so greedy decoding agrees with the beam) and decode only where it
    /// holds.
    pub fn lead_is_required(&self, decode: &DecodeOptions) -> bool {
        matches!(self.goal, Goal::Targeted(_) | Goal::Mute) && !decode.timestamps
    }

    /// The loss [`Objective::loss_and_grad`] minimises, by a forward pass only (no gradient):
    /// what a score-based black-box attack may query.
    pub fn loss(&self, model: &LoadedModel, wave: &[f32]) -> Result<f32> {
        let logits = self.forward_logits(model, wave)?;
        let (value, _) = cross_entropy(&logits, &self.sequence.targets)?;
        Ok(self.sign * value)
    }

    /// The teacher-forced lead ([`Evaluated::lead`]) at `wave`, by a forward pass only.
    pub fn lead(&self, model: &LoadedModel, wave: &[f32]) -> Result<f32> {
        let logits = self.forward_logits(model, wave)?;
        teacher_forced_lead(&logits, &self.sequence.targets)
    }

    fn forward_logits(&self, model: &LoadedModel, wave: &[f32]) -> Result<Tensor> {
        let n_mels = model.whisper.config().num_mel_bins;
        let device = model.whisper.device();
        let mel = crate::mel::log_mel(wave, n_mels);
        let mel = Tensor::from_vec(mel, (1, n_mels, crate::mel::N_FRAMES), device)?;
        let xa = model.whisper.encode(&mel)?;
        let input = &self.sequence.input;
        let tokens = Tensor::from_vec(input.clone(), (1, input.len()), device)?;
        model.whisper.decoder_logits(&xa, &tokens)
    }

    /// Whether the point `wave`, decoded by `decode` as `transcript`, meets the goal: the
    /// transcript does, and where [`Objective::lead_is_required`] its tokens lead (a forward
    /// pass).
    pub fn succeeds(
        &self,
        model: &LoadedModel,
        decode: &DecodeOptions,
        wave: &[f32],
        transcript: &str,
    ) -> Result<bool> {
        Ok(self.is_met(transcript)
            && (!self.lead_is_required(decode) || self.lead(model, wave)? > 0.0))
    }

    /// Whether a transcript meets the goal.
    pub fn is_met(&self, transcript: &str) -> bool {
        self.goal.is_met(&self.original, transcript)
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        self.goal.describe()
    }
}

/// In files a goal is its [`Goal::describe`] string.
impl From<Goal> for String {
    fn from(goal: Goal) -> String {
        goal.describe()
    }
}

impl TryFrom<String> for Goal {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Goal, String> {
        Goal::parse_description(&s).ok_or_else(|| {
            format!("{s:?} is not a goal (`targeted: \"TEXT\"`, `untargeted: WER >= X`, `mute`)")
        })
    }
}

impl Goal {
    /// The untargeted goal's WER threshold where none is given.
    pub const DEFAULT_MIN_WER: f64 = 0.5;

    /// Whether `transcript` meets the goal for an input whose clean transcript is `original`.
    pub fn is_met(&self, original: &str, transcript: &str) -> bool {
        match self {
            Goal::Targeted(text) => normalize_transcript(transcript) == normalize_transcript(text),
            Goal::Untargeted { min_wer } => wer(original, transcript) >= *min_wer,
            Goal::Mute => normalize_transcript(transcript).is_empty(),
        }
    }

    /// A short description for reports (`targeted: "text"`, `untargeted: WER >= x`, `mute`);
    /// [`Goal::parse_description`] reads it back.
    pub fn describe(&self) -> String {
        match self {
            Goal::Targeted(text) => format!("targeted: {text:?}"),
            Goal::Untargeted { min_wer } => format!("untargeted: WER >= {min_wer}"),
            Goal::Mute => "mute".to_string(),
        }
    }

    /// Read a [`Goal::describe`] string back; `None` if it is not one.
    pub fn parse_description(s: &str) -> Option<Goal> {
        let s = s.trim();
        if s == "mute" {
            return Some(Goal::Mute);
        }
        if let Some(rest) = s.strip_prefix("untargeted: WER >= ") {
            return rest
                .trim()
                .parse()
                .ok()
                .map(|min_wer| Goal::Untargeted { min_wer });
        }
        s.strip_prefix("targeted: ")
            .and_then(|q| serde_json::from_str::<String>(q).ok())
            .map(Goal::Targeted)
    }
}
