//! The output-entropy detector: how unsure the decoder is, step by step, of the words it
//! chose ("entropy-based measures" of the model's output probabilities).
//!
//! Each 30-s window is decoded as the detector's context says, then the decoded sequence
//! (plain prompt, text tokens, end-of-text) is fed back once (teacher forcing) and the entropy
//! of the next-token distribution is taken at every step that predicts a text token or the
//! end. The score is the mean over all steps of all windows, in nats. Clean speech is decoded
//! with most of the probability on one token per step; an example that an attack pushed just
//! over the line to other words leaves the decoder split between them. Unlike the mean
//! log-probability ([`super::Detector::Confidence`]), entropy sees how the rest of the
//! probability is spread, not only the chosen token's share.

use crate::model::decode::decode;
use crate::model::{DecodeOptions, LoadedModel};
use crate::transcribe::{encode_window, windows};
use crate::Result;
use candle_core::{DType, Tensor};

/// Entropy (nats) of the softmax of each row of `logits` (`rows × vocab`, row-major).
pub fn row_entropies(logits: &[f32], vocab: usize) -> Vec<f64> {
    logits
        .chunks_exact(vocab)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = row.iter().map(|v| (*v as f64 - max).exp()).sum();
            let log_z = z.ln();
            // H = log Z − Σ p·(l − max), with p = e^(l − max)/Z.
            let mean: f64 = row
                .iter()
                .map(|v| {
                    let l = *v as f64 - max;
                    l.exp() / z * l
                })
                .sum();
            log_z - mean
        })
        .collect()
}

/// The mean next-token entropy (nats) over the decoded steps of every window of `samples`.
pub fn decoding_entropy(model: &LoadedModel, samples: &[f32], opts: &DecodeOptions) -> Result<f64> {
    let tok = &model.tokenizer;
    let vocab = model.whisper.config().vocab_size;
    let (mut sum, mut steps) = (0.0f64, 0usize);
    for (_, window) in windows(samples) {
        let features = encode_window(model, window, opts.front_end)?;
        let decoded = decode(&model.whisper, tok, &features, opts)?;
        let language = match &decoded.language {
            Some(code) => Some(tok.language_token(code)?),
            None => None,
        };
        let prompt = tok.prompt(language);
        let mut seq = prompt.clone();
        seq.extend(&decoded.tokens);
        // The input is every token but end-of-text; the steps of interest start at the
        // prompt's last token (which predicts the first text token).
        let input = Tensor::from_vec(seq.clone(), (1, seq.len()), model.whisper.device())?;
        let logits = model.whisper.decoder_logits(&features, &input)?;
        let first = prompt.len() - 1;
        let logits = logits
            .narrow(1, first, seq.len() - first)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for h in row_entropies(&logits, vocab) {
            sum += h;
            steps += 1;
        }
    }
    Ok(sum / steps.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_peaked_and_shifted_rows() {
        let v = 8;
        let uniform = vec![0.3f32; v];
        let mut peaked = vec![-50.0f32; v];
        peaked[2] = 10.0;
        let two: Vec<f32> = (0..v).map(|i| if i < 2 { 5.0 } else { -60.0 }).collect();
        let rows: Vec<f32> = [uniform.clone(), peaked, two].concat();
        let h = row_entropies(&rows, v);
        assert!((h[0] - (v as f64).ln()).abs() < 1e-9, "{h:?}");
        assert!(h[1] < 1e-9, "{h:?}");
        assert!((h[2] - 2f64.ln()).abs() < 1e-9, "{h:?}");
        // A constant added to every logit changes nothing.
        let shifted: Vec<f32> = uniform.iter().map(|x| x + 1000.0).collect();
        assert!((row_entropies(&shifted, v)[0] - h[0]).abs() < 1e-9);
    }
}
