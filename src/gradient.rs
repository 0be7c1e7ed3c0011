//! Losses on the decoder logits and their gradient back to the waveform.
//!
//! The waveform -> log-mel part runs on candle's autograd ([`MelFrontEnd::log_mel`]); the model
//! part uses [`Whisper::backward`]. They meet at the log-mel: the model's `dL/dmel` is pulled
//! back through the front-end by differentiating `sum(mel * dL/dmel)`.

use crate::mel::MelFrontEnd;
use crate::model::{Whisper, WhisperTokenizer};
use crate::{Error, Result};
use candle_core::{Tensor, Var, D};

/// A teacher-forced target: decoder input (prompt + text) and the tokens it must predict
/// (text + end-of-text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSequence {
    /// Decoder input tokens.
    pub input: Vec<u32>,
    /// Tokens predicted at the last `targets.len()` input positions.
    pub targets: Vec<u32>,
}

impl TargetSequence {
    /// Target for transcript `text` (a leading space is added as Whisper emits one).
    pub fn new(tok: &WhisperTokenizer, text: &str, language: Option<u32>) -> Result<Self> {
        let text_tokens = tok.encode(text)?;
        Ok(Self::from_tokens(tok, &text_tokens, language))
    }

    /// Target for already tokenised text.
    pub fn from_tokens(tok: &WhisperTokenizer, text_tokens: &[u32], language: Option<u32>) -> Self {
        let mut input = tok.prompt(language);
        input.extend_from_slice(text_tokens);
        let mut targets = text_tokens.to_vec();
        targets.push(tok.special.eot);
        TargetSequence { input, targets }
    }

    /// `text_tokens` said `copies` more times after itself: the plain prompt and the text,
    /// then the repetitions as targets (what a looping decoder emits instead of end-of-text).
    pub fn repeated(
        tok: &WhisperTokenizer,
        text_tokens: &[u32],
        language: Option<u32>,
        copies: usize,
    ) -> Self {
        let mut input = tok.prompt(language);
        input.extend_from_slice(text_tokens);
        let targets: Vec<u32> = (0..copies)
            .flat_map(|_| text_tokens.iter().copied())
            .collect();
        input.extend_from_slice(&targets[..targets.len().saturating_sub(1)]);
        TargetSequence { input, targets }
    }

    /// Target `text_tokens` as timestamp decoding emits one segment covering `end_seconds`:
    /// `<|0.00|> text <|end|>` and end-of-text. Returns the sequence and the index, in
    /// `targets`, of the end timestamp (any timestamp there would do; the lead skips it).
    pub fn timestamped(
        tok: &WhisperTokenizer,
        text_tokens: &[u32],
        language: Option<u32>,
        end_seconds: f32,
    ) -> (Self, usize) {
        let mut input = timestamp_prompt(tok, language);
        let first_timestamp = tok.first_timestamp();
        input.extend_from_slice(text_tokens);
        // Timestamps step by 20 ms up to 30 s.
        let end = first_timestamp + (end_seconds.clamp(0.02, 30.0) / 0.02).round() as u32;
        input.push(end);
        let mut targets = text_tokens.to_vec();
        targets.push(end);
        targets.push(tok.special.eot);
        let at = targets.len() - 2;
        (TargetSequence { input, targets }, at)
    }

    /// Mute under timestamp decoding: end-of-text right after the first timestamp `<|0.00|>`
    /// (the timestamp rules force a timestamp first, so only what follows it is scored), as
    /// Whisper's default `transcribe` decodes an empty window.
    pub fn timestamp_mute(tok: &WhisperTokenizer, language: Option<u32>) -> Self {
        TargetSequence {
            input: timestamp_prompt(tok, language),
            targets: vec![tok.special.eot],
        }
    }
}

/// The decoder prompt of timestamp decoding up to its first timestamp `<|0.00|>`: the plain
/// prompt with `<|notimestamps|>` (its last token) replaced by the timestamp that follows it
/// in the vocabulary.
fn timestamp_prompt(tok: &WhisperTokenizer, language: Option<u32>) -> Vec<u32> {
    let mut input = tok.prompt(language);
    input.pop();
    input.push(tok.first_timestamp());
    input
}

/// Mean cross-entropy of `targets` at the last `targets.len()` positions of `logits`
/// `(1, L, V)`, and its gradient w.r.t. the logits.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<(f32, Tensor)> {
    let (b, l, v) = logits.dims3()?;
    if b != 1 || targets.is_empty() || targets.len() > l {
        return Err(Error::Shape(format!(
            "cross-entropy needs batch 1 and 1..={l} targets, got batch {b} and {} targets",
            targets.len()
        )));
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
        return Err(Error::InvalidArgument(format!(
            "target token {t} outside the vocabulary"
        )));
    }
    let first = l - targets.len();
    let logp = candle_nn::ops::log_softmax(&logits.squeeze(0)?, D::Minus1)?;
    let rows = logp.to_vec2::<f32>()?;
    let n = targets.len() as f32;
    let loss = -targets
        .iter()
        .enumerate()
        .map(|(i, &t)| rows[first + i][t as usize])
        .sum::<f32>()
        / n;
    let mut onehot = vec![0.0f32; l * v];
    for (i, &t) in targets.iter().enumerate() {
        onehot[(first + i) * v + t as usize] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, (l, v), logits.device())?;
    let mut mask = vec![0.0f32; l];
    mask[first..].iter_mut().for_each(|m| *m = 1.0 / n);
    let mask = Tensor::from_vec(mask, (l, 1), logits.device())?;
    let grad = (logp.exp()? - onehot)?.broadcast_mul(&mask)?;
    Ok((loss, grad.unsqueeze(0)?))
}

/// The best-scoring token of `row` other than `t`, and its logit.
fn best_rival(row: &[f32], t: usize) -> (usize, f32) {
    row.iter()
        .enumerate()
        .filter(|(j, _)| *j != t)
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (j, &z)| {
                if z > acc.1 {
                    (j, z)
                } else {
                    acc
                }
            },
        )
}

/// Teacher-forced lead of `targets` at the last `targets.len()` positions of `logits` `(1, L, V)`:
/// the smallest, over those positions, of the target's logit minus the best other logit.
///
/// A positive lead means greedy decoding from the same prompt emits exactly `targets` (the
/// text, then end-of-text); every other token counts as a rival here, suppressed ones included,
/// so the converse fails only where a token the decoder never emits outscores the target.
pub fn teacher_forced_lead(logits: &Tensor, targets: &[u32]) -> Result<f32> {
    let (b, l, v) = logits.dims3()?;
    if b != 1 || targets.is_empty() || targets.len() > l {
        return Err(Error::Shape(format!(
            "the lead needs batch 1 and 1..={l} targets, got batch {b} and {} targets",
            targets.len()
        )));
    }
    let rows = logits
        .squeeze(0)?
        .narrow(0, l - targets.len(), targets.len())?
        .to_vec2::<f32>()?;
    let mut lead = f32::INFINITY;
    for (row, &t) in rows.iter().zip(targets) {
        let t = t as usize;
        if t >= v {
            return Err(Error::InvalidArgument(format!(
                "target token {t} outside the vocabulary"
            )));
        }
        lead = lead.min(row[t] - best_rival(row, t).1);
    }
    Ok(lead)
}

/// [`teacher_forced_lead`] over every target but the one at index `skip`.
pub fn teacher_forced_lead_skipping(
    logits: &Tensor,
    targets: &[u32],
    skip: Option<usize>,
) -> Result<f32> {
    let Some(i) = skip.filter(|&i| i < targets.len()) else {
        return teacher_forced_lead(logits, targets);
    };
    let l = logits.dim(1)?;
    let mut lead = f32::INFINITY;
    if i > 0 {
        let before = logits.narrow(1, 0, l - (targets.len() - i))?;
        lead = lead.min(teacher_forced_lead(&before, &targets[..i])?);
    }
    if i + 1 < targets.len() {
        lead = lead.min(teacher_forced_lead(logits, &targets[i + 1..])?);
    }
    Ok(lead)
}

/// Carlini–Wagner margin loss over the last `targets.len()` positions of `logits` `(1, L, V)`:
/// for each position `max(max_{j≠t} Z_j − Z_t, −κ)` (the target must win by κ), or with
/// `away` `max(Z_t − max_{j≠t} Z_j, −κ)` (the token must lose by κ); summed, with its gradient.
/// `any_timestamp = Some((i, first))`: at target index `i` any timestamp (token ≥ `first`) will
/// do, so there the best timestamp must beat the best other token by κ (an end timestamp need
/// not beat its neighbours).
pub fn margin_loss(
    logits: &Tensor,
    targets: &[u32],
    kappa: f32,
    away: bool,
    any_timestamp: Option<(usize, u32)>,
) -> Result<(f32, Tensor)> {
    let (b, l, v) = logits.dims3()?;
    if b != 1 || targets.is_empty() || targets.len() > l {
        return Err(Error::Shape(format!(
            "margin loss needs batch 1 and 1..={l} targets, got batch {b} and {} targets",
            targets.len()
        )));
    }
    let rows = logits.squeeze(0)?.to_vec2::<f32>()?;
    let first = l - targets.len();
    let mut grad = vec![0.0f32; l * v];
    let mut total = 0.0f32;
    for (i, &t) in targets.iter().enumerate() {
        let row = &rows[first + i];
        let t = t as usize;
        if t >= v {
            return Err(Error::InvalidArgument(format!(
                "target token {t} outside the vocabulary"
            )));
        }
        let (t, (other, best_other)) = match any_timestamp {
            Some((at, first)) if at == i && (first as usize) < v => {
                let first = first as usize;
                let (best, _) = best_rival(&row[first..], usize::MAX);
                (first + best, best_rival(&row[..first], usize::MAX))
            }
            _ => (t, best_rival(row, t)),
        };
        let margin = if away {
            row[t] - best_other
        } else {
            best_other - row[t]
        };
        if margin > -kappa {
            total += margin;
            let s = if away { -1.0 } else { 1.0 };
            grad[(first + i) * v + other] += s;
            grad[(first + i) * v + t] -= s;
        } else {
            total += -kappa;
        }
    }
    Ok((total, Tensor::from_vec(grad, (1, l, v), logits.device())?))
}

/// Value of a loss of the logits and its gradient w.r.t. the waveform `(n,)`, `n <= 480000`.
///
/// `loss` maps logits `(1, L, V)` of the decoder input `tokens` to `(value, dL/dlogits)`.
pub fn loss_and_waveform_grad(
    model: &Whisper,
    front: &MelFrontEnd,
    wave: &Tensor,
    tokens: &[u32],
    loss: impl Fn(&Tensor) -> Result<(f32, Tensor)>,
) -> Result<(f32, Tensor)> {
    let wave_var = Var::from_tensor(&wave.to_device(model.device())?)?;
    let mel = front.log_mel(wave_var.as_tensor())?;
    let input = mel.detach().unsqueeze(0)?;
    let tokens_t = Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), model.device())?;
    let (logits, tape) = model.forward_recorded(&input, &tokens_t)?;
    let (value, d_logits) = loss(&logits)?;
    // Frames after the signal see only zeros; they move only with the normalisation floor
    // (global maximum − 8), and that share of the gradient is dropped so the backward can skip
    // them (1e-4 relative L2 on the PyTorch reference step; the floor's gradient through the
    // signal's own frames is kept — attacks such as muting rely on it).
    let n = wave.dim(0)?;
    let varying = crate::mel::live_frames(n).min(front.kind().signal_frames(n));
    let d_mel = model
        .backward_prefix(&tape, &d_logits, varying)?
        .squeeze(0)?;
    drop(tape);
    let grads = (mel * d_mel)?.sum_all()?.backward()?;
    let grad = grads
        .get(wave_var.as_tensor())
        .cloned()
        .ok_or_else(|| Error::Internal("no gradient reached the waveform".into()))?;
    Ok((value, grad))
}

/// Targeted teacher-forced cross-entropy of `target` and its waveform gradient.
pub fn targeted_loss_and_grad(
    model: &Whisper,
    front: &MelFrontEnd,
    wave: &Tensor,
    target: &TargetSequence,
) -> Result<(f32, Tensor)> {
    loss_and_waveform_grad(model, front, wave, &target.input, |logits| {
        cross_entropy(logits, &target.targets)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn lead_is_the_smallest_winning_margin_over_the_scored_positions() {
        // Three positions of a 4-token vocabulary; the last two are scored.
        let logits = Tensor::from_vec(
            vec![
                9.0f32, 0.0, 0.0, 0.0, // not scored
                0.0, 3.0, 1.0, 2.5, // target 1 leads by 0.5
                4.0, 0.0, 6.0, 1.0, // target 2 leads by 2
            ],
            (1, 3, 4),
            &Device::Cpu,
        )
        .unwrap();
        assert!((teacher_forced_lead(&logits, &[1, 2]).unwrap() - 0.5).abs() < 1e-6);
        // Token 3 loses to token 1 by 0.5 at the first scored position.
        assert!((teacher_forced_lead(&logits, &[3, 2]).unwrap() + 0.5).abs() < 1e-6);
        assert!(teacher_forced_lead(&logits, &[1, 9]).is_err());
        assert!(teacher_forced_lead(&logits, &[0, 1, 2, 3]).is_err());
        // Skipping the losing position leaves the other's lead; skipping none is the lead.
        let skip = |t: &[u32], i| teacher_forced_lead_skipping(&logits, t, i).unwrap();
        assert!((skip(&[3, 2], Some(0)) - 2.0).abs() < 1e-6);
        assert!((skip(&[1, 3], Some(1)) - 0.5).abs() < 1e-6);
        assert!((skip(&[3, 2], None) + 0.5).abs() < 1e-6);
    }

    #[test]
    fn margin_loss_lets_any_timestamp_win_where_one_will_do() {
        // A 5-token vocabulary whose tokens 3 and 4 are timestamps; one scored position where
        // timestamp 3 is wanted but its neighbour 4 is likelier, and text token 1 trails by 2.
        let logits =
            Tensor::from_vec(vec![0.0f32, 4.0, 0.0, 5.0, 6.0], (1, 1, 5), &Device::Cpu).unwrap();
        let grad_of = |g: Tensor| g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Strictly, token 3 loses to 4 by 1: the loss pulls 3 up and 4 down.
        let (loss, g) = margin_loss(&logits, &[3], 5.0, false, None).unwrap();
        assert!((loss - 1.0).abs() < 1e-6);
        assert_eq!(grad_of(g), vec![0.0, 0.0, 0.0, -1.0, 1.0]);
        // Any timestamp: the best one (4) leads text token 1 by 2, short of κ = 5.
        let (loss, g) = margin_loss(&logits, &[3], 5.0, false, Some((0, 3))).unwrap();
        assert!((loss + 2.0).abs() < 1e-6);
        assert_eq!(grad_of(g), vec![0.0, 1.0, 0.0, 0.0, -1.0]);
        // With κ = 1 that lead is enough: the loss is flat at −κ.
        let (loss, g) = margin_loss(&logits, &[3], 1.0, false, Some((0, 3))).unwrap();
        assert!((loss + 1.0).abs() < 1e-6);
        assert!(grad_of(g).iter().all(|&x| x == 0.0));
    }
}
