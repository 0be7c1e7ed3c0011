//! The quiet-frame prior of a query-based attack: candidates that spend the whole bound as
//! noise in the input's quietest frames.
//!
//! Under a global bound (an SNR floor or an L2 ball) a perturbation's damage depends on where
//! its energy sits. Spread evenly, 25 dB under the speech it stays 25 dB under every word; put
//! into the pauses and the weakest sounds, the same energy is louder than the speech there. A
//! recogniser that normalises its features per utterance and lets its language model fill
//! what it hears in the pauses (a GMM-HMM such as PocketSphinx) inserts and swaps words; one
//! trained on noisy speech (Whisper) mostly does not. The prior needs no model, so it serves
//! where the surrogate prior (advox's Whisper) does not transfer.
//!
//! Each candidate is white Gaussian noise, gated to the 20-ms frames whose RMS is at or under
//! a share of the input's frames (the quietest `share`), scaled to the largest L2 norm the
//! constraints allow (or, with an L∞ bound alone, to a third of it per sample) and projected
//! onto them as every query is. The first rounds try fixed shares (half, then fewer and more
//! of the frames); later rounds draw a share near the best one so far with a new noise seed:
//! a random search in the prior's two parameters, one query each.

use crate::perturb::Constraints;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Rounds of the quiet-frame prior by default (one query each).
pub const QUIET_ROUNDS: usize = 20;

/// Frame of the gate: 20 ms at 16 kHz.
pub const QUIET_FRAME: usize = 320;

/// The shares of the quietest frames tried first, in order.
const FIRST_SHARES: [f32; 9] = [0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.1, 0.9];

/// The prior's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietPrior {
    /// Candidates (one query each).
    pub rounds: usize,
    /// Seed of the noise and of the later rounds' shares.
    pub seed: u64,
}

/// One candidate of the prior and what the target heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuietRound {
    /// Share of the input's 20-ms frames (the quietest) that carried the noise.
    pub share: f32,
    /// Seed of the noise.
    pub seed: u64,
    /// What the target heard.
    pub transcript: String,
    /// Whether that met the goal.
    pub success: bool,
    /// SNR of the candidate as heard (after the bound's projection).
    pub snr_db: f64,
}

/// The share of round `round` (0-based): the fixed schedule first, then one drawn within ±0.1
/// of `best` (the best share so far), kept within [0.05, 0.95].
pub fn round_share(round: usize, best: f32, rng: &mut Rng) -> f32 {
    match FIRST_SHARES.get(round) {
        Some(s) => *s,
        None => (best + rng.symmetric(0.1)).clamp(0.05, 0.95),
    }
}

/// Per sample, whether its 20-ms frame is among the quietest `share` of `x`'s frames (by
/// RMS; ties at the threshold count as quiet, so at least one frame is chosen).
pub fn quiet_gate(x: &[f32], share: f32) -> Vec<bool> {
    // Mean energies order the frames as their RMS does.
    let energy = crate::metrics::frame_energies(x, QUIET_FRAME);
    let mut sorted = energy.clone();
    sorted.sort_by(f64::total_cmp);
    let k = ((share.clamp(0.0, 1.0) * sorted.len() as f32).ceil() as usize).clamp(1, sorted.len());
    let threshold = sorted[k - 1];
    let mut gate = Vec::with_capacity(x.len());
    for (frame, e) in x.chunks(QUIET_FRAME).zip(&energy) {
        gate.extend(std::iter::repeat_n(*e <= threshold, frame.len()));
    }
    gate
}

/// The candidate perturbation for `x`: white noise from `seed` on the quietest `share` of the
/// frames, with the L2 norm the constraints allow (their tightest of `l2` and `snr_db`), or
/// with a third of `linf` as its per-sample deviation where neither is set. The caller
/// projects it onto the constraints as every query is projected.
pub fn quiet_noise(x: &[f32], share: f32, seed: u64, constraints: &Constraints) -> Vec<f32> {
    let gate = quiet_gate(x, share);
    let mut rng = Rng::new(seed);
    let mut delta: Vec<f32> = gate
        .iter()
        .map(|on| {
            let n = rng.normal();
            if *on {
                n
            } else {
                0.0
            }
        })
        .collect();
    let norm = crate::metrics::l2(&delta);
    let scale = match constraints.max_l2(x) {
        Some(l2) if norm > 0.0 => (l2 / norm) as f32,
        _ => constraints.linf.unwrap_or(0.02) / 3.0,
    };
    delta.iter_mut().for_each(|d| *d *= scale);
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like bursts with pauses: 20-ms frames 0–9, 20–29 and 40–49 loud, frames 10–19
    /// and 30–39 quiet (each a little louder than the one before, so no two tie).
    fn bursts() -> Vec<f32> {
        (0..16000)
            .map(|i| {
                let f = i / QUIET_FRAME;
                let a = if (f / 10).is_multiple_of(2) {
                    0.3
                } else {
                    0.002 * (1.0 + f as f32 / 50.0)
                };
                a * (i as f32 * 0.07).sin()
            })
            .collect()
    }

    fn quiet(i: usize) -> bool {
        (i / QUIET_FRAME / 10) % 2 == 1
    }

    #[test]
    fn the_noise_sits_in_the_quietest_frames_with_the_whole_snr_budget() {
        let x = bursts();
        let c = Constraints {
            linf: Some(0.5),
            snr_db: Some(25.0),
            ..Default::default()
        };
        // 20 of the 50 frames are quiet: a share of 0.4 is exactly the pauses.
        let d = quiet_noise(&x, 0.4, 7, &c);
        assert!(d.iter().enumerate().all(|(i, v)| quiet(i) || *v == 0.0));
        assert!(d
            .iter()
            .enumerate()
            .filter(|(i, _)| quiet(*i))
            .all(|(_, v)| *v != 0.0));
        // The whole budget is spent: SNR 25 dB (before the projection's clip, none here).
        let snr = crate::metrics::snr_db(&x, &d);
        assert!((snr - 25.0).abs() < 0.01, "SNR {snr}");
        // In the pauses the noise is far louder than the speech it sits on.
        let pause_rms = crate::metrics::l2(&x[3200..6400]) / 3200f64.sqrt();
        let noise_rms = crate::metrics::l2(&d[3200..6400]) / 3200f64.sqrt();
        assert!(noise_rms > 3.0 * pause_rms, "{noise_rms} vs {pause_rms}");
        // Another seed, another noise; the same seed, the same.
        assert_ne!(d, quiet_noise(&x, 0.4, 8, &c));
        assert_eq!(d, quiet_noise(&x, 0.4, 7, &c));
    }

    #[test]
    fn the_gate_chooses_the_share_and_at_least_one_frame() {
        let x = bursts();
        let frames = x.len().div_ceil(QUIET_FRAME);
        for share in [0.1f32, 0.3, 0.4] {
            let gate = quiet_gate(&x, share);
            let on = gate.iter().filter(|g| **g).count();
            let want = (share * frames as f32).ceil() as usize * QUIET_FRAME;
            assert_eq!(on, want, "share {share}");
            assert!(gate.iter().enumerate().all(|(i, g)| !g || quiet(i)));
        }
        assert_eq!(
            quiet_gate(&x, 0.0).iter().filter(|g| **g).count(),
            QUIET_FRAME
        );
        // Later rounds stay near the best share and inside [0.05, 0.95].
        let mut rng = Rng::new(1);
        assert_eq!(round_share(0, 0.9, &mut rng), 0.5);
        for r in 9..200 {
            let s = round_share(r, 0.9, &mut rng);
            assert!((0.8..=0.95).contains(&s), "{s}");
        }
    }
}
