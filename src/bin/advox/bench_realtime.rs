//! `advox bench --realtime`: the real-time cost of the plugins' processing (the core code
//! Cloak and Sentinel call in `process()`), per 512-sample stereo block at 48 kHz, as a
//! real-time factor of one core. Sentinel's model-check worker runs on its own thread and is
//! not included.

use advox::stream::cloak::{CloakMode, CloakSettings};
use advox::stream::processors::{CloakProcessor, SentinelProcessor};
use advox::stream::sentinel::SentinelSettings;
use anyhow::Result;
use std::time::Instant;

const RATE: f32 = 48_000.0;
const BLOCK: usize = 512;
const SECONDS: usize = 20;

/// (name, mean µs per block, p99 µs, real-time factor).
type Row = (String, f64, f64, f64);

fn summarise(name: &str, mut micros: Vec<f64>) -> Row {
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    micros.sort_by(f64::total_cmp);
    let p99 = micros[(micros.len() * 99 / 100).min(micros.len() - 1)];
    let block_us = BLOCK as f64 / RATE as f64 * 1e6;
    (name.to_string(), mean, p99, mean / block_us)
}

/// Speech-like stereo test signal: a bundled sample looped, or a harmonic chord.
fn signal() -> Vec<f32> {
    let len = SECONDS * RATE as usize;
    let speech = advox::audio::read_audio_16k_mono(std::path::Path::new(
        "samples/whats_the_weather_today.wav",
    ))
    .and_then(|x| advox::audio::resample(&x, 16_000, RATE as u32));
    match speech {
        Ok(x) if !x.is_empty() => (0..len).map(|i| x[i % x.len()]).collect(),
        _ => (0..len)
            .map(|i| {
                let t = i as f32 / RATE;
                (1..20)
                    .map(|h| (std::f32::consts::TAU * 150.0 * h as f32 * t).sin() / h as f32)
                    .sum::<f32>()
                    * 0.1
            })
            .collect(),
    }
}

/// Microseconds per block of `process` over `x` as stereo 512-sample blocks.
fn time_blocks(x: &[f32], mut process: impl FnMut(&mut [&mut [f32]])) -> Vec<f64> {
    let (mut left, mut right) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    let mut times = Vec::new();
    for block in x.chunks_exact(BLOCK) {
        left.copy_from_slice(block);
        right.copy_from_slice(block);
        let t = Instant::now();
        process(&mut [&mut left[..], &mut right[..]]);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times
}

/// Cloak's `process()`: the plugin's processor on two channels.
fn time_cloak(x: &[f32], settings: &CloakSettings, source: &[f32]) -> Result<Vec<f64>> {
    let mut cloak = CloakProcessor::new(RATE, 2)?;
    Ok(time_blocks(x, |io| {
        cloak.process(io, settings, Some(source))
    }))
}

/// Sentinel's `process()` without the model check (its worker runs on another thread).
fn time_sentinel(x: &[f32]) -> Result<Vec<f64>> {
    let mut sentinel = SentinelProcessor::new(RATE, None)?;
    let settings = SentinelSettings::default();
    Ok(time_blocks(x, |io| {
        sentinel.process(io, &settings, false, &mut |d| {
            std::hint::black_box(d);
        })
    }))
}

/// Run the real-time benchmark and print a table (or JSON).
pub fn run(json: bool) -> Result<()> {
    let x = signal();
    let mut rng = advox::rng::Rng::new(5);
    let source: Vec<f32> = (0..RATE as usize).map(|_| rng.symmetric(0.02)).collect();
    let universal = CloakSettings {
        mode: CloakMode::Universal,
        ..Default::default()
    };
    let noise = CloakSettings::default();
    let rows = [
        summarise("cloak universal", time_cloak(&x, &universal, &source)?),
        summarise("cloak masked-noise", time_cloak(&x, &noise, &source)?),
        summarise("sentinel", time_sentinel(&x)?),
    ];
    if json {
        let obj: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(name, mean, p99, rtf)| {
                (
                    name.replace(' ', "_"),
                    serde_json::json!({"mean_us": mean, "p99_us": p99, "realtime_factor": rtf}),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    println!(
        "process() per {BLOCK}-sample stereo block at {} kHz ({SECONDS} s of speech; block = {:.2} ms)",
        RATE / 1000.0,
        BLOCK as f32 / RATE * 1000.0
    );
    println!(
        "{:<20} {:>10} {:>10} {:>14}",
        "", "mean µs", "p99 µs", "real-time fac."
    );
    for (name, mean, p99, rtf) in rows {
        println!("{name:<20} {mean:>10.1} {p99:>10.1} {rtf:>14.4}");
    }
    Ok(())
}
