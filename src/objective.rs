//! What an attack wants from the recogniser: a chosen transcript, any other transcript, or
//! silence. Each goal gives a loss to minimise (with its waveform gradient) and a success test
//! on a decoded transcript.

use crate::gradient::{
    cross_entropy, loss_and_waveform_grad, margin_loss, teacher_forced_lead_skipping,
    TargetSequence,
};
use crate::mel::{FrontEnd, MelFrontEnd};
use crate::metrics::wer;
use crate::model::{BeamStop, DecodeOptions, LoadedModel};
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

impl Goal {
    /// The goal a user's choice sets: a target text, untargeted (success at `min_wer` from the
    /// original transcript) or mute; `None` when none was chosen, an error when more than one
    /// was.
    pub fn choose(
        target: Option<&str>,
        untargeted: bool,
        mute: bool,
        min_wer: f64,
    ) -> Result<Option<Goal>> {
        Ok(match (target, untargeted, mute) {
            (Some(t), false, false) => Some(Goal::Targeted(t.to_string())),
            (None, true, false) => Some(Goal::Untargeted { min_wer }),
            (None, false, true) => Some(Goal::Mute),
            (None, false, false) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "choose one goal: --target TEXT, --untargeted or --mute".into(),
                ))
            }
        })
    }
}

/// What a success must survive beyond the attack's own decode: the goal must hold under every
/// listed front end (deployed Whisper implementations fill the window past a short signal
/// differently, see [`FrontEnd`]), and where success needs the goal's tokens to lead under
/// teacher forcing ([`Objective::lead_is_required`]) they must lead their best rivals by
/// `margin` logits under each of them, so that the small numeric differences between
/// implementations do not undo it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Robustness {
    /// The front ends whose decodes must all meet the goal (the first is the attack's own).
    pub front_ends: Vec<FrontEnd>,
    /// The logit margin κ ≥ 0 the tokens must lead by.
    pub margin: f32,
    /// A targeted goal must also hold under timestamp decoding (the default of OpenAI's
    /// `transcribe` and faster-whisper's), scored as one segment `<|0.00|> text <|end|>`.
    #[serde(default)]
    pub timestamps: bool,
    /// A targeted goal must not loop (Hugging Face's beam search ranks finished hypotheses by
    /// their length-normalised log-probability and does not stop at the first ones, so a
    /// confident repetition of the target outscores the target and end-of-text): the attacks'
    /// loss makes the target said again after itself unlikely, and at success beam decodes
    /// searched and ranked as Hugging Face's ([`BeamStop::NoBetterRunning`], at length
    /// penalties 1 and [`Robustness::HF_LENGTH_PENALTY_MARGIN`]) must meet the goal under each
    /// prompt; a greedy decode, which has no such ranking to run, must leave the repetition
    /// under [`Robustness::MAX_REPEAT_LOGPROB`] instead.
    #[serde(default)]
    pub no_repeat: bool,
}

/// The decoder prompt a teacher-forced view of the goal scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// `<|notimestamps|>`: the text and end-of-text.
    Plain,
    /// Timestamp decoding: `<|0.00|>`, the text, an end timestamp and end-of-text.
    Timestamps,
    /// The plain prompt and the text, then the text twice more: the repetition a looping
    /// decoder would emit instead of end-of-text, whose log-probability must stay low.
    Repeat,
}

/// One teacher-forced view: a front end and a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// How the window is filled.
    pub front_end: FrontEnd,
    /// The prompt.
    pub prompt: Prompt,
}

impl Default for Robustness {
    /// The attack's own front end only, with no margin: success at the first decode that
    /// meets the goal.
    fn default() -> Self {
        Robustness {
            front_ends: vec![FrontEnd::Openai],
            margin: 0.0,
            timestamps: false,
            no_repeat: false,
        }
    }
}

impl Robustness {
    /// The margin `advox attack` uses by default (logits), measured against faster-whisper on
    /// corpus speech (README, "Transfer to other Whisper implementations").
    pub const DEFAULT_MARGIN: f32 = 1.0;

    /// The least mean log-probability of a strict goal's scored tokens in every view: the
    /// `logprob_threshold` (−1) under which OpenAI's `transcribe` and faster-whisper fall back
    /// to sampling at a higher temperature (and may drop the window as silence), with 0.2 of
    /// headroom for the implementations' differences (a CW example at −1.01 in faster-whisper
    /// was resampled into the original sentence).
    pub const MIN_LOGPROB: f32 = -0.8;

    /// The most mean log-probability of the target's two repetitions after itself under
    /// [`Robustness::no_repeat`]: well under what the target and end-of-text score (≥ −0.8,
    /// [`Robustness::MIN_LOGPROB`]), so that no length normalisation prefers the loop.
    pub const MAX_REPEAT_LOGPROB: f32 = -1.5;

    /// The length penalty of the second Hugging Face-ranked decode a strict targeted goal must
    /// survive ([`BeamStop::NoBetterRunning`]; transformers' own is 1): on held-out speech
    /// transformers' beam 5 with timestamps preferred a run-on of the original sentence (mean
    /// log-probability −0.443 over 34 tokens) to the target (−0.444 over 8) that advox's
    /// decode of the same ranking still returned; at 1.2 the target must reach about −0.33
    /// against that run-on.
    pub const HF_LENGTH_PENALTY_MARGIN: f32 = 1.2;

    /// Both front ends, both prompts and no loop, with `margin`.
    pub fn across_implementations(margin: f32) -> Self {
        Robustness {
            front_ends: FrontEnd::ALL.to_vec(),
            margin,
            timestamps: true,
            no_repeat: true,
        }
    }

    /// Whether it asks for more than the default (another front end, a prompt, no loop or
    /// a margin).
    pub fn is_strict(&self) -> bool {
        self.front_ends.len() > 1 || self.margin > 0.0 || self.timestamps || self.no_repeat
    }

    fn check(&self) -> Result<()> {
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the logit margin must be a finite number >= 0, got {}",
                self.margin
            )));
        }
        if self.front_ends.is_empty() {
            return Err(Error::InvalidArgument(
                "success needs at least one front end".into(),
            ));
        }
        Ok(())
    }
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
    robustness: Robustness,
    /// The timestamp view of a targeted goal and the index of its end timestamp in
    /// `targets` (present when [`Robustness::timestamps`] applies).
    timestamped: Option<(TargetSequence, usize)>,
    /// The repeat view of a targeted goal (present when [`Robustness::no_repeat`] applies):
    /// the text after itself twice, scored on both repetitions.
    repeated: Option<TargetSequence>,
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
            let language = tok.english()?;
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
        let language = tok.english()?;
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
                    return Err(Error::NothingToAttack(
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
            robustness: Robustness::default(),
            timestamped: None,
            repeated: None,
        })
    }

    /// The same objective, succeeding only as `robustness` asks, for an input of `samples`
    /// samples (the timestamp view's segment ends with it). Timestamps apply to a targeted
    /// goal only.
    pub fn with_robustness(
        mut self,
        model: &LoadedModel,
        robustness: Robustness,
        samples: usize,
    ) -> Result<Self> {
        robustness.check()?;
        let mut front_ends: Vec<FrontEnd> = Vec::new();
        for f in robustness.front_ends {
            if !front_ends.contains(&f) {
                front_ends.push(f);
            }
        }
        let targeted = matches!(self.goal, Goal::Targeted(_));
        let timestamps = robustness.timestamps && targeted;
        let no_repeat = robustness.no_repeat && targeted;
        let tok = &model.tokenizer;
        let language = tok.english()?;
        let text = &self.sequence.targets[..self.sequence.targets.len() - 1];
        self.timestamped = None;
        if timestamps {
            let seconds = samples as f32 / crate::audio::SAMPLE_RATE as f32;
            self.timestamped = Some(TargetSequence::timestamped(tok, text, language, seconds));
        }
        self.repeated = no_repeat.then(|| TargetSequence::repeated(tok, text, language, 2));
        self.robustness = Robustness {
            front_ends,
            margin: robustness.margin,
            timestamps,
            no_repeat,
        };
        Ok(self)
    }

    /// The teacher-forced views success must survive: every front end under the plain
    /// prompt, then (targeted, with [`Robustness::timestamps`]) under the timestamp prompt,
    /// then (with [`Robustness::no_repeat`]) the repeat view under the first front end.
    pub fn views(&self) -> Vec<View> {
        let mut prompts = vec![Prompt::Plain];
        if self.timestamped.is_some() {
            prompts.push(Prompt::Timestamps);
        }
        let mut views: Vec<View> = prompts
            .into_iter()
            .flat_map(|prompt| {
                self.robustness
                    .front_ends
                    .iter()
                    .map(move |&front_end| View { front_end, prompt })
            })
            .collect();
        if self.repeated.is_some() {
            views.push(View {
                front_end: self.robustness.front_ends[0],
                prompt: Prompt::Repeat,
            });
        }
        views
    }

    /// The sequence a prompt scores and the target index its lead skips.
    fn scored(&self, prompt: Prompt) -> (&TargetSequence, Option<usize>) {
        match (prompt, &self.timestamped, &self.repeated) {
            (Prompt::Timestamps, Some((s, skip)), _) => (s, Some(*skip)),
            (Prompt::Repeat, _, Some(s)) => (s, None),
            _ => (&self.sequence, None),
        }
    }

    /// The repeat view's loss: `mean log p − MAX_REPEAT_LOGPROB` of the repetitions where
    /// that is positive (they are too likely), else 0 with no gradient; no lead (+∞).
    fn evaluate_repeat(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
    ) -> Result<Evaluated> {
        let (sequence, _) = self.scored(Prompt::Repeat);
        let (value, grad) =
            loss_and_waveform_grad(&model.whisper, front, wave, &sequence.input, |logits| {
                let (ce, g) = cross_entropy(logits, &sequence.targets)?;
                let excess = -ce - Robustness::MAX_REPEAT_LOGPROB;
                if excess > 0.0 {
                    Ok((excess, g.neg()?))
                } else {
                    Ok((0.0, g.zeros_like()?))
                }
            })?;
        Ok(Evaluated {
            loss: value,
            grad: grad.to_vec1::<f32>()?,
            lead: f32::INFINITY,
        })
    }

    /// What success must survive.
    pub fn robustness(&self) -> &Robustness {
        &self.robustness
    }

    /// Whether a point whose (smallest, over front ends) teacher-forced lead is `lead` leads
    /// as success needs: by more than the margin.
    pub fn leads(&self, lead: f32) -> bool {
        lead > self.robustness.margin
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
        self.evaluate_as(model, front, wave, Prompt::Plain)
    }

    /// As [`Objective::evaluate`], scoring the sequence of `prompt` (the plain one where the
    /// objective has no timestamp view).
    pub fn evaluate_as(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        prompt: Prompt,
    ) -> Result<Evaluated> {
        if prompt == Prompt::Repeat {
            return self.evaluate_repeat(model, front, wave);
        }
        let sign = self.sign;
        let (sequence, _) = self.scored(prompt);
        self.evaluate_with(model, front, wave, prompt, |logits| {
            let (l, g) = cross_entropy(logits, &sequence.targets)?;
            Ok((sign * l, (g * sign as f64)?))
        })
    }

    /// How far under [`Robustness::MIN_LOGPROB`]'s cross-entropy the margin loss of a strict
    /// goal aims (nats per token): the floor is checked as the least over the views, each
    /// scored at its own step, and on `0880` 0.1 of headroom took CW 185 steps, 0.4 took 160.
    const CW_FLOOR_HEADROOM: f32 = 0.4;

    /// Carlini–Wagner margin form of the goal (zero-floored at −κ per token) and its waveform
    /// gradient: the target tokens must win by κ, or (untargeted) the original ones must lose.
    /// For a strict goal ([`Robustness::is_strict`]) the summed cross-entropy in excess of the
    /// log-probability floor (with 0.4 nats of headroom) is added, and the repeat view's hinge
    /// is summed over its tokens.
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
        self.evaluate_margin_as(model, front, wave, kappa, Prompt::Plain)
    }

    /// As [`Objective::evaluate_margin`], scoring the sequence of `prompt`.
    pub fn evaluate_margin_as(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        kappa: f32,
        prompt: Prompt,
    ) -> Result<Evaluated> {
        if prompt == Prompt::Repeat {
            // Summed over the repetitions' tokens, as the margin loss sums over its tokens:
            // as a mean its steps were too small beside the other views' (Adam's moments are
            // shared) and CW ended with the target looping (0880, 300 steps).
            let (sequence, _) = self.scored(Prompt::Repeat);
            let n = sequence.targets.len() as f32;
            let mut e = self.evaluate_repeat(model, front, wave)?;
            e.loss *= n;
            e.grad.iter_mut().for_each(|g| *g *= n);
            return Ok(e);
        }
        let away = self.sign < 0.0;
        // The end timestamp the lead skips: any timestamp there will do.
        let (sequence, skip) = self.scored(prompt);
        let first_timestamp = model.tokenizer.first_timestamp();
        let any_timestamp = skip.map(|i| (i, first_timestamp));
        // A strict goal also needs the tokens' mean log-probability over the floor, which a
        // lead over the best rival alone does not give (many rivals can share the rest): the
        // summed cross-entropy over what the floor allows, with headroom, is added where it is
        // exceeded.
        let floor = (self.robustness.is_strict() && !away)
            .then_some(-Robustness::MIN_LOGPROB - Self::CW_FLOOR_HEADROOM);
        self.evaluate_with(model, front, wave, prompt, |logits| {
            let (mut value, mut grad) =
                margin_loss(logits, &sequence.targets, kappa, away, any_timestamp)?;
            if let Some(floor) = floor {
                let (ce, g) = cross_entropy(logits, &sequence.targets)?;
                if ce > floor {
                    let n = sequence.targets.len() as f32;
                    value += n * (ce - floor);
                    grad = (grad + (g * n as f64)?)?;
                }
            }
            Ok((value, grad))
        })
    }

    fn evaluate_with(
        &self,
        model: &LoadedModel,
        front: &MelFrontEnd,
        wave: &Tensor,
        prompt: Prompt,
        loss: impl Fn(&Tensor) -> Result<(f32, Tensor)>,
    ) -> Result<Evaluated> {
        let (sequence, skip) = self.scored(prompt);
        let lead = Cell::new(f32::NAN);
        let (value, grad) =
            loss_and_waveform_grad(&model.whisper, front, wave, &sequence.input, |logits| {
                lead.set(teacher_forced_lead_skipping(
                    logits,
                    &sequence.targets,
                    skip,
                )?);
                loss(logits)
            })?;
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

    /// The teacher-forced lead ([`Evaluated::lead`]) at `wave`, by forward passes only: the
    /// smallest over the views success must survive.
    pub fn lead(&self, model: &LoadedModel, wave: &[f32]) -> Result<f32> {
        Ok(self.confidence(model, wave)?.0)
    }

    /// The smallest teacher-forced lead and the smallest mean log-probability of the scored
    /// tokens over the views, by forward passes only.
    pub fn confidence(&self, model: &LoadedModel, wave: &[f32]) -> Result<(f32, f32)> {
        let (mut lead, mut logprob) = (f32::INFINITY, f32::INFINITY);
        for view in self
            .views()
            .into_iter()
            .filter(|v| v.prompt != Prompt::Repeat)
        {
            let (sequence, skip) = self.scored(view.prompt);
            let logits = self.forward_logits_with(model, wave, view.front_end, sequence)?;
            lead = lead.min(teacher_forced_lead_skipping(
                &logits,
                &sequence.targets,
                skip,
            )?);
            logprob = logprob.min(-cross_entropy(&logits, &sequence.targets)?.0);
        }
        Ok((lead, logprob))
    }

    /// Whether the target said again after itself is more likely than
    /// [`Robustness::MAX_REPEAT_LOGPROB`] allows (never without the repeat view).
    pub fn repeats(&self, model: &LoadedModel, wave: &[f32]) -> Result<bool> {
        let Some(sequence) = &self.repeated else {
            return Ok(false);
        };
        let front_end = self.robustness.front_ends[0];
        let logits = self.forward_logits_with(model, wave, front_end, sequence)?;
        Ok(-cross_entropy(&logits, &sequence.targets)?.0 > Robustness::MAX_REPEAT_LOGPROB)
    }

    fn forward_logits(&self, model: &LoadedModel, wave: &[f32]) -> Result<Tensor> {
        self.forward_logits_with(model, wave, FrontEnd::Openai, &self.sequence)
    }

    fn forward_logits_with(
        &self,
        model: &LoadedModel,
        wave: &[f32],
        front_end: FrontEnd,
        sequence: &TargetSequence,
    ) -> Result<Tensor> {
        let n_mels = model.whisper.config().num_mel_bins;
        let device = model.whisper.device();
        let mel = crate::mel::log_mel_with(wave, n_mels, front_end);
        let mel = Tensor::from_vec(mel, (1, n_mels, crate::mel::N_FRAMES), device)?;
        let xa = model.whisper.encode(&mel)?;
        let input = &sequence.input;
        let tokens = Tensor::from_vec(input.clone(), (1, input.len()), device)?;
        model.whisper.decoder_logits(&xa, &tokens)
    }

    /// Whether the point `wave`, decoded by `decode` as `transcript`, meets the goal: the
    /// transcript does, where [`Objective::lead_is_required`] its tokens lead by the margin
    /// (forward passes), and the decodes under the other front ends of its [`Robustness`]
    /// meet it too.
    pub fn succeeds(
        &self,
        model: &LoadedModel,
        decode: &DecodeOptions,
        wave: &[f32],
        transcript: &str,
    ) -> Result<bool> {
        if !self.is_met(transcript) {
            return Ok(false);
        }
        // Under the repeat view a beam decode is also searched and ranked as Hugging Face's
        // beam search does (below), which is where a loop of the target wins: that decode is
        // the test, and the repeat view's log-probability only its proxy where it cannot run.
        let hf_ranked = self.repeated.is_some() && decode.beam_size > 1;
        if self.lead_is_required(decode) {
            let (lead, logprob) = self.confidence(model, wave)?;
            // A strict goal must also be decoded without the temperature fallback of OpenAI's
            // `transcribe` and faster-whisper, which resample a window whose mean token
            // log-probability is under −1.
            let confident = !self.robustness.is_strict() || logprob >= Robustness::MIN_LOGPROB;
            if !self.leads(lead) || !confident || (!hf_ranked && self.repeats(model, wave)?) {
                return Ok(false);
            }
        }
        for view in self
            .views()
            .into_iter()
            .filter(|v| v.prompt != Prompt::Repeat)
        {
            let other = DecodeOptions {
                front_end: view.front_end,
                timestamps: decode.timestamps || view.prompt == Prompt::Timestamps,
                ..decode.clone()
            };
            if other.front_end == decode.front_end && other.timestamps == decode.timestamps {
                continue;
            }
            if !self.is_met(&crate::transcribe::transcribe(model, wave, &other)?.text) {
                return Ok(false);
            }
        }
        // Hugging Face's beam search does not stop at the first `beam` ended hypotheses: under
        // [`Robustness::no_repeat`] the goal must also hold when the beam (under the first front
        // end, each prompt) is searched and ranked as it does, at its length penalty and at
        // one that favours long hypotheses more (a margin against a near tie with a run-on).
        if hf_ranked {
            let stamped = (decode.timestamps || self.timestamped.is_some()).then_some(true);
            let plain = (!decode.timestamps).then_some(false);
            for timestamps in stamped.into_iter().chain(plain) {
                for length_penalty in [Robustness::HF_LENGTH_PENALTY_MARGIN, 1.0] {
                    let hf = DecodeOptions {
                        front_end: self.robustness.front_ends[0],
                        timestamps,
                        beam_stop: BeamStop::NoBetterRunning { length_penalty },
                        ..decode.clone()
                    };
                    if !self.is_met(&crate::transcribe::transcribe(model, wave, &hf)?.text) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
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

#[cfg(test)]
mod goal_choice_tests {
    use super::Goal;

    #[test]
    fn one_goal_at_most_is_chosen() {
        assert_eq!(
            Goal::choose(Some("hi"), false, false, 0.5).unwrap(),
            Some(Goal::Targeted("hi".into()))
        );
        assert_eq!(
            Goal::choose(None, true, false, 0.7).unwrap(),
            Some(Goal::Untargeted { min_wer: 0.7 })
        );
        assert_eq!(
            Goal::choose(None, false, true, 0.5).unwrap(),
            Some(Goal::Mute)
        );
        assert_eq!(Goal::choose(None, false, false, 0.5).unwrap(), None);
        let err = Goal::choose(Some("hi"), false, true, 0.5).unwrap_err();
        assert!(err.to_string().contains("choose one goal"), "{err}");
    }
}
