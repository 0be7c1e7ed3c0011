//! Sentinel: detects adversarial audio in real time and passes audio through (all analysis in
//! `advox::stream::sentinel` and `advox::stream::monitor`).

use advox::stream::monitor::{spawn_monitor, MonitorConfig};
use advox::stream::processors::SentinelProcessor;
use advox::stream::sentinel::SentinelSettings;
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

/// MIDI key of the detection note.
pub const DETECTION_KEY: u8 = 60;

/// Sentinel's parameters.
#[derive(Params)]
pub struct SentinelParams {
    /// Score above which audio is flagged.
    #[id = "threshold"]
    pub threshold: FloatParam,
    /// Time constant of the score (seconds of voiced audio).
    #[id = "smoothing"]
    pub smoothing_seconds: FloatParam,
    /// Mute the output while flagged.
    #[id = "gate"]
    pub gate: BoolParam,
    /// Run the Whisper model check on a background thread.
    #[id = "model_check"]
    pub model_check: BoolParam,
    /// The model check's detector, named as `advox detect` names it (`entropy`, `confidence`,
    /// `activations:FILE`, `consistency:T`, `temporal`); empty: transform consistency through
    /// a 4-kHz low-pass. Takes effect at the next activation, which the plugin asks the host
    /// for when [`SentinelParams::model_check_edits`] moves.
    #[persist = "model-check-detector"]
    pub model_check_detector: Arc<RwLock<String>>,
    /// A calibration (`advox detect --calibrate` JSON) whose threshold for the detector scales
    /// its score so that the threshold sits at 0.5; needed for a detector not scored on 0..1.
    #[persist = "model-check-calibration"]
    pub model_check_calibration: Arc<RwLock<String>>,
    /// What the model check runs, or why it does not (written at each activation).
    #[persist = "model-check-status"]
    pub model_check_status: Arc<RwLock<String>>,
    /// Bumped by the editor when it changes the detector or calibration.
    pub model_check_edits: Arc<AtomicU32>,
}

impl Default for SentinelParams {
    fn default() -> Self {
        SentinelParams {
            threshold: FloatParam::new("Threshold", 0.5, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_step_size(0.01),
            smoothing_seconds: FloatParam::new(
                "Smoothing",
                0.5,
                FloatRange::Skewed {
                    min: 0.05,
                    max: 5.0,
                    factor: FloatRange::skew_factor(-1.5),
                },
            )
            .with_unit(" s")
            .with_step_size(0.01),
            gate: BoolParam::new("Gate", false),
            model_check: BoolParam::new("Model check", true),
            model_check_detector: Arc::new(RwLock::new(String::new())),
            model_check_calibration: Arc::new(RwLock::new(String::new())),
            model_check_status: Arc::new(RwLock::new(String::new())),
            model_check_edits: Arc::new(AtomicU32::new(0)),
        }
    }
}

/// What the audio thread publishes for meters and editors (atomics only).
pub struct SentinelMeters {
    /// Smoothed frame score, 0..1.
    pub score: AtomicF32,
    /// The model check's last score, 0..1.
    pub model_score: AtomicF32,
    /// Whether a detection is on.
    pub detected: AtomicBool,
    /// The model check's [`MonitorStatus`] as `u8`, or [`MODEL_OFF`].
    pub model_status: AtomicU8,
}

/// `SentinelMeters::model_status` when the model check is off.
pub const MODEL_OFF: u8 = u8::MAX;

impl Default for SentinelMeters {
    fn default() -> Self {
        SentinelMeters {
            score: AtomicF32::new(0.0),
            model_score: AtomicF32::new(0.0),
            detected: AtomicBool::new(false),
            model_status: AtomicU8::new(MODEL_OFF),
        }
    }
}

/// The Sentinel plugin.
pub struct Sentinel {
    params: Arc<SentinelParams>,
    meters: Arc<SentinelMeters>,
    processor: Option<SentinelProcessor>,
    /// [`SentinelParams::model_check_edits`] at the last activation.
    active_edits: u32,
    /// A restart was requested since the last activation.
    restart_requested: bool,
}

impl Default for Sentinel {
    fn default() -> Self {
        Sentinel {
            params: Arc::new(SentinelParams::default()),
            meters: Arc::new(SentinelMeters::default()),
            processor: None,
            active_edits: 0,
            restart_requested: false,
        }
    }
}

impl Sentinel {
    /// The meters (shared with editors).
    pub fn meters(&self) -> Arc<SentinelMeters> {
        self.meters.clone()
    }
}

impl Plugin for Sentinel {
    const NAME: &'static str = "advox Sentinel";
    const VENDOR: &'static str = crate::VENDOR;
    const URL: &'static str = crate::URL;
    const EMAIL: &'static str = crate::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = crate::STEREO_OR_MONO;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;

    type SysExMessage = ();
    type BackgroundTask = ();
    #[cfg(feature = "editor")]
    type Editor = nice_plug_egui::EguiEditor<crate::editor::sentinel_editor::SentinelEditor>;
    #[cfg(not(feature = "editor"))]
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    #[cfg(feature = "editor")]
    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        if !crate::editor::display_available() {
            return None;
        }
        crate::editor::sentinel_editor::create(self.params.clone(), self.meters.clone())
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let rate = buffer_config.sample_rate;
        // Dropping the old processor stops its model check.
        self.processor = None;
        self.active_edits = self.params.model_check_edits.load(Ordering::Relaxed);
        self.restart_requested = false;
        let (monitor, status) = if self.params.model_check.value() {
            let read =
                |l: &RwLock<String>| l.read().map(|s| s.trim().to_string()).unwrap_or_default();
            let detector = read(&self.params.model_check_detector);
            let calibration = read(&self.params.model_check_calibration);
            let config = MonitorConfig::for_detector(
                rate,
                (!detector.is_empty()).then_some(detector.as_str()),
                (!calibration.is_empty()).then(|| std::path::Path::new(&calibration)),
            );
            let started = config.and_then(|c| {
                let status = match c.threshold {
                    Some(t) => format!(
                        "model check: {} (threshold {t:.4} at 0.5)",
                        c.detector.name()
                    ),
                    None => format!("model check: {}", c.detector.name()),
                };
                spawn_monitor(c, crate::load_default_model).map(|m| (m, status))
            });
            match started {
                Ok(((feed, state, _thread), status)) => (Some((feed, state)), status),
                Err(e) => {
                    nice_log!("advox Sentinel: model check unavailable: {e}");
                    (None, format!("model check off: {e}"))
                }
            }
        } else {
            (None, "model check off".to_string())
        };
        if let Ok(mut s) = self.params.model_check_status.write() {
            *s = status;
        }
        match SentinelProcessor::new(rate, monitor) {
            Ok(p) => {
                self.processor = Some(p);
                true
            }
            Err(e) => {
                nice_log!("advox Sentinel: cannot run at {rate} Hz: {e}");
                false
            }
        }
    }

    fn reset(&mut self) {
        if let Some(p) = self.processor.as_mut() {
            p.reset();
        }
    }

    fn deactivate(&mut self) {
        self.processor = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let Some(processor) = self.processor.as_mut() else {
            return ProcessStatus::Normal;
        };
        let settings = SentinelSettings {
            threshold: self.params.threshold.value(),
            smoothing_seconds: self.params.smoothing_seconds.value(),
            gate: self.params.gate.value(),
        };
        // A new detector or calibration from the editor needs a new worker: ask the host to
        // restart processing (the next activation starts it).
        let edits = self.params.model_check_edits.load(Ordering::Relaxed);
        if edits != self.active_edits && !self.restart_requested {
            self.restart_requested = true;
            context.request_restart();
        }
        let model_check = self.params.model_check.value();
        processor.process(buffer.as_slice(), &settings, model_check, &mut |d| {
            let timing = d.offset as u32;
            let key = Key::Number(DETECTION_KEY);
            let (voice_id, channel) = (VoiceID::Wildcard, Channel::Number(0));
            // A full event queue drops the note; the meters still say it.
            let _ = context.try_send_event(if d.on {
                NoteEvent::NoteOn {
                    timing,
                    voice_id,
                    channel,
                    key,
                    velocity: d.score.clamp(0.01, 1.0),
                }
            } else {
                NoteEvent::NoteOff {
                    timing,
                    voice_id,
                    channel,
                    key,
                    velocity: 0.0,
                }
            });
        });
        let m = &self.meters;
        m.score.store(processor.score(), Ordering::Relaxed);
        m.model_score
            .store(processor.model_score(model_check), Ordering::Relaxed);
        m.detected.store(processor.detected(), Ordering::Relaxed);
        let status = match processor.monitor() {
            Some(monitor) if model_check => monitor.status() as u8,
            _ => MODEL_OFF,
        };
        m.model_status.store(status, Ordering::Relaxed);
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Sentinel {
    const CLAP_ID: &'static str = "dev.advox.sentinel";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Flags adversarial audio aimed at speech recognisers, with MIDI notes and a gate");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Analyzer,
        ClapFeature::Stereo,
        ClapFeature::Mono,
    ];
}

impl Vst3Plugin for Sentinel {
    const VST3_CLASS_ID: [u8; 16] = *b"advoxSentinelPlg";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Analyzer];
}
