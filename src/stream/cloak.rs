//! Cloak: add a perturbation that stays a margin under the input's masking threshold, frame by
//! frame, in real time.
//!
//! Per channel, every hop (half a frame) the last frame of input is analysed by the masking
//! model ([`MaskingAnalyzer`], full-scale reference level, so the threshold follows the signal's
//! real level). A perturbation frame — a segment of a looped universal perturbation under a
//! √Hann window, or noise with random phases — is scaled bin by bin so its power stays
//! `margin_db` under the threshold (bins outside the band are zeroed), resynthesised with a √Hann
//! window and overlap-added (√Hann² = Hann sums to one at half-frame hops, so an unscaled
//! perturbation comes out unchanged). Since a synthesised frame also reaches into the analysis
//! windows of its two neighbours, each bin's allowance is the lowest of the three frames'
//! thresholds: no pre-echo into the silence before an onset, no post-echo after an offset. That
//! needs the next frame's threshold, so the latency is a frame and a hop (1.5 frames).
//! The threshold is capped at the frame's loudest component (the threshold in quiet alone
//! would allow more than full scale above ~16 kHz), and lowered as a whole when its in-band sum
//! exceeds the frame's power, so the perturbation is never louder than the signal and digital
//! silence gets (next to) none. The
//! output is the delayed input plus `depth` times the perturbation; bypass and depth 0 give the
//! delayed input bit for bit.
//!
//! [`CloakMode::MuteSegment`] is different: it adds a short segment trained to make Whisper's
//! transcription hear nothing (see [`super::mute_segment`]) as it is, unshaped, over the first
//! samples of every 30-s window from the stream's start, and does no analysis at all.
//!
//! Levels: a frame's bin `k` has `z² = |sqrt(8/3) · FFT(hann · x)_k / N|²` as in the masking
//! model; the allowance is `z²_max · 10^{(θ_k − margin − 96)/10}`. A √Hann-windowed segment's
//! `2 |P_k|² / N²` equals that `z²` for noise and overestimates it by 0.85 dB for a pure tone, so
//! the scaling errs on the quiet side; noise frames get `|P_k| = N · sqrt(allowance)`.

use super::band_meter::{BandAccumulator, BandMeter};
use super::normal_or_zero;
use crate::masking::{MaskingAnalyzer, Normalization, PSD_NORMALISED_MAX_DB};
use crate::rng::Rng;
use crate::{Error, Result};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// What Cloak adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloakMode {
    /// A universal perturbation (from `advox universal`), looped, shaped under the threshold.
    Universal,
    /// Noise at the allowance in every bin (untargeted anti-transcription; needs no file).
    MaskedNoise,
    /// A mute segment (`advox universal --mode prefix-mute`; the built-in one by default)
    /// added unshaped over the first samples of every [`super::mute_segment::WINDOW_SECONDS`]
    /// window of input time since the last reset, where Whisper's long-form transcription
    /// starts a window once the previous one was heard as nothing.
    MuteSegment,
}

/// Whose time the mute mode's windows count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MuteClock {
    /// The input's: a host that compensates Cloak's latency (a DAW, its renders) puts the
    /// segment at the start of its timeline's windows.
    #[default]
    Input,
    /// The output's: a live stream recorded as it comes out of Cloak (no latency
    /// compensation) starts with the segment.
    Output,
}

/// Cloak's settings, read once per block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloakSettings {
    /// What to add.
    pub mode: CloakMode,
    /// Scale of the added perturbation, 0..=1 (0: the delayed input exactly).
    pub depth: f32,
    /// How far under the masking threshold every bin of the perturbation stays (dB).
    pub margin_db: f32,
    /// Lowest frequency that gets perturbation (Hz).
    pub band_low_hz: f32,
    /// Highest frequency that gets perturbation (Hz).
    pub band_high_hz: f32,
    /// Pass the (delayed) input through untouched.
    pub bypass: bool,
}

impl Default for CloakSettings {
    fn default() -> Self {
        CloakSettings {
            mode: CloakMode::MaskedNoise,
            depth: 1.0,
            margin_db: 6.0,
            band_low_hz: 100.0,
            band_high_hz: 8_000.0,
            bypass: false,
        }
    }
}

/// One channel of Cloak at one sample rate.
pub struct CloakChannel {
    n: usize,
    hop: usize,
    sample_rate: f32,
    analyzer: MaskingAnalyzer,
    sqrt_hann: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    /// Samples seen since the last reset.
    time: u64,
    /// Samples per window of the mute mode.
    window: u64,
    /// Whose time the mute mode's windows count.
    mute_clock: MuteClock,
    /// Dry delay line of `latency` samples (ring indexed by `time % latency`).
    dry: Vec<f32>,
    /// The last `n` inputs (ring indexed by `time % n`).
    input: Vec<f32>,
    /// Overlap-add accumulator of the perturbation (ring indexed by output `time % n`).
    ola: Vec<f32>,
    /// Thresholds (dB) of the previous, pending and newest frames.
    theta_prev: Vec<f32>,
    theta_pending: Vec<f32>,
    theta_new: Vec<f32>,
    /// Whether a frame is pending synthesis.
    pending: bool,
    /// Reference power of the pending frame.
    psd_max: f32,
    frame: Vec<f32>,
    /// The pending frame's allowance per bin (see [`CloakChannel::fill_allowance`]).
    allowed: Vec<f32>,
    spectrum: Vec<Complex32>,
    buffer: Vec<f32>,
    fwd_scratch: Vec<Complex32>,
    inv_scratch: Vec<Complex32>,
    rng: Rng,
    /// Where the last frame's band levels go (editors), if anywhere.
    meter: Option<Arc<BandMeter>>,
    bands: BandAccumulator,
}

impl CloakChannel {
    /// A channel for `sample_rate` with frames of `n` samples (a multiple of 4, ≥ 16; see
    /// [`super::frame_size_for`]); `seed` drives the noise mode.
    pub fn new(sample_rate: f32, n: usize, seed: u64) -> Result<Self> {
        let analyzer = MaskingAnalyzer::new(sample_rate, n)?;
        if !n.is_multiple_of(4) {
            return Err(Error::InvalidArgument(format!(
                "Cloak frame size must be a multiple of 4, got {n}"
            )));
        }
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let bins = n / 2 + 1;
        Ok(CloakChannel {
            n,
            hop: n / 2,
            sample_rate,
            analyzer,
            sqrt_hann: crate::dsp::hann_periodic(n)
                .iter()
                .map(|w| w.sqrt())
                .collect(),
            fwd_scratch: forward.make_scratch_vec(),
            inv_scratch: inverse.make_scratch_vec(),
            forward,
            inverse,
            time: 0,
            window: (super::mute_segment::WINDOW_SECONDS * sample_rate as f64).round() as u64,
            mute_clock: MuteClock::Input,
            dry: vec![0.0; n + n / 2],
            input: vec![0.0; n],
            ola: vec![0.0; n],
            theta_prev: vec![f32::NEG_INFINITY; bins],
            theta_pending: vec![f32::NEG_INFINITY; bins],
            theta_new: vec![f32::NEG_INFINITY; bins],
            pending: false,
            psd_max: 1.0,
            frame: vec![0.0; n],
            allowed: vec![0.0; bins],
            spectrum: vec![Complex32::new(0.0, 0.0); bins],
            buffer: vec![0.0; n],
            rng: Rng::new(seed),
            meter: None,
            bands: BandAccumulator::new(bins, sample_rate / n as f32),
        })
    }

    /// Publish every frame's input spectrum, threshold and perturbation per band to `meter`
    /// (call before processing; publishing costs a few hundred additions per frame).
    pub fn set_meter(&mut self, meter: Option<Arc<BandMeter>>) {
        self.meter = meter;
    }

    /// Count the mute mode's windows in input time (the default) or output time.
    pub fn set_mute_clock(&mut self, clock: MuteClock) {
        self.mute_clock = clock;
    }

    /// Latency in samples (a frame and a hop).
    pub fn latency(&self) -> usize {
        self.n + self.hop
    }

    /// Forget all history (the noise generator's stream continues).
    pub fn reset(&mut self) {
        for buf in [&mut self.dry, &mut self.input, &mut self.ola] {
            buf.iter_mut().for_each(|v| *v = 0.0);
        }
        for theta in [
            &mut self.theta_prev,
            &mut self.theta_pending,
            &mut self.theta_new,
        ] {
            theta.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
        }
        self.time = 0;
        self.pending = false;
        if let Some(meter) = &self.meter {
            meter.clear();
        }
    }

    /// Process `io` in place. `source` is the universal perturbation at this channel's rate
    /// (looped; `None` or empty in universal mode adds nothing), or in mute mode the mute
    /// segment at this rate. Never allocates.
    pub fn process(&mut self, io: &mut [f32], settings: &CloakSettings, source: Option<&[f32]>) {
        let source = source.filter(|s| !s.is_empty());
        let mute = settings.mode == CloakMode::MuteSegment;
        let pass_through = settings.bypass || settings.depth == 0.0;
        let depth = if settings.depth.is_finite() {
            settings.depth.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let latency = self.dry.len();
        for sample in io.iter_mut() {
            let x = normal_or_zero(*sample);
            let d = (self.time % latency as u64) as usize;
            let o = (self.time % self.n as u64) as usize;
            let dry = self.dry[d];
            let wet = if mute {
                self.mute_sample(source)
            } else {
                self.ola[o]
            };
            self.ola[o] = 0.0;
            *sample = if pass_through { dry } else { dry + depth * wet };
            self.dry[d] = x;
            self.input[o] = x;
            self.time += 1;
            // The mute mode needs no analysis (switching back to a shaped mode, the first
            // frame and a half are shaped under thresholds from before the switch).
            if !mute && self.time.is_multiple_of(self.hop as u64) {
                self.frame_done(settings, source);
            }
        }
    }

    /// The mute segment's sample for the output sample now: its time within its window
    /// decides — the delayed input's time by default (the output is the input `latency`
    /// samples later, so a host that compensates the latency sees the segment at the start of
    /// every window of its timeline), or the output's ([`MuteClock::Output`]).
    #[inline]
    fn mute_sample(&self, segment: Option<&[f32]>) -> f32 {
        let delay = match self.mute_clock {
            MuteClock::Input => self.dry.len() as u64,
            MuteClock::Output => 0,
        };
        let (Some(segment), Some(time)) = (segment, self.time.checked_sub(delay)) else {
            return 0.0;
        };
        let at = (time % self.window.max(1)) as usize;
        segment.get(at).copied().unwrap_or(0.0)
    }

    /// A frame of input is complete: analyse it, then synthesise the pending frame (the one a
    /// hop earlier) under the lowest threshold of it and its neighbours.
    fn frame_done(&mut self, settings: &CloakSettings, source: Option<&[f32]>) {
        let psd_max = self.analyse(settings);
        let was_pending = std::mem::replace(&mut self.pending, true);
        let pending_psd_max = std::mem::replace(&mut self.psd_max, psd_max);
        if was_pending {
            let frame_start = self.pending_start();
            self.synthesise(settings, source, frame_start, pending_psd_max);
        }
        if let Some(meter) = &self.meter {
            self.bands.publish(meter);
        }
    }

    /// Input time of the pending frame's first sample: it started `n + hop` samples ago
    /// (before the stream began, for the first frame: it covers the zeros before time 0).
    fn pending_start(&self) -> i64 {
        self.time as i64 - (self.n + self.hop) as i64
    }

    /// Analyse the newest frame of input: shift the thresholds along and compute its own
    /// (capped at its loudest component, lowered as a whole where the in-band allowance would
    /// exceed its power). Returns the frame's reference power.
    fn analyse(&mut self, settings: &CloakSettings) -> f32 {
        let n = self.n;
        let start = (self.time % n as u64) as usize;
        for i in 0..n {
            self.frame[i] = self.input[(start + i) % n];
        }
        std::mem::swap(&mut self.theta_prev, &mut self.theta_pending);
        std::mem::swap(&mut self.theta_pending, &mut self.theta_new);
        let psd_max = match self.analyzer.frame_threshold(
            &self.frame,
            Normalization::full_scale(),
            &mut self.theta_new,
        ) {
            Ok(p) => p,
            Err(_) => {
                self.theta_new
                    .iter_mut()
                    .for_each(|v| *v = f32::NEG_INFINITY);
                1.0
            }
        };
        // The threshold in quiet climbs past full scale above ~16 kHz (and past 200 dB near
        // 22 kHz): never allow more than the frame's own loudest component, so the
        // perturbation cannot be louder than the signal it hides in (or appear in silence).
        let loudest = self
            .analyzer
            .psd_db()
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        for t in self.theta_new.iter_mut() {
            *t = t.min(loudest);
        }
        // And the whole in-band allowance never exceeds the frame's power: many bins each at
        // the loudest component's level would still add up to more than the signal.
        let bin_hz = self.sample_rate / n as f32;
        let (lo, hi) = (settings.band_low_hz, settings.band_high_hz);
        let (mut signal, mut allowed) = (0.0f64, 0.0f64);
        for (k, (&p, &t)) in self
            .analyzer
            .psd_db()
            .iter()
            .zip(&self.theta_new)
            .enumerate()
        {
            signal += 10f64.powf(p as f64 / 10.0);
            let f = k as f32 * bin_hz;
            if f >= lo && f <= hi {
                allowed += 10f64.powf(t as f64 / 10.0);
            }
        }
        if allowed > signal && signal > 0.0 {
            let excess_db = (10.0 * (allowed / signal).log10()) as f32;
            self.theta_new.iter_mut().for_each(|t| *t -= excess_db);
        }
        if self.meter.is_some() {
            self.bands
                .add_analysis(self.analyzer.psd_db(), &self.theta_new);
            self.bands.clear_perturbation();
        }
        psd_max
    }

    /// Fill `self.allowed` with the pending frame's allowance per bin: the most power
    /// (`2 |P_k|² / N²` of a √Hann-windowed frame) bin `k` may carry — `margin_db` under the
    /// lowest threshold of the frame and its two neighbours, zero outside the band (and at DC
    /// and Nyquist).
    fn fill_allowance(&mut self, settings: &CloakSettings, psd_max: f32) {
        let margin = if settings.margin_db.is_finite() {
            settings.margin_db
        } else {
            0.0
        };
        let offset_db = -margin - PSD_NORMALISED_MAX_DB;
        for k in 0..self.allowed.len() {
            self.allowed[k] = if self.in_band(settings, k) {
                let theta = self.theta_prev[k]
                    .min(self.theta_pending[k])
                    .min(self.theta_new[k]);
                psd_max * crate::masking::db_to_power(theta + offset_db)
            } else {
                0.0
            };
        }
    }

    /// Whether bin `k` may carry perturbation: inside the band, not DC or Nyquist.
    fn in_band(&self, settings: &CloakSettings, k: usize) -> bool {
        let f = k as f32 * self.sample_rate / self.n as f32;
        f >= settings.band_low_hz && f <= settings.band_high_hz && k > 0 && k < self.n / 2
    }

    /// Record bin `k`'s perturbation power `power` (the units of the allowance) for the meter.
    #[inline]
    fn meter_bin(&mut self, k: usize, power: f32, psd_max: f32, gain_db: f32) {
        if self.meter.is_some() && power > 0.0 {
            let level = 10.0 * (power / psd_max).log10() + PSD_NORMALISED_MAX_DB + gain_db;
            self.bands.add_perturbation(k, level);
        }
    }

    /// Shape and overlap-add the perturbation of the frame starting at input time `frame_start`
    /// (its output starts now).
    fn synthesise(
        &mut self,
        settings: &CloakSettings,
        source: Option<&[f32]>,
        frame_start: i64,
        psd_max: f32,
    ) {
        let n = self.n;
        self.fill_allowance(settings, psd_max);
        let n2 = (n * n) as f32;
        match (settings.mode, source) {
            (CloakMode::Universal, Some(s)) => {
                let len = s.len() as i64;
                for i in 0..n {
                    let at = (frame_start + i as i64).rem_euclid(len) as usize;
                    self.buffer[i] = s[at] * self.sqrt_hann[i];
                }
                if self
                    .forward
                    .process_with_scratch(
                        &mut self.buffer,
                        &mut self.spectrum,
                        &mut self.fwd_scratch,
                    )
                    .is_err()
                {
                    return;
                }
                for (c, &allowed) in self.spectrum.iter_mut().zip(&self.allowed) {
                    *c = shape_bin(*c, allowed, n2);
                }
            }
            (CloakMode::MaskedNoise, _) => {
                for k in 0..self.spectrum.len() {
                    if !self.in_band(settings, k) {
                        self.spectrum[k] = Complex32::new(0.0, 0.0);
                        continue;
                    }
                    let magnitude = n as f32 * self.allowed[k].sqrt();
                    let phase = std::f32::consts::TAU * self.rng.uniform();
                    self.spectrum[k] = Complex32::from_polar(magnitude, phase);
                }
            }
            (CloakMode::Universal, None) | (CloakMode::MuteSegment, _) => return,
        }
        if self.meter.is_some() && !settings.bypass && settings.depth > 0.0 {
            // The power each mode compares with the allowance, times depth².
            let per_bin = match settings.mode {
                CloakMode::Universal => 2.0 / n2,
                CloakMode::MaskedNoise | CloakMode::MuteSegment => 1.0 / n2,
            };
            let gain_db = 20.0 * settings.depth.clamp(0.0, 1.0).log10();
            for k in 0..self.spectrum.len() {
                let power = self.spectrum[k].norm_sqr() * per_bin;
                self.meter_bin(k, power, psd_max, gain_db);
            }
        }
        if self
            .inverse
            .process_with_scratch(&mut self.spectrum, &mut self.buffer, &mut self.inv_scratch)
            .is_err()
        {
            return;
        }
        let scale = 1.0 / n as f32;
        let start = (self.time % n as u64) as usize;
        for i in 0..n {
            let v = self.buffer[i] * scale * self.sqrt_hann[i];
            if v.is_finite() {
                self.ola[(start + i) % n] += v;
            }
        }
    }
}

/// Bin `c` of a √Hann-windowed source frame of `n` samples (`n2` = n²), scaled so that its
/// power estimate `2 |c|² / n²` stays within `allowed` (to zero where nothing is allowed).
#[inline]
pub fn shape_bin(c: Complex32, allowed: f32, n2: f32) -> Complex32 {
    let estimate = 2.0 * c.norm_sqr() / n2;
    if estimate > allowed {
        c * (allowed / estimate).sqrt()
    } else {
        c
    }
}

/// One frame Cloak synthesises: where it starts in the input and what each bin may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFrame {
    /// Input time of its first sample (the first frame starts a hop before the input).
    pub start: i64,
    /// Per bin, the most power `2 |P_k|² / N²` its √Hann-windowed source frame may keep.
    pub allowance: Vec<f32>,
}

/// Everything Cloak's shaping of a universal source depends on for one input: the frames it
/// synthesises over the input and their allowances. With it, the perturbation Cloak adds for
/// any source can be computed (and differentiated) offline without running the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapingPlan {
    /// Frame size.
    pub n: usize,
    /// Hop (half a frame).
    pub hop: usize,
    /// The frames that reach the input's span, in time order.
    pub frames: Vec<PlannedFrame>,
}

impl CloakChannel {
    /// The frames this channel synthesises over `input` from a fresh start (followed by a
    /// latency of silence, as an offline render flushes it), analysed exactly as
    /// [`CloakChannel::process`] analyses them, without synthesising anything. Resets the
    /// channel before and after. Allocates: not for real-time use.
    pub fn plan(&mut self, input: &[f32], settings: &CloakSettings) -> ShapingPlan {
        self.reset();
        let mut frames = Vec::with_capacity(input.len() / self.hop + 2);
        for t in 0..input.len() + self.latency() {
            let o = (self.time % self.n as u64) as usize;
            self.input[o] = normal_or_zero(input.get(t).copied().unwrap_or(0.0));
            self.time += 1;
            if !self.time.is_multiple_of(self.hop as u64) {
                continue;
            }
            let psd_max = self.analyse(settings);
            let was_pending = std::mem::replace(&mut self.pending, true);
            let pending_psd_max = std::mem::replace(&mut self.psd_max, psd_max);
            let start = self.pending_start();
            if was_pending && start < input.len() as i64 {
                self.fill_allowance(settings, pending_psd_max);
                frames.push(PlannedFrame {
                    start,
                    allowance: self.allowed.clone(),
                });
            }
        }
        self.reset();
        ShapingPlan {
            n: self.n,
            hop: self.hop,
            frames,
        }
    }
}

/// Cloak over a whole mono signal (the same code as in real time, one block): the output is
/// delayed by [`CloakChannel::latency`] samples and has the input's length.
pub fn cloak_offline(
    input: &[f32],
    sample_rate: f32,
    settings: &CloakSettings,
    source: Option<&[f32]>,
    seed: u64,
) -> Result<Vec<f32>> {
    let mut channel = CloakChannel::new(sample_rate, super::frame_size_for(sample_rate), seed)?;
    let mut out = input.to_vec();
    channel.process(&mut out, settings, source);
    Ok(out)
}
