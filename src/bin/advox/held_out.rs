//! How a model fares on held-out speech, for the training defences (`defend adv-train`,
//! `defend distill`): clean WER against references, and fresh untargeted attacks on the model
//! as it stands.

use advox::attack::Attack;
use advox::mel::MelFrontEnd;
use advox::metrics::wer;
use advox::model::{DecodeOptions, LoadedModel};
use advox::objective::{Goal, Objective};
use advox::transcribe::transcribe;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// One attack's result over the held-out utterances.
#[derive(serde::Serialize)]
pub struct AttackScore {
    /// Share of the utterances whose example meets the goal (WER ≥ 0.5 from this model's own
    /// clean transcript).
    pub success: f64,
    /// Mean WER of the examples' transcripts against this model's clean transcripts.
    pub wer: f64,
    /// Wall time of this attack on every utterance.
    pub seconds: f64,
}

/// A model on held-out speech.
#[derive(serde::Serialize)]
pub struct HeldOut {
    /// Mean WER of its clean transcripts against the references.
    pub clean_wer: f64,
    /// Median L2 norm of the untargeted loss's waveform gradient at the clean inputs (the
    /// cross-entropy of the model's own transcript): how much gradient an attacker gets.
    pub clean_gradient_norm: f64,
    /// Each attack by name.
    pub attacks: BTreeMap<String, AttackScore>,
}

/// Clean WER against `references` and each of `attacks` (untargeted, WER ≥ 0.5) on `model`
/// for each held-out input, transcribed with `decode`.
pub fn measure(
    model: &LoadedModel,
    inputs: &[(Vec<f32>, String)],
    attacks: &[(&str, Attack)],
    decode: &DecodeOptions,
) -> Result<HeldOut> {
    let mut clean_wer = 0.0;
    let mut cases = Vec::new();
    let mut norms = Vec::new();
    let device = model.whisper.device();
    let front = MelFrontEnd::new(model.whisper.config().num_mel_bins, device)?;
    for (x, reference) in inputs {
        let t = transcribe(model, x, decode)?;
        clean_wer += wer(reference, &t.text);
        let objective =
            Objective::new(model, Goal::Untargeted { min_wer: 0.5 }, &t.text, &t.tokens)?;
        let wave = candle_core::Tensor::from_vec(x.clone(), x.len(), device)?;
        let (_, grad) = objective.loss_and_grad(model, &front, &wave)?;
        norms.push(advox::metrics::l2(&grad));
        cases.push((x, t.text, objective));
    }
    norms.sort_by(f64::total_cmp);
    let clean_gradient_norm = norms.get(norms.len() / 2).copied().unwrap_or(f64::NAN);
    let n = inputs.len().max(1) as f64;
    let mut scores = BTreeMap::new();
    for (name, attack) in attacks {
        let start = std::time::Instant::now();
        let (mut success, mut total) = (0usize, 0.0);
        for (x, clean, objective) in &cases {
            let out = attack
                .run(model, x, objective, &AtomicBool::new(false), &mut |_| {})?
                .outcome;
            success += usize::from(out.success);
            total += wer(clean, &out.transcript);
        }
        scores.insert(
            name.to_string(),
            AttackScore {
                success: success as f64 / n,
                wer: total / n,
                seconds: start.elapsed().as_secs_f64(),
            },
        );
    }
    Ok(HeldOut {
        clean_wer: clean_wer / n,
        clean_gradient_norm,
        attacks: scores,
    })
}

/// Print each model's row: clean WER, then each attack's success and WER.
pub fn print_table(rows: &[(&str, &HeldOut)]) {
    let Some((_, first)) = rows.first() else {
        return;
    };
    let mut header = format!("{:<16} clean WER  gradient", "");
    for name in first.attacks.keys() {
        header += &format!("  {name:>5} success  {name:>5} WER");
    }
    println!("{header}");
    for (label, h) in rows {
        let mut line = format!(
            "{label:<16} {:>9.2}  {:>8.1e}",
            h.clean_wer, h.clean_gradient_norm
        );
        for s in h.attacks.values() {
            line += &format!("  {:>11.0} %  {:>9.2}", 100.0 * s.success, s.wer);
        }
        println!("{line}");
    }
}

/// The held-out inputs of a manifest with their references: the manifest's `transcript`,
/// else what `model` hears in the clean input.
pub fn read_inputs(
    path: &std::path::Path,
    model: &LoadedModel,
    decode: &DecodeOptions,
) -> Result<Vec<(Vec<f32>, String)>> {
    advox::manifest::read_manifest(path)?
        .into_iter()
        .map(|e| {
            let x = advox::audio::read_audio_16k_mono(&e.input)?;
            let reference = match e.transcript {
                Some(r) => r,
                None => transcribe(model, &x, decode)?.text,
            };
            Ok((x, reference))
        })
        .collect()
}
