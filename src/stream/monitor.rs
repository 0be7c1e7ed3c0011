//! The model check behind Sentinel: a background thread that keeps the last seconds of a
//! stream and, every few seconds of new audio, scores them with a Whisper-based detector
//! (transform consistency by default; any detector that listens with a model, its score scaled
//! by a calibrated threshold where it is not on a 0..1 scale), publishing the score through
//! atomics.
//!
//! The audio thread only pushes samples into a lock-free single-producer ring
//! ([`MonitorFeed::push`], dropping samples when the worker falls behind) and reads atomics;
//! loading the model, resampling and transcription all happen on the worker.

use crate::audio::resample;
use crate::detect::{Context, Detector, Input};
use crate::formats::calibration::Calibration;
use crate::model::{DecodeOptions, LoadedModel};
use crate::{Error, Result};
use std::borrow::Borrow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MonitorStatus {
    /// Loading the model.
    Loading = 0,
    /// Ready; scores are published.
    Ready = 1,
    /// The model could not be loaded ([`MonitorState::error`] says why); no checks run.
    Failed = 2,
    /// The worker has exited.
    Stopped = 3,
}

/// What the worker publishes (read from any thread, lock-free except [`MonitorState::error`]).
#[derive(Debug)]
pub struct MonitorState {
    score_bits: AtomicU32,
    status: AtomicU8,
    checks: AtomicU64,
    enabled: AtomicBool,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl MonitorState {
    fn new() -> Self {
        MonitorState {
            score_bits: AtomicU32::new(0f32.to_bits()),
            status: AtomicU8::new(MonitorStatus::Loading as u8),
            checks: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
        }
    }

    /// The last check's score (0..1: the detector's score, clamped).
    pub fn score(&self) -> f32 {
        f32::from_bits(self.score_bits.load(Ordering::Relaxed))
    }

    /// Checks completed so far.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// The worker's status.
    pub fn status(&self) -> MonitorStatus {
        match self.status.load(Ordering::Relaxed) {
            0 => MonitorStatus::Loading,
            1 => MonitorStatus::Ready,
            2 => MonitorStatus::Failed,
            _ => MonitorStatus::Stopped,
        }
    }

    /// Turn checking on or off (the worker keeps draining the feed either way).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Why the model could not be loaded, if it could not (not for the audio thread: locks).
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// Ask the worker to exit.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Rate of the samples pushed (Hz).
    pub sample_rate: f32,
    /// Seconds of audio each check scores.
    pub window_seconds: f32,
    /// Seconds of new audio between checks.
    pub interval_seconds: f32,
    /// The detector (one that needs a model).
    pub detector: Detector,
    /// The detector's calibrated threshold (`advox detect --calibrate`), for a detector whose
    /// scores are not on a 0..1 scale (entropy in nats, activations relative to clean speech):
    /// the published score is then `score / (2·threshold)`, so that the calibrated threshold
    /// sits at Sentinel's default detection threshold, 0.5. `None`: the score as it is.
    pub threshold: Option<f64>,
}

impl MonitorConfig {
    /// The model check at `sample_rate` with `detector` (a name as `advox detect` takes it, e.g.
    /// `entropy` or `activations:FILE`; `None`: the default transform consistency), its score
    /// scaled by the threshold that `calibration` (an `advox detect --calibrate` file) holds
    /// for it. A detector that does not listen with the model is refused, and so is one not
    /// scored on 0..1 (anything but consistency and temporal) without a calibration.
    pub fn for_detector(
        sample_rate: f32,
        detector: Option<&str>,
        calibration: Option<&Path>,
    ) -> Result<Self> {
        let defaults = MonitorConfig::default();
        let detector = match detector {
            Some(spec) => Detector::parse(spec)?,
            None => defaults.detector.clone(),
        };
        let name = detector.name();
        if !detector.needs_model() {
            return Err(Error::InvalidArgument(format!(
                "{name}: the model check runs a detector that listens with the model \
                 (consistency:T, temporal, confidence, entropy, activations:FILE)"
            )));
        }
        let threshold = match calibration {
            Some(path) => {
                let thresholds = Calibration::read(path)?.thresholds();
                let t = *thresholds.get(&name).ok_or_else(|| {
                    let known: Vec<&str> = thresholds.keys().map(String::as_str).collect();
                    Error::bad_file(
                        path,
                        format!("no threshold for {name} (it has {})", known.join(", ")),
                    )
                })?;
                if !(t.is_finite() && t > 0.0) {
                    return Err(Error::bad_file(
                        path,
                        format!("the threshold of {name} is {t}, not positive"),
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let unit_scored = matches!(
            detector,
            Detector::Consistency(_) | Detector::Temporal { .. }
        );
        if threshold.is_none() && !unit_scored {
            return Err(Error::InvalidArgument(format!(
                "{name} is not scored on 0..1: it needs a calibration (advox detect \
                 --calibrate CLEAN.csv --detectors {name} -o CAL.json)"
            )));
        }
        Ok(MonitorConfig {
            sample_rate,
            detector,
            threshold,
            ..defaults
        })
    }

    /// The score published for a detector score `score`: scaled by the threshold if one is
    /// set, clamped to 0..1.
    pub fn publish(&self, score: f64) -> f32 {
        let s = match self.threshold {
            Some(t) => score / (2.0 * t),
            None => score,
        };
        (s as f32).clamp(0.0, 1.0)
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            sample_rate: 48_000.0,
            window_seconds: 4.0,
            interval_seconds: 2.0,
            detector: Detector::Consistency(crate::detect::transforms::Transform::LowPass {
                cutoff_hz: 4_000.0,
            }),
            threshold: None,
        }
    }
}

/// The audio thread's end: pushes samples, never blocks or allocates.
pub struct MonitorFeed {
    producer: rtrb::Producer<f32>,
}

impl MonitorFeed {
    /// Push one sample; false (and the sample dropped) when the worker is behind.
    #[inline]
    pub fn push(&mut self, sample: f32) -> bool {
        self.producer.push(super::normal_or_zero(sample)).is_ok()
    }
}

/// Start the worker: `load` runs on it (so a slow or failing model load never touches the
/// audio thread), unless the worker is stopped first. `load` may hand over a model of its own
/// or a shared one (`Arc<LoadedModel>`), so that restarts need not load it again. Returns the
/// feed for the audio thread, the shared state and the thread.
pub fn spawn_monitor<M: Borrow<LoadedModel> + 'static>(
    config: MonitorConfig,
    load: impl FnOnce() -> Result<M> + Send + 'static,
) -> Result<(MonitorFeed, Arc<MonitorState>, JoinHandle<()>)> {
    let valid = config.sample_rate.is_finite()
        && config.sample_rate >= 8_000.0
        && config.window_seconds > 0.0
        && config.interval_seconds > 0.0;
    let threshold_ok = config.threshold.is_none_or(|t| t.is_finite() && t > 0.0);
    if !valid || !threshold_ok || !config.detector.needs_model() {
        return Err(Error::InvalidArgument(
            "monitor: needs a sample rate ≥ 8 kHz, positive window and interval, a positive \
             threshold if any, and a detector that listens with a model"
                .into(),
        ));
    }
    let window = (config.window_seconds * config.sample_rate) as usize;
    let (producer, consumer) = rtrb::RingBuffer::new(2 * window.max(1));
    let state = Arc::new(MonitorState::new());
    let shared = state.clone();
    let handle = std::thread::Builder::new()
        .name("advox-monitor".into())
        .spawn(move || run(config, window, consumer, shared, load))
        .map_err(|e| Error::Internal(format!("monitor thread: {e}")))?;
    Ok((MonitorFeed { producer }, state, handle))
}

fn run<M: Borrow<LoadedModel>>(
    config: MonitorConfig,
    window: usize,
    mut consumer: rtrb::Consumer<f32>,
    state: Arc<MonitorState>,
    load: impl FnOnce() -> Result<M>,
) {
    if state.stop.load(Ordering::Relaxed) {
        // Stopped before it began (a host that restarts at once): no model to load.
        state
            .status
            .store(MonitorStatus::Stopped as u8, Ordering::Relaxed);
        return;
    }
    let model = match load() {
        Ok(m) => {
            state
                .status
                .store(MonitorStatus::Ready as u8, Ordering::Relaxed);
            Some(m)
        }
        Err(e) => {
            if let Ok(mut slot) = state.error.lock() {
                *slot = Some(e.to_string());
            }
            state
                .status
                .store(MonitorStatus::Failed as u8, Ordering::Relaxed);
            None
        }
    };
    let interval = (config.interval_seconds * config.sample_rate) as usize;
    let mut recent = std::collections::VecDeque::with_capacity(window);
    let mut fresh = 0usize;
    let decode = DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    loop {
        if state.stop.load(Ordering::Relaxed) {
            break;
        }
        let available = consumer.slots();
        if available == 0 {
            if consumer.is_abandoned() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if let Ok(chunk) = consumer.read_chunk(available) {
            for x in chunk {
                if recent.len() == window {
                    recent.pop_front();
                }
                recent.push_back(x);
            }
        }
        fresh += available;
        let Some(model) = &model else { continue };
        if fresh < interval || recent.len() < window || !state.enabled.load(Ordering::Relaxed) {
            continue;
        }
        fresh = 0;
        let samples: Vec<f32> = recent.iter().copied().collect();
        let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let score = if peak < 1e-3 {
            0.0 // silence: nothing to transcribe
        } else {
            let Ok(x16) = resample(&samples, config.sample_rate.round() as u32, 16_000) else {
                continue;
            };
            let ctx = Context {
                model: Some(model.borrow()),
                decode: decode.clone(),
            };
            match config.detector.score(&ctx, &Input::new(&x16)) {
                Ok(s) => config.publish(s),
                Err(_) => continue,
            }
        };
        state.score_bits.store(score.to_bits(), Ordering::Relaxed);
        state.checks.fetch_add(1, Ordering::Relaxed);
    }
    state
        .status
        .store(MonitorStatus::Stopped as u8, Ordering::Relaxed);
}
