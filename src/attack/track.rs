//! What every white-box attack loop shares: the checked input and its front end, cancellation,
//! the count of gradient steps, decoding and judging points, the lead gate, and the kept point
//! (best so far, with a stand-in for points scored but never decoded) that becomes the
//! [`AttackOutcome`]. Each algorithm only supplies its step rule and what "better" means.

use super::{check_input, quantized_sum, AttackOutcome};
use crate::mel::MelFrontEnd;
use crate::model::{DecodeOptions, LoadedModel};
use crate::objective::{Evaluated, Objective, Prompt, View};
use crate::transcribe::transcribe;
use crate::Result;
use candle_core::{Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// Which point an attack keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// A success before a failure, then the lower rank; the lowest-loss point scored but not
    /// decoded stands in (decoded at the end) when no decoded point succeeded (PGD).
    LowestLoss,
    /// The success of lowest rank; failing one, the latest point, decoded at the end if it
    /// was scored after the last decode (CW, JSMA, DeepFool).
    Latest,
}

/// When a lead-gated attack decodes the point it just scored: where its tokens lead, and then
/// not again for `every` steps while the beam still disagrees.
pub(crate) struct LeadGate {
    every: usize,
    next: usize,
}

impl LeadGate {
    pub(crate) fn new(every: usize) -> Self {
        LeadGate {
            every: every.max(1),
            next: 1,
        }
    }

    /// Whether to decode at `step`, given whether the point leads
    /// ([`Tracker::leads`]).
    pub(crate) fn due(&mut self, step: usize, leads: bool) -> bool {
        let due = leads && step >= self.next;
        if due {
            self.next = step + self.every;
        }
        due
    }
}

/// A decoded point.
#[derive(Debug, Clone)]
struct Candidate {
    adversarial: Vec<f32>,
    success: bool,
    transcript: String,
    loss: f32,
    rank: f32,
    at: usize,
}

/// A point scored but not decoded.
struct Standby {
    adversarial: Vec<f32>,
    loss: f32,
    lead: f32,
    at: usize,
}

/// The shared state of one attack on one input.
pub(crate) struct Tracker<'a> {
    model: &'a LoadedModel,
    x: &'a [f32],
    objective: &'a Objective,
    decode: &'a DecodeOptions,
    /// The objective's views ([`Objective::views`]), scored in turn.
    views: Vec<View>,
    /// One mel front end per view.
    fronts: Vec<MelFrontEnd>,
    /// The latest lead under each view (NaN until scored).
    leads: Vec<f32>,
    keep: Keep,
    lead_required: bool,
    best: Option<Candidate>,
    standby: Option<Standby>,
    steps: usize,
    /// Points offered or stood by so far: orders them in time.
    seen: usize,
    cancelled: bool,
}

impl<'a> Tracker<'a> {
    /// Check `x` (one 30-s window) and set up; success is judged with `decode`.
    pub(crate) fn new(
        model: &'a LoadedModel,
        x: &'a [f32],
        objective: &'a Objective,
        decode: &'a DecodeOptions,
        keep: Keep,
    ) -> Result<Self> {
        check_input(x)?;
        // One set of constant tensors, shared by every view's front end.
        let base = MelFrontEnd::new(model.whisper.config().num_mel_bins, model.whisper.device())?;
        let views = objective.views();
        let fronts: Vec<MelFrontEnd> = views
            .iter()
            .map(|v| base.clone().as_kind(v.front_end))
            .collect();
        Ok(Tracker {
            model,
            x,
            objective,
            decode,
            leads: vec![f32::NAN; fronts.len()],
            views,
            fronts,
            keep,
            lead_required: objective.lead_is_required(decode),
            best: None,
            standby: None,
            steps: 0,
            seen: 0,
            cancelled: false,
        })
    }

    /// Start from an earlier stage's outcome (kept as a decoded point of rank `rank`, its
    /// steps counted).
    pub(crate) fn resume(&mut self, earlier: &AttackOutcome, rank: f32) {
        self.steps = earlier.steps;
        self.best = Some(Candidate {
            adversarial: earlier.adversarial.clone(),
            success: earlier.success,
            transcript: earlier.transcript.clone(),
            loss: earlier.loss,
            rank,
            at: 0,
        });
    }

    /// Whether success needs the goal's tokens to lead under teacher forcing
    /// ([`Objective::lead_is_required`]): then points are decoded only where they lead.
    pub(crate) fn lead_required(&self) -> bool {
        self.lead_required
    }

    /// The mel front end of the next gradient step: the objective's views take turns (one
    /// gradient per step, so a robust attack costs what a plain one does per step). Steps
    /// taken outside [`Tracker::score_by`] (EOT, DeepFool) score the plain prompt.
    pub(crate) fn front(&self) -> &MelFrontEnd {
        &self.fronts[self.steps % self.fronts.len()]
    }

    /// The model's device.
    pub(crate) fn device(&self) -> &Device {
        self.model.whisper.device()
    }

    /// Whether to stop now: `cancel` is set (remembered for the outcome).
    pub(crate) fn stop_requested(&mut self, cancel: &AtomicBool) -> bool {
        if cancel.load(Ordering::Relaxed) {
            self.cancelled = true;
        }
        self.cancelled
    }

    /// `adv` as a waveform tensor.
    pub(crate) fn wave(&self, adv: &[f32]) -> Result<Tensor> {
        Ok(Tensor::from_vec(adv.to_vec(), adv.len(), self.device())?)
    }

    /// Score `adv` with the objective (loss, waveform gradient, lead): one gradient step.
    pub(crate) fn score(&mut self, adv: &[f32]) -> Result<Evaluated> {
        let (model, objective) = (self.model, self.objective);
        self.score_by(adv, |front, prompt, wave| {
            objective.evaluate_as(model, front, wave, prompt)
        })
    }

    /// Score `adv` with `evaluate` under this step's view (front end and prompt): one
    /// gradient step. The lead returned is the smallest of the latest under each view (NaN
    /// until each has been scored once).
    pub(crate) fn score_by(
        &mut self,
        adv: &[f32],
        evaluate: impl FnOnce(&MelFrontEnd, Prompt, &Tensor) -> Result<Evaluated>,
    ) -> Result<Evaluated> {
        let turn = self.steps % self.fronts.len();
        let mut e = self.probe_view(adv, turn, evaluate)?;
        e.lead = self.note_lead(turn, e.lead);
        Ok(e)
    }

    /// How many views the objective has (gradient steps take turns over them).
    pub(crate) fn view_count(&self) -> usize {
        self.fronts.len()
    }

    /// Score `adv` with `evaluate` under view `turn` (front end and prompt) without noting
    /// its lead: one gradient step at a point that is not the attack's (a finite-difference
    /// probe).
    pub(crate) fn probe_view(
        &mut self,
        adv: &[f32],
        turn: usize,
        evaluate: impl FnOnce(&MelFrontEnd, Prompt, &Tensor) -> Result<Evaluated>,
    ) -> Result<Evaluated> {
        let turn = turn % self.fronts.len();
        let prompt = self.views[turn].prompt;
        let e = evaluate(&self.fronts[turn], prompt, &self.wave(adv)?)?;
        self.count_step();
        Ok(e)
    }

    /// Note `lead` as the attack's latest under view `turn`; the smallest of the latest under
    /// each view (NaN until each has been scored once).
    pub(crate) fn note_lead(&mut self, turn: usize, lead: f32) -> f32 {
        let turn = turn % self.fronts.len();
        self.leads[turn] = lead;
        if self.leads.iter().any(|l| l.is_nan()) {
            f32::NAN
        } else {
            self.leads.iter().copied().fold(f32::INFINITY, f32::min)
        }
    }

    /// Whether a point of (combined) lead `lead` leads as success needs: by the margin.
    pub(crate) fn leads(&self, lead: f32) -> bool {
        self.objective.leads(lead)
    }

    /// Count one gradient step taken outside [`Tracker::score`].
    pub(crate) fn count_step(&mut self) {
        self.steps += 1;
    }

    /// The transcript of `adv` under the attack's decoding.
    pub(crate) fn transcribe(&self, adv: &[f32]) -> Result<String> {
        Ok(transcribe(self.model, adv, self.decode)?.text)
    }

    /// Whether `adv`, decoded as `transcript`, meets the goal (with a forward pass for the
    /// lead where it is required).
    pub(crate) fn succeeds(&self, adv: &[f32], transcript: &str) -> Result<bool> {
        self.objective
            .succeeds(self.model, self.decode, adv, transcript)
    }

    /// Whether `adv`, decoded as `transcript` and scored at lead `lead` (NaN if not known),
    /// meets the goal: from the lead alone for a plain objective, else by
    /// [`Tracker::succeeds`] (the other views' decodes, fresh leads and log-probabilities).
    pub(crate) fn judge(&self, adv: &[f32], transcript: &str, lead: f32) -> Result<bool> {
        if self.objective.robustness().is_strict() || lead.is_nan() {
            return self.succeeds(adv, transcript);
        }
        Ok(self.objective.is_met(transcript) && (!self.lead_required || self.leads(lead)))
    }

    /// Note a point scored at loss `loss` (lead `lead`, NaN if not known) as a stand-in, should no decoded point
    /// succeed: kept if it is the lowest loss so far ([`Keep::LowestLoss`]) or always
    /// ([`Keep::Latest`]).
    pub(crate) fn stand_by(&mut self, adv: &[f32], loss: f32, lead: f32) {
        let replace = match (&self.standby, self.keep) {
            (None, _) | (_, Keep::Latest) => true,
            (Some(s), Keep::LowestLoss) => loss < s.loss,
        };
        self.seen += 1;
        if replace {
            self.standby = Some(Standby {
                adversarial: adv.to_vec(),
                loss,
                lead,
                at: self.seen,
            });
        }
    }

    /// Offer a decoded point. `rank` orders successes (lower is better); failures are ordered
    /// by it too under [`Keep::LowestLoss`], by recency under [`Keep::Latest`].
    pub(crate) fn offer(
        &mut self,
        adversarial: Vec<f32>,
        success: bool,
        transcript: String,
        loss: f32,
        rank: f32,
    ) {
        let better = match &self.best {
            None => true,
            Some(b) if success != b.success => success,
            Some(b) if success || self.keep == Keep::LowestLoss => rank < b.rank,
            Some(_) => true,
        };
        self.seen += 1;
        if better {
            self.best = Some(Candidate {
                adversarial,
                success,
                transcript,
                loss,
                rank,
                at: self.seen,
            });
        }
    }

    /// Whether the kept point succeeds.
    pub(crate) fn has_success(&self) -> bool {
        self.best.as_ref().is_some_and(|b| b.success)
    }

    /// The outcome: the kept point, after decoding the stand-in where it may be better, or
    /// the clean input when nothing was scored.
    pub(crate) fn finish(mut self) -> Result<AttackOutcome> {
        if !self.has_success() {
            if let Some(s) = self.standby.take() {
                let wanted = match self.keep {
                    Keep::LowestLoss => true,
                    Keep::Latest => self.best.as_ref().is_none_or(|b| s.at > b.at),
                };
                if wanted {
                    let transcript = self.transcribe(&s.adversarial)?;
                    let success = self.judge(&s.adversarial, &transcript, s.lead)?;
                    if self.keep == Keep::Latest {
                        self.best = None;
                    }
                    self.offer(s.adversarial, success, transcript, s.loss, s.loss);
                }
            }
        }
        let best = match self.best.take() {
            Some(b) => b,
            None => {
                // Cancelled before anything was scored: the clean input's state.
                let adversarial = quantized_sum(self.x, &vec![0.0; self.x.len()]);
                let transcript = self.transcribe(&adversarial)?;
                Candidate {
                    success: self.succeeds(&adversarial, &transcript)?,
                    adversarial,
                    transcript,
                    loss: f32::NAN,
                    rank: f32::NAN,
                    at: 0,
                }
            }
        };
        let perturbation = best
            .adversarial
            .iter()
            .zip(self.x)
            .map(|(a, b)| a - b)
            .collect();
        Ok(AttackOutcome {
            adversarial: best.adversarial,
            perturbation,
            success: best.success,
            transcript: best.transcript,
            steps: self.steps,
            loss: best.loss,
            cancelled: self.cancelled,
        })
    }
}
