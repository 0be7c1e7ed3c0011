//! Sentinel: detects adversarial audio in real time and passes audio through (all analysis in
//! `advox::stream::sentinel` and `advox::stream::monitor`).

use advox::model::provision::{is_model_dir, model_dir};
use advox::model::LoadedModel;
use advox::stream::frame_size_for;
use advox::stream::monitor::{
    spawn_monitor, MonitorConfig, MonitorFeed, MonitorState, MonitorStatus,
};
use advox::stream::sentinel::{SentinelAnalyzer, SentinelSettings};
use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
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
#[derive(Default)]
pub struct SentinelMeters {
    /// Smoothed frame score, 0..1.
    pub score: AtomicF32,
    /// The model check's last score, 0..1.
    pub model_score: AtomicF32,
    /// Whether a detection is on.
    pub detected: AtomicBool,
}

/// The Sentinel plugin.
pub struct Sentinel {
    params: Arc<SentinelParams>,
    meters: Arc<SentinelMeters>,
    analyzer: Option<SentinelAnalyzer>,
    feed: Option<MonitorFeed>,
    monitor: Option<Arc<MonitorState>>,
    detected: bool,
}

impl Default for Sentinel {
    fn default() -> Self {
        Sentinel {
            params: Arc::new(SentinelParams::default()),
            meters: Arc::new(SentinelMeters::default()),
            analyzer: None,
            feed: None,
            monitor: None,
            detected: false,
        }
    }
}

impl Sentinel {
    /// The meters (shared with editors).
    pub fn meters(&self) -> Arc<SentinelMeters> {
        self.meters.clone()
    }

    fn stop_monitor(&mut self) {
        if let Some(m) = self.monitor.take() {
            m.stop();
        }
        self.feed = None;
    }
}

/// The default model, loaded on the monitor thread.
fn load_default_model() -> advox::Result<LoadedModel> {
    let dir = model_dir("tiny.en");
    if !is_model_dir(&dir) {
        return Err(advox::Error::bad_model(
            &dir,
            "no model here: run `advox model fetch` to provision tiny.en",
        ));
    }
    LoadedModel::load(&dir, &candle_core::Device::Cpu)
}

impl Plugin for Sentinel {
    const NAME: &'static str = "advox Sentinel";
    const VENDOR: &'static str = "advox";
    const URL: &'static str = "https://github.com/advox/advox";
    const EMAIL: &'static str = "advox@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];
    const MIDI_OUTPUT: MidiConfig = MidiConfig::Basic;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let rate = buffer_config.sample_rate;
        let Ok(analyzer) = SentinelAnalyzer::new(rate, frame_size_for(rate)) else {
            nice_log!("advox Sentinel: cannot run at {rate} Hz");
            return false;
        };
        self.analyzer = Some(analyzer);
        self.stop_monitor();
        if self.params.model_check.value() {
            let config = MonitorConfig {
                sample_rate: rate,
                ..Default::default()
            };
            match spawn_monitor(config, load_default_model) {
                Ok((feed, state, _thread)) => {
                    self.feed = Some(feed);
                    self.monitor = Some(state);
                }
                Err(e) => nice_log!("advox Sentinel: model check unavailable: {e}"),
            }
        }
        true
    }

    fn reset(&mut self) {
        if let Some(a) = self.analyzer.as_mut() {
            a.reset();
        }
        self.detected = false;
    }

    fn deactivate(&mut self) {
        self.stop_monitor();
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let Some(analyzer) = self.analyzer.as_mut() else {
            return ProcessStatus::Normal;
        };
        let settings = SentinelSettings {
            threshold: self.params.threshold.value(),
            smoothing_seconds: self.params.smoothing_seconds.value(),
            gate: self.params.gate.value(),
        };
        let model_check = self.params.model_check.value();
        if let Some(m) = &self.monitor {
            m.set_enabled(model_check);
        }
        let model_score = match &self.monitor {
            Some(m) if model_check && m.status() == MonitorStatus::Ready => m.score(),
            _ => 0.0,
        };
        self.meters
            .model_score
            .store(model_score, Ordering::Relaxed);
        let slices = buffer.as_slice();
        let channels = slices.len();
        let samples = slices.first().map_or(0, |s| s.len());
        for i in 0..samples {
            let mono = slices.iter().map(|s| s[i]).sum::<f32>() / channels.max(1) as f32;
            if let (true, Some(feed)) = (model_check, self.feed.as_mut()) {
                feed.push(mono);
            }
            if analyzer.push(mono, &settings) {
                let score = analyzer.score();
                let now = score > settings.threshold || model_score > settings.threshold;
                if now != self.detected {
                    self.detected = now;
                    let timing = i as u32;
                    // A full event queue drops the note; the meters still say it.
                    let _ = context.try_send_event(if now {
                        NoteEvent::NoteOn {
                            timing,
                            voice_id: VoiceID::Wildcard,
                            channel: Channel::Number(0),
                            key: Key::Number(DETECTION_KEY),
                            velocity: score.clamp(0.01, 1.0),
                        }
                    } else {
                        NoteEvent::NoteOff {
                            timing,
                            voice_id: VoiceID::Wildcard,
                            channel: Channel::Number(0),
                            key: Key::Number(DETECTION_KEY),
                            velocity: 0.0,
                        }
                    });
                }
            }
            for s in slices.iter_mut() {
                s[i] = if settings.gate && self.detected {
                    0.0
                } else if s[i].is_finite() {
                    s[i]
                } else {
                    0.0
                };
            }
        }
        self.meters.score.store(analyzer.score(), Ordering::Relaxed);
        self.meters.detected.store(self.detected, Ordering::Relaxed);
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
