//! What Cloak does to a recording, measured: the plugin's own processing ([`CloakProcessor`],
//! in the host's blocks, at the host's rate), then what reaches a recogniser (16 kHz) and what
//! a listener loses — wideband PESQ (ITU-T P.862.2, the `pesq` crate), STOI, SNR, the share of the
//! perturbation's energy under the masking threshold — and the real-time factor.
//!
//! The reference of every comparison is the same chain with Cloak bypassed (the input, delayed
//! and resampled as the cloaked one is, bit for bit the bypass output), so a number measures
//! Cloak and nothing else.

use crate::attack::cloak_model::{add_at_rate, cloak_with_model, ModelCloakConfig};
use crate::attack::windowed::{WindowOutcome, WindowedAttack};
use crate::audio::resample;
use crate::masking::{MaskingConfig, MaskingThreshold};
use crate::metrics::snr_db;
use crate::metrics::stoi::stoi;
use crate::model::LoadedModel;
use crate::stream::cloak::CloakSettings;
use crate::stream::model_cloak::{spawn_model_cloak, ModelStreamConfig};
use crate::stream::processors::CloakProcessor;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Whisper's (and PESQ's wideband) sample rate.
const RATE_16K: u32 = 16_000;

/// A recording through Cloak, as a recogniser and a listener get it.
#[derive(Debug, Clone)]
pub struct Cloaked {
    /// The input through the chain with Cloak bypassed (16 kHz).
    pub reference: Vec<f32>,
    /// The input through Cloak (16 kHz, aligned with `reference`).
    pub cloaked: Vec<f32>,
    /// `reference` at the host's rate, as a bounce of the bypassed track holds it.
    pub reference_host: Vec<f32>,
    /// `cloaked` at the host's rate (aligned with `reference_host`), as a bounce holds it.
    pub cloaked_host: Vec<f32>,
    /// What it cost the listener.
    pub quality: CloakQuality,
}

/// What Cloak cost a listener, and its processing time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CloakQuality {
    /// Signal-to-perturbation ratio (dB).
    pub snr_db: f64,
    /// Wideband PESQ (P.862.2 MOS-LQO) of the cloaked signal against the reference; `None`
    /// where PESQ gave no score (e.g. a recording too short or silent for its alignment).
    pub pesq_wb: Option<f64>,
    /// STOI (0..1) of the cloaked signal against the reference; `None` where less than 0.4 s
    /// of the reference is within 40 dB of its loudest frame.
    #[serde(default)]
    pub stoi: Option<f64>,
    /// Share of the perturbation's energy under the reference's masking threshold.
    pub energy_under_threshold: f64,
    /// Processing time over the recording's duration (one channel at the host's rate).
    pub rtf: f64,
}

/// Run `x` (16 kHz mono) through Cloak at `host_rate` in blocks of `block` samples, as a
/// host would (resampled up, processed, resampled back), with `source` the universal
/// perturbation at `host_rate` where the mode needs one.
pub fn cloak_recording(
    x: &[f32],
    host_rate: u32,
    block: usize,
    settings: &CloakSettings,
    source: Option<&[f32]>,
) -> Result<Cloaked> {
    if x.is_empty() || block == 0 {
        return Err(Error::InvalidArgument(
            "Cloak needs a non-empty recording and a block size".into(),
        ));
    }
    let up = resample(x, RATE_16K, host_rate)?;
    let mut processor = CloakProcessor::new(host_rate as f32, 1)?;
    let latency = processor.latency();
    let mut signal = up.clone();
    signal.resize(up.len() + latency, 0.0);
    let start = Instant::now();
    for chunk in signal.chunks_mut(block) {
        processor.process(&mut [chunk], settings, source);
    }
    let seconds = start.elapsed().as_secs_f64();
    let rtf = seconds / (up.len() as f64 / host_rate as f64);
    signal.drain(..latency);
    measured(up, signal, host_rate, rtf)
}

/// Run `x` (16 kHz mono) through Cloak's model-in-the-loop mode at `host_rate`, as an offline
/// render does: the perturbation found window by window on `x` is added at the host's rate,
/// and the result is resampled back as a recogniser gets it. The real-time factor is the
/// render's time over the recording's duration.
pub fn cloak_recording_with_model(
    model: &LoadedModel,
    x: &[f32],
    host_rate: u32,
    cfg: &ModelCloakConfig,
    cancel: &AtomicBool,
    on_window: &mut dyn FnMut(&WindowOutcome),
) -> Result<(Cloaked, WindowedAttack)> {
    if x.is_empty() {
        return Err(Error::InvalidArgument(
            "Cloak needs a non-empty recording".into(),
        ));
    }
    let up = resample(x, RATE_16K, host_rate)?;
    let start = Instant::now();
    let attack = cloak_with_model(model, x, cfg, cancel, on_window, &mut |_| {})?;
    let mut out = up.clone();
    add_at_rate(&mut out, host_rate, &attack.perturbation)?;
    let seconds = start.elapsed().as_secs_f64();
    let rtf = seconds / (x.len() as f64 / RATE_16K as f64);
    Ok((measured(up, out, host_rate, rtf)?, attack))
}

/// Run `x` (16 kHz mono) through Cloak's model mode in its streaming form
/// ([`crate::stream::model_cloak`], as the plugin runs it) at `host_rate` in blocks of
/// `block` samples: `live` paces the blocks in real time (the worker gets what a live stream
/// gives it: a window's attack is cut at its deadline), else as an offline render (the audio
/// thread waits for the worker). Also returns the chunks finished, moved and missed.
pub fn cloak_recording_streamed(
    x: &[f32],
    host_rate: u32,
    block: usize,
    config: ModelStreamConfig,
    live: bool,
    load: impl FnOnce() -> Result<LoadedModel> + Send + 'static,
) -> Result<(Cloaked, (u64, u64, u64))> {
    if x.is_empty() || block == 0 {
        return Err(Error::InvalidArgument(
            "Cloak needs a non-empty recording and a block size".into(),
        ));
    }
    let up = resample(x, RATE_16K, host_rate)?;
    let config = ModelStreamConfig {
        sample_rate: host_rate as f32,
        ..config
    };
    let (mut stream, worker) = spawn_model_cloak(config, 1, load)?;
    let latency = stream.latency();
    let mut signal = up.clone();
    signal.resize(up.len() + latency, 0.0);
    let start = Instant::now();
    let mut done = 0usize;
    for chunk in signal.chunks_mut(block) {
        if live {
            // A block is processed when its last sample has arrived.
            let due = (done + chunk.len()) as f64 / host_rate as f64;
            let now = start.elapsed().as_secs_f64();
            if due > now {
                std::thread::sleep(std::time::Duration::from_secs_f64(due - now));
            }
        }
        done += chunk.len();
        stream.process(&mut [chunk], !live, 1.0);
    }
    let seconds = start.elapsed().as_secs_f64();
    let counts = stream.state().counts();
    drop(stream);
    let _ = worker.join();
    let rtf = seconds / (up.len() as f64 / host_rate as f64);
    signal.drain(..latency);
    Ok((measured(up, signal, host_rate, rtf)?, counts))
}

/// The quality of `cloaked_host` against `reference_host` (both at `host_rate`), judged at
/// 16 kHz as a recogniser and PESQ get them (trimmed to the shorter).
fn measured(
    reference_host: Vec<f32>,
    cloaked_host: Vec<f32>,
    host_rate: u32,
    rtf: f64,
) -> Result<Cloaked> {
    let reference = resample(&reference_host, host_rate, RATE_16K)?;
    let cloaked = resample(&cloaked_host, host_rate, RATE_16K)?;
    let n = reference.len().min(cloaked.len());
    let (reference, cloaked) = (reference[..n].to_vec(), cloaked[..n].to_vec());
    let delta: Vec<f32> = cloaked.iter().zip(&reference).map(|(c, r)| c - r).collect();
    let threshold = MaskingThreshold::compute(&reference, MaskingConfig::default())?;
    let quality = CloakQuality {
        snr_db: snr_db(&reference, &delta),
        pesq_wb: pesq_wb(&reference, &cloaked),
        stoi: stoi(&reference, &cloaked, RATE_16K)?,
        energy_under_threshold: threshold.stats(&delta)?.energy_under_threshold,
        rtf,
    };
    let m = reference_host.len().min(cloaked_host.len());
    Ok(Cloaked {
        reference,
        cloaked,
        reference_host: reference_host[..m].to_vec(),
        cloaked_host: cloaked_host[..m].to_vec(),
        quality,
    })
}

/// Wideband PESQ (P.862.2 MOS-LQO) of `degraded` against `reference`, both 16 kHz, as 16-bit
/// PCM; `None` where PESQ gives no score.
pub fn pesq_wb(reference: &[f32], degraded: &[f32]) -> Option<f64> {
    let pcm =
        |s: &[f32]| -> Vec<i16> { s.iter().map(|&v| crate::audio::quantize_i16(v)).collect() };
    pesq::pesq_wb(&pcm(reference), &pcm(degraded))
        .ok()
        .map(f64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::cloak::CloakMode;

    /// A speech-like test signal: a 150-Hz pulse train through formant-ish resonances, in
    /// syllables of 200 ms with pauses.
    fn voice(seconds: f32) -> Vec<f32> {
        let n = (seconds * RATE_16K as f32) as usize;
        let mut rng = crate::rng::Rng::new(3);
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE_16K as f32;
                let syllable = ((t * 2.5).fract() < 0.6) as u8 as f32;
                let pitch = (2.0 * std::f32::consts::PI * 150.0 * t).sin().powi(15);
                let formants = (2.0 * std::f32::consts::PI * 700.0 * t).sin()
                    + 0.5 * (2.0 * std::f32::consts::PI * 1200.0 * t).sin();
                syllable * (0.3 * pitch * formants + 0.01 * rng.normal())
            })
            .collect()
    }

    #[test]
    fn bypass_costs_nothing_and_cloak_costs_something() {
        let x = voice(3.0);
        let bypass = CloakSettings {
            bypass: true,
            ..CloakSettings::default()
        };
        let dry = cloak_recording(&x, 48_000, 512, &bypass, None).unwrap();
        assert_eq!(dry.reference, dry.cloaked);
        assert!(dry.quality.snr_db.is_infinite());
        let wet = cloak_recording(&x, 48_000, 512, &CloakSettings::default(), None).unwrap();
        assert_eq!(wet.reference, dry.reference);
        assert_eq!(CloakSettings::default().mode, CloakMode::MaskedNoise);
        // Masked noise at the default 6-dB margin: audible in the numbers, not gross.
        assert!(
            wet.quality.snr_db > 5.0 && wet.quality.snr_db < 40.0,
            "{:?}",
            wet.quality
        );
        assert!(
            wet.quality.energy_under_threshold > 0.5,
            "{:?}",
            wet.quality
        );
        let pesq = wet.quality.pesq_wb.unwrap();
        assert!(pesq > 1.0 && pesq < 4.6, "{pesq}");
        assert!(dry.quality.pesq_wb.unwrap() > pesq);
        assert!((dry.quality.stoi.unwrap() - 1.0).abs() < 1e-9);
        let stoi = wet.quality.stoi.unwrap();
        assert!(stoi > 0.5 && stoi < 1.0, "{stoi}");
        assert!(wet.quality.rtf > 0.0);
    }
}
