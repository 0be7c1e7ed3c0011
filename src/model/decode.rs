//! Turning audio features into tokens: greedy search and beam search (temperature 0), with the
//! model's suppress lists, without timestamps (`<|notimestamps|>`) or with them (OpenAI's
//! timestamp rules, as its `transcribe` does by default).

use super::tokenizer::WhisperTokenizer;
use super::whisper::{CrossKv, Whisper};
use crate::{Error, Result};
use candle_core::{Tensor, D};

/// Decoding settings.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// 1 for greedy search, more for beam search.
    pub beam_size: usize,
    /// Most text tokens per 30-s window.
    pub max_tokens: usize,
    /// Language code for multilingual models; `None` detects it.
    pub language: Option<String>,
    /// Predict timestamp tokens (segments), as OpenAI's `transcribe` and faster-whisper do by
    /// default; off: the `<|notimestamps|>` prompt.
    pub timestamps: bool,
    /// How the window past a short signal is filled (OpenAI's padded audio by default).
    pub front_end: crate::mel::FrontEnd,
    /// When beam search stops and how it ranks what finished (OpenAI's rule by default).
    pub beam_stop: BeamStop,
}

/// When beam search stops, and so which finished hypotheses it ranks. Implementations of
/// Whisper differ here, and an adversarial example must satisfy each.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum BeamStop {
    /// OpenAI's `BeamSearchDecoder` (patience 1) and faster-whisper: stop as soon as `beam`
    /// hypotheses have ended; the best of them by mean log-probability (over the text tokens)
    /// wins.
    #[default]
    FirstFinished,
    /// Hugging Face transformers' beam search (`early_stopping` off): an ended hypothesis is
    /// kept only if it is among the `beam` best candidates of its step, the `beam` best ended
    /// ones by their summed log-probability over `length ^ length_penalty` (every generated
    /// token, end-of-text included) are kept, and the search goes on while the best running
    /// hypothesis so scored could still beat the worst kept one. A long, confident run-on can
    /// then outrank a short target that OpenAI's rule would have returned. transformers'
    /// default `length_penalty` is 1 (the mean log-probability); more favours longer
    /// hypotheses.
    NoBetterRunning {
        /// The exponent of the length the sum is divided by.
        length_penalty: f32,
    },
}

impl BeamStop {
    /// Hugging Face transformers' rule with its default length penalty (1).
    pub const HUGGING_FACE: BeamStop = BeamStop::NoBetterRunning {
        length_penalty: 1.0,
    };
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            beam_size: 5,
            max_tokens: 224,
            language: None,
            timestamps: false,
            front_end: crate::mel::FrontEnd::Openai,
            beam_stop: BeamStop::FirstFinished,
        }
    }
}

/// One decoded window.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Text tokens (no prompt, no end-of-text).
    pub tokens: Vec<u32>,
    /// Sum of the tokens' log-probabilities (end-of-text included).
    pub sum_logprob: f32,
    /// Language code used (multilingual models).
    pub language: Option<String>,
    /// With timestamps: the segments (times in seconds from the window start).
    pub segments: Vec<Segment>,
}

/// A stretch of text between two timestamp tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, seconds from the window start.
    pub start: f32,
    /// End, seconds from the window start.
    pub end: f32,
    /// Its text tokens.
    pub tokens: Vec<u32>,
}

/// Seconds per timestamp token.
const TIMESTAMP_STEP_S: f32 = 0.02;
/// Latest first timestamp (OpenAI's `max_initial_timestamp` of 1 s), in timestamp tokens.
const MAX_INITIAL_TIMESTAMP: u32 = 50;

/// Split a sampled sequence with timestamp tokens (from `ts_begin`) into text tokens and
/// segments.
fn split_timestamps(seq: &[u32], ts_begin: u32, eot: u32) -> (Vec<u32>, Vec<Segment>) {
    let time = |t: u32| (t - ts_begin) as f32 * TIMESTAMP_STEP_S;
    let text: Vec<u32> = seq.iter().copied().filter(|&t| t < eot).collect();
    let mut segments = Vec::new();
    let mut start: Option<f32> = None;
    let mut tokens = Vec::new();
    for &t in seq {
        if t >= ts_begin {
            match start {
                Some(s) if !tokens.is_empty() => {
                    segments.push(Segment {
                        start: s,
                        end: time(t),
                        tokens: std::mem::take(&mut tokens),
                    });
                    start = None;
                }
                _ => start = Some(time(t)),
            }
        } else if t < eot {
            tokens.push(t);
        }
    }
    if !tokens.is_empty() {
        // Text after the last timestamp (the window ended first).
        let s = start.unwrap_or(0.0);
        segments.push(Segment {
            start: s,
            end: s,
            tokens,
        });
    }
    (text, segments)
}

/// OpenAI's `ApplyTimestampRules` on one row of logits, given the tokens sampled so far:
/// timestamps come in pairs around text and never decrease, the first token is a timestamp
/// of at most 1 s, and text is ruled out when the timestamps together are more likely than
/// any text token.
fn apply_timestamp_rules(row: &mut [f32], seq: &[u32], ts_begin: u32, eot: u32) {
    let ts = ts_begin as usize;
    let last_was_ts = seq.last().is_some_and(|&t| t >= ts_begin);
    let penultimate_was_ts = seq.len() < 2 || seq[seq.len() - 2] >= ts_begin;
    if last_was_ts {
        if penultimate_was_ts {
            row[ts..].fill(f32::NEG_INFINITY);
        } else {
            row[..eot as usize].fill(f32::NEG_INFINITY);
        }
    }
    if let Some(&last) = seq.iter().rev().find(|&&t| t >= ts_begin) {
        let upto = if last_was_ts && !penultimate_was_ts {
            last
        } else {
            last + 1
        };
        let upto = (upto as usize).min(row.len());
        row[ts..upto].fill(f32::NEG_INFINITY);
    }
    if seq.is_empty() {
        row[..ts].fill(f32::NEG_INFINITY);
        let last_allowed = ts + MAX_INITIAL_TIMESTAMP as usize;
        if last_allowed + 1 < row.len() {
            row[last_allowed + 1..].fill(f32::NEG_INFINITY);
        }
    }
    let logprobs = log_softmax(row);
    let ts_mass = log_sum_exp(&logprobs[ts..]);
    let best_text = logprobs[..ts]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if ts_mass > best_text {
        row[..ts].fill(f32::NEG_INFINITY);
    }
}

fn log_sum_exp(v: &[f32]) -> f32 {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f32>().ln()
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(row);
    row.iter().map(|x| x - lse).collect()
}

/// Additive logit mask: `-inf` on tokens never emitted.
struct Suppression {
    always: Tensor,
    at_begin: Tensor,
}

fn suppression(
    model: &Whisper,
    tok: &WhisperTokenizer,
    ts_begin: Option<u32>,
) -> Result<Suppression> {
    let cfg = model.config();
    let v = cfg.vocab_size;
    let eot = tok.special.eot as usize;
    let mut always = vec![0.0f32; v];
    // No special tokens: everything past end-of-text is suppressed, up to the timestamps
    // when they are wanted.
    let specials_end = ts_begin.map_or(v, |t| t as usize).min(v);
    for a in always.iter_mut().take(specials_end).skip(eot + 1) {
        *a = f32::NEG_INFINITY;
    }
    for &t in &cfg.suppress_tokens {
        if (t as usize) < v {
            always[t as usize] = f32::NEG_INFINITY;
        }
    }
    let mut at_begin = always.clone();
    let begin: &[u32] = if cfg.begin_suppress_tokens.is_empty() {
        &[220]
    } else {
        &cfg.begin_suppress_tokens
    };
    for &t in begin.iter().chain(std::iter::once(&tok.special.eot)) {
        if (t as usize) < v {
            at_begin[t as usize] = f32::NEG_INFINITY;
        }
    }
    let dev = model.device();
    Ok(Suppression {
        always: Tensor::from_vec(always, v, dev)?,
        at_begin: Tensor::from_vec(at_begin, v, dev)?,
    })
}

fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::log_softmax(logits, D::Minus1)?.to_vec2::<f32>()?)
}

/// Pick the language of a multilingual model from the first decoder step.
pub fn detect_language(
    model: &Whisper,
    tok: &WhisperTokenizer,
    cross: &CrossKv,
) -> Result<(String, u32)> {
    let dev = model.device();
    let mut cache = model.new_cache();
    let sot = Tensor::from_vec(vec![tok.special.sot], (1, 1), dev)?;
    let logits = model
        .decode_step(&sot, &mut cache, cross)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    tok.special
        .languages
        .iter()
        .filter(|(_, id)| (*id as usize) < logits.len())
        .max_by(|a, b| logits[a.1 as usize].total_cmp(&logits[b.1 as usize]))
        .cloned()
        .ok_or_else(|| Error::InvalidArgument("the model has no language tokens".into()))
}

/// Decode audio features `(1, 1500, D)` of one window.
pub fn decode(
    model: &Whisper,
    tok: &WhisperTokenizer,
    features: &Tensor,
    opts: &DecodeOptions,
) -> Result<Decoded> {
    if opts.beam_size == 0 {
        return Err(Error::InvalidArgument(
            "beam size must be at least 1".into(),
        ));
    }
    let cross = model.cross_kv(features)?;
    let (language, lang_token) = if tok.is_multilingual() {
        let (code, id) = match &opts.language {
            Some(code) => (code.clone(), tok.language_token(code)?),
            None => detect_language(model, tok, &cross)?,
        };
        (Some(code), Some(id))
    } else {
        (None, None)
    };
    let mut prompt = tok.prompt(lang_token);
    let ts_begin = if opts.timestamps {
        // The prompt ends with <|notimestamps|>; the timestamp tokens follow it.
        prompt.pop();
        Some(tok.first_timestamp())
    } else {
        None
    };
    let max_tokens = opts.max_tokens.min(model.config().max_target_positions / 2);
    let (seq, sum_logprob) = beam_search(
        model,
        tok,
        &cross,
        &prompt,
        opts.beam_size,
        max_tokens,
        ts_begin,
        opts.beam_stop,
    )?;
    let (tokens, segments) = match ts_begin {
        Some(ts) => split_timestamps(&seq, ts, tok.special.eot),
        None => (seq, Vec::new()),
    };
    Ok(Decoded {
        tokens,
        sum_logprob,
        language,
        segments,
    })
}

#[derive(Clone)]
struct Hyp {
    tokens: Vec<u32>,
    logprob: f32,
}

impl Hyp {
    /// The score finished hypotheses are ranked by under `stop`: the mean log-probability
    /// over the text tokens (OpenAI) or over every generated token, end-of-text included
    /// (Hugging Face).
    fn score(&self, stop: BeamStop) -> f32 {
        match stop {
            BeamStop::FirstFinished => self.logprob / self.tokens.len().max(1) as f32,
            BeamStop::NoBetterRunning { length_penalty } => {
                normalised(self.logprob, self.tokens.len() + 1, length_penalty)
            }
        }
    }
}

/// Hugging Face's score of a hypothesis: its summed log-probability over `len ^ length_penalty`.
fn normalised(logprob: f32, len: usize, length_penalty: f32) -> f32 {
    logprob / (len.max(1) as f32).powf(length_penalty)
}

/// Beam search as OpenAI's `BeamSearchDecoder` (patience 1, no length penalty: finished
/// sequences ranked by mean log-probability) or, by `stop`, as Hugging Face's. `beam_size == 1`
/// is greedy search (the same under both rules). With `ts_begin`, timestamp tokens are sampled
/// under OpenAI's timestamp rules.
#[allow(clippy::too_many_arguments)]
fn beam_search(
    model: &Whisper,
    tok: &WhisperTokenizer,
    cross: &CrossKv,
    prompt: &[u32],
    beam_size: usize,
    max_tokens: usize,
    ts_begin: Option<u32>,
    stop: BeamStop,
) -> Result<(Vec<u32>, f32)> {
    let dev = model.device();
    let eot = tok.special.eot;
    let sup = suppression(model, tok, ts_begin)?;
    let mut cache = model.new_cache();
    let prompt_t = Tensor::from_vec(prompt.to_vec(), (1, prompt.len()), dev)?;
    let mut logits = model.decode_step(&prompt_t, &mut cache, cross)?;
    let mut beams = vec![Hyp {
        tokens: Vec::new(),
        logprob: 0.0,
    }];
    let mut finished: Vec<Hyp> = Vec::new();
    for step in 0..max_tokens {
        let mask = if step == 0 {
            &sup.at_begin
        } else {
            &sup.always
        };
        let masked = logits.broadcast_add(mask)?;
        let logprobs = match ts_begin {
            None => log_softmax_rows(&masked)?,
            Some(ts) => {
                let mut rows = masked.to_vec2::<f32>()?;
                for (row, beam) in rows.iter_mut().zip(&beams) {
                    apply_timestamp_rules(row, &beam.tokens, ts, eot);
                    *row = log_softmax(row);
                }
                rows
            }
        };
        // Candidates: for each beam, its best beam_size + 1 continuations.
        let mut candidates: Vec<(usize, u32, f32)> = Vec::new();
        for (b, row) in logprobs.iter().enumerate() {
            let mut idx: Vec<usize> = (0..row.len()).filter(|&i| row[i].is_finite()).collect();
            let k = (beam_size + 1).min(idx.len());
            if k == 0 {
                continue;
            }
            idx.select_nth_unstable_by(k - 1, |&a, &c| row[c].total_cmp(&row[a]));
            for &i in &idx[..k] {
                candidates.push((b, i as u32, beams[b].logprob + row[i]));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next: Vec<Hyp> = Vec::new();
        let mut parents: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        for (rank, (b, t, lp)) in candidates.into_iter().enumerate() {
            let mut tokens = beams[b].tokens.clone();
            if t == eot {
                let hyp = Hyp {
                    tokens,
                    logprob: lp,
                };
                match stop {
                    BeamStop::FirstFinished => {
                        if finished.len() < beam_size {
                            finished.push(hyp);
                        }
                    }
                    // Only an end among the step's `beam` best candidates counts; the kept
                    // set holds the `beam` best by score.
                    BeamStop::NoBetterRunning { .. } if rank < beam_size => {
                        finished.push(hyp);
                        finished.sort_by(|a, b| b.score(stop).total_cmp(&a.score(stop)));
                        finished.truncate(beam_size);
                    }
                    BeamStop::NoBetterRunning { .. } => {}
                }
            } else if next.len() < beam_size {
                tokens.push(t);
                next.push(Hyp {
                    tokens,
                    logprob: lp,
                });
                parents.push(b as u32);
                next_tokens.push(t);
            }
            if next.len() >= beam_size {
                break;
            }
        }
        let full = finished.len() >= beam_size || (beam_size == 1 && !finished.is_empty());
        let done = match stop {
            BeamStop::FirstFinished => full,
            // Go on while the best running hypothesis, scored at its length so far, beats the
            // worst kept one (the kept set is sorted best first).
            BeamStop::NoBetterRunning { length_penalty } => {
                full && next
                    .first()
                    .zip(finished.last())
                    .is_none_or(|(best, worst)| {
                        normalised(best.logprob, best.tokens.len(), length_penalty)
                            <= worst.score(stop)
                    })
            }
        };
        if done || next.is_empty() {
            break;
        }
        let parent_idx = Tensor::from_vec(parents, next.len(), dev)?;
        cache.select(&parent_idx)?;
        beams = next;
        let step_tokens = Tensor::from_vec(next_tokens, (beams.len(), 1), dev)?;
        logits = model.decode_step(&step_tokens, &mut cache, cross)?;
    }
    if finished.is_empty() {
        finished = beams;
    }
    let best = finished
        .into_iter()
        .max_by(|a, b| a.score(stop).total_cmp(&b.score(stop)))
        .ok_or_else(|| Error::Internal("decoding produced no hypothesis".into()))?;
    Ok((best.tokens, best.logprob))
}
