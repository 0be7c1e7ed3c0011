//! Per-band levels of Cloak's last frame — the input spectrum, its masking threshold and the
//! perturbation added under it — published through atomics so an editor on another thread can
//! draw them without a lock. All levels are on the masking model's dB scale (a full-scale sine
//! at 96 dB), so the three curves compare directly.
//!
//! The audio thread accumulates powers bin by bin into fixed arrays ([`BandAccumulator`]) and
//! stores one `f32` per band and curve when a frame is done; nothing allocates.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of bands.
pub const METER_BANDS: usize = 32;
/// Lower edge of the first band (Hz).
pub const METER_LOW_HZ: f32 = 40.0;
/// Upper edge of the last band (Hz).
pub const METER_HIGH_HZ: f32 = 20_000.0;
/// Level reported for a band with no energy (or above the Nyquist frequency), dB.
pub const METER_FLOOR_DB: f32 = -20.0;

/// Band `b`'s edges (Hz): logarithmically spaced from [`METER_LOW_HZ`] to [`METER_HIGH_HZ`].
pub fn band_edges_hz(b: usize) -> (f32, f32) {
    let ratio = METER_HIGH_HZ / METER_LOW_HZ;
    let edge = |i: usize| METER_LOW_HZ * ratio.powf(i as f32 / METER_BANDS as f32);
    (edge(b), edge(b + 1))
}

/// The band holding frequency `f_hz`, if any.
pub fn band_of(f_hz: f32) -> Option<usize> {
    if !(METER_LOW_HZ..METER_HIGH_HZ).contains(&f_hz) {
        return None;
    }
    let position = (f_hz / METER_LOW_HZ).ln() / (METER_HIGH_HZ / METER_LOW_HZ).ln();
    Some(((position * METER_BANDS as f32) as usize).min(METER_BANDS - 1))
}

/// One curve's band levels as atomics (`f32` bits).
struct AtomicBands([AtomicU32; METER_BANDS]);

impl AtomicBands {
    fn new() -> Self {
        AtomicBands(std::array::from_fn(|_| {
            AtomicU32::new(METER_FLOOR_DB.to_bits())
        }))
    }

    fn store(&self, levels: &[f32; METER_BANDS]) {
        for (a, v) in self.0.iter().zip(levels) {
            a.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    fn load(&self) -> [f32; METER_BANDS] {
        std::array::from_fn(|b| f32::from_bits(self.0[b].load(Ordering::Relaxed)))
    }
}

/// What the editor reads: the three curves of the last frame and a frame counter.
pub struct BandMeter {
    input: AtomicBands,
    threshold: AtomicBands,
    perturbation: AtomicBands,
    frames: AtomicU64,
}

impl Default for BandMeter {
    fn default() -> Self {
        BandMeter {
            input: AtomicBands::new(),
            threshold: AtomicBands::new(),
            perturbation: AtomicBands::new(),
            frames: AtomicU64::new(0),
        }
    }
}

/// A copy of the meter's curves (dB per band).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandSnapshot {
    /// The input's power spectrum.
    pub input_db: [f32; METER_BANDS],
    /// The masking threshold.
    pub threshold_db: [f32; METER_BANDS],
    /// The perturbation added.
    pub perturbation_db: [f32; METER_BANDS],
    /// Frames published so far (changes when new data arrived).
    pub frames: u64,
}

impl BandMeter {
    /// Read the curves (a torn read across bands is possible and harmless for display).
    pub fn snapshot(&self) -> BandSnapshot {
        BandSnapshot {
            input_db: self.input.load(),
            threshold_db: self.threshold.load(),
            perturbation_db: self.perturbation.load(),
            frames: self.frames.load(Ordering::Acquire),
        }
    }

    /// Back to the floor (e.g. on reset).
    pub fn clear(&self) {
        let floor = [METER_FLOOR_DB; METER_BANDS];
        self.input.store(&floor);
        self.threshold.store(&floor);
        self.perturbation.store(&floor);
    }
}

/// Per-band power sums on the audio thread, for one sample rate and frame size.
pub struct BandAccumulator {
    /// Band of every bin (`usize::MAX`: none).
    band_of_bin: Vec<usize>,
    bins_per_band: [u32; METER_BANDS],
    input: [f32; METER_BANDS],
    threshold: [f32; METER_BANDS],
    perturbation: [f32; METER_BANDS],
}

impl BandAccumulator {
    /// For `bins` bins of `bin_hz` each.
    pub fn new(bins: usize, bin_hz: f32) -> Self {
        let band_of_bin: Vec<usize> = (0..bins)
            .map(|k| band_of(k as f32 * bin_hz).unwrap_or(usize::MAX))
            .collect();
        let mut bins_per_band = [0u32; METER_BANDS];
        for &b in band_of_bin.iter().filter(|&&b| b < METER_BANDS) {
            bins_per_band[b] += 1;
        }
        BandAccumulator {
            band_of_bin,
            bins_per_band,
            input: [0.0; METER_BANDS],
            threshold: [0.0; METER_BANDS],
            perturbation: [0.0; METER_BANDS],
        }
    }

    /// Sum the input spectrum and threshold (both dB per bin) of a frame.
    pub fn add_analysis(&mut self, psd_db: &[f32], theta_db: &[f32]) {
        self.input = [0.0; METER_BANDS];
        self.threshold = [0.0; METER_BANDS];
        for ((&b, &p), &t) in self.band_of_bin.iter().zip(psd_db).zip(theta_db) {
            if b < METER_BANDS {
                self.input[b] += db_to_power(p);
                self.threshold[b] += db_to_power(t);
            }
        }
    }

    /// Start the perturbation sums of a frame.
    pub fn clear_perturbation(&mut self) {
        self.perturbation = [0.0; METER_BANDS];
    }

    /// Add bin `k`'s perturbation level (dB on the model's scale).
    #[inline]
    pub fn add_perturbation(&mut self, k: usize, level_db: f32) {
        if let Some(&b) = self.band_of_bin.get(k) {
            if b < METER_BANDS {
                self.perturbation[b] += db_to_power(level_db);
            }
        }
    }

    /// Publish the band means (dB) to `meter`.
    pub fn publish(&self, meter: &BandMeter) {
        let to_db = |sums: &[f32; METER_BANDS]| -> [f32; METER_BANDS] {
            std::array::from_fn(|b| {
                let count = self.bins_per_band[b];
                let mean = if count > 0 {
                    sums[b] / count as f32
                } else {
                    0.0
                };
                if mean > 0.0 && mean.is_finite() {
                    (10.0 * mean.log10()).max(METER_FLOOR_DB)
                } else {
                    METER_FLOOR_DB
                }
            })
        };
        meter.input.store(&to_db(&self.input));
        meter.threshold.store(&to_db(&self.threshold));
        meter.perturbation.store(&to_db(&self.perturbation));
        meter.frames.fetch_add(1, Ordering::Release);
    }
}

fn db_to_power(db: f32) -> f32 {
    if db.is_finite() {
        10f32.powf(db / 10.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_the_range_in_order() {
        let (lo, _) = band_edges_hz(0);
        let (_, hi) = band_edges_hz(METER_BANDS - 1);
        assert!((lo - METER_LOW_HZ).abs() < 1e-3 && (hi - METER_HIGH_HZ).abs() < 0.5);
        for b in 0..METER_BANDS {
            let (l, h) = band_edges_hz(b);
            let centre = (l * h).sqrt();
            assert_eq!(band_of(centre), Some(b));
        }
        assert_eq!(band_of(10.0), None);
        assert_eq!(band_of(22_000.0), None);
    }

    #[test]
    fn accumulator_averages_power_per_band() {
        let bins = 513;
        let bin_hz = 48_000.0 / 1024.0;
        let mut acc = BandAccumulator::new(bins, bin_hz);
        let psd = vec![60.0; bins];
        let theta = vec![40.0; bins];
        acc.add_analysis(&psd, &theta);
        acc.clear_perturbation();
        for k in 0..bins {
            acc.add_perturbation(k, 30.0);
        }
        let meter = BandMeter::default();
        acc.publish(&meter);
        let s = meter.snapshot();
        assert_eq!(s.frames, 1);
        // Bands with bins hold exactly the flat levels; some low bands (narrower than a bin)
        // hold none and sit at the floor.
        let mut empty = 0;
        for b in 0..METER_BANDS {
            if acc.bins_per_band[b] > 0 {
                assert!(
                    (s.input_db[b] - 60.0).abs() < 1e-3,
                    "band {b}: {}",
                    s.input_db[b]
                );
                assert!((s.threshold_db[b] - 40.0).abs() < 1e-3);
                assert!((s.perturbation_db[b] - 30.0).abs() < 1e-3);
            } else {
                empty += 1;
                assert_eq!(s.input_db[b], METER_FLOOR_DB);
            }
        }
        assert!(empty > 0);
        meter.clear();
        assert_eq!(meter.snapshot().threshold_db[10], METER_FLOOR_DB);
    }
}
