//! Sentinel: detects adversarial audio in real time and passes audio through (all analysis in
//! `advox::stream::sentinel` and `advox::stream::monitor`).

use advox::stream::monitor::{spawn_monitor, MonitorConfig};
use advox::stream::processors::SentinelProcessor;
use advox::stream::sentinel::SentinelSettings;
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

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
    /// Run the Whisper transform-consistency check on a background thread.
    #[id = "model_check"]
    pub model_check: BoolParam,
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
}

impl Default for Sentinel {
    fn default() -> Self {
        Sentinel {
            params: Arc::new(SentinelParams::default()),
            meters: Arc::new(SentinelMeters::default()),
            processor: None,
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
        let monitor = if self.params.model_check.value() {
            let config = MonitorConfig {
                sample_rate: rate,
                ..Default::default()
            };
            match spawn_monitor(config, crate::load_default_model) {
                Ok((feed, state, _thread)) => Some((feed, state)),
                Err(e) => {
                    nice_log!("advox Sentinel: model check unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
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
