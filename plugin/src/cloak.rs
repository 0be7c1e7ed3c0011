//! Cloak: adds an inaudible perturbation in real time (all DSP in `advox::stream::cloak`).

use crate::source_loader::{spawn_loader, LoaderHandle, SourceReceiver, SourceShared, SOURCE_NONE};
use advox::attack::cloak_model::ModelCloakConfig;
use advox::stream::band_meter::BandMeter;
use advox::stream::cloak::{CloakMode, CloakSettings};
use advox::stream::model_cloak::{spawn_model_cloak, ModelCloakStream, ModelStreamConfig};
use advox::stream::processors::CloakProcessor;
use nice_plug::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

/// Cloak's modes as a parameter.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeParam {
    /// Plays the universal perturbation file, shaped under the masking threshold.
    #[id = "universal"]
    #[name = "Universal file"]
    Universal,
    /// Noise shaped under the masking threshold.
    #[id = "masked-noise"]
    #[name = "Masked noise"]
    MaskedNoise,
    /// An untargeted attack on Whisper per window, under the masking threshold, on a worker
    /// thread (`advox::stream::model_cloak`): latency two windows; an offline render waits
    /// for it, live it is best effort.
    #[id = "model"]
    #[name = "Model (attack, high latency)"]
    Model,
    /// The default: the built-in mute segment (`advox::stream::mute_segment`) over the start of
    /// every 30-s window from the start of the stream (a render's start): where the first word
    /// comes after it, Whisper's transcription of the result (plain or timestamped) hears
    /// nothing. Unshaped (Margin and Band do not apply).
    #[id = "mute"]
    #[name = "Mute segment"]
    Mute,
}

/// The mode new instances start in when a standalone app chose one (`advox-cloak` reads
/// `ADVOX_CLOAK_MODE`); a plugin in a host starts in [`ModeParam::Mute`].
static STANDALONE_MODE: std::sync::OnceLock<ModeParam> = std::sync::OnceLock::new();

/// Let new instances start in `mode` instead of the default (the standalone app, e.g. for the
/// editor screenshots of masked noise). The first call wins.
pub fn set_standalone_default_mode(mode: ModeParam) {
    let _ = STANDALONE_MODE.set(mode);
}

impl ModeParam {
    /// The mode of an `ADVOX_CLOAK_MODE` value (the parameter's ids: `universal`,
    /// `masked-noise`, `model`, `mute`).
    pub fn from_id(id: &str) -> Option<Self> {
        ModeParam::ids()?
            .iter()
            .position(|&i| i == id)
            .map(ModeParam::from_index)
    }
}

/// Cloak's parameters and persisted state.
#[derive(Params)]
pub struct CloakParams {
    /// What to add.
    #[id = "mode"]
    pub mode: EnumParam<ModeParam>,
    /// Scale of the perturbation (0: pass-through).
    #[id = "depth"]
    pub depth: FloatParam,
    /// How far under the masking threshold the perturbation stays.
    #[id = "margin"]
    pub margin_db: FloatParam,
    /// Lowest perturbed frequency.
    #[id = "band_low"]
    pub band_low_hz: FloatParam,
    /// Highest perturbed frequency.
    #[id = "band_high"]
    pub band_high_hz: FloatParam,
    /// Pass the (latency-delayed) input through.
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Model mode: seconds per attacked window (the latency is twice this; takes effect when
    /// the host restarts processing, which the plugin requests).
    #[id = "model_window"]
    pub model_window: FloatParam,
    /// The universal perturbation file (`advox universal` output).
    #[persist = "perturbation-path"]
    pub perturbation_path: Arc<RwLock<String>>,
    /// Why the file is or is not in use.
    #[persist = "perturbation-status"]
    pub perturbation_status: Arc<RwLock<String>>,
}

impl Default for CloakParams {
    fn default() -> Self {
        CloakParams {
            // The mute segment by default: of the modes that need no file and no restart it is
            // the one that keeps a recogniser from the words (README, Cloak: faster-whisper
            // plain beam 5 WER 0.84 after a lead-in, 0.16 on speech from the first sample,
            // against masked noise's 0.04), at a little less PESQ than masked noise's default
            // margin where speech starts at once (3.70 against 3.91) and a short hiss at each
            // window's start.
            mode: EnumParam::new(
                "Mode",
                STANDALONE_MODE.get().copied().unwrap_or(ModeParam::Mute),
            ),
            depth: FloatParam::new("Depth", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            margin_db: FloatParam::new(
                "Margin",
                6.0,
                FloatRange::Linear {
                    min: 0.0,
                    max: 40.0,
                },
            )
            .with_unit(" dB")
            .with_step_size(0.1),
            band_low_hz: FloatParam::new(
                "Band low",
                100.0,
                FloatRange::Skewed {
                    min: 20.0,
                    max: 8_000.0,
                    factor: FloatRange::skew_factor(-2.0),
                },
            )
            .with_unit(" Hz")
            .with_step_size(1.0),
            band_high_hz: FloatParam::new(
                "Band high",
                8_000.0,
                FloatRange::Skewed {
                    min: 500.0,
                    max: 24_000.0,
                    factor: FloatRange::skew_factor(-1.0),
                },
            )
            .with_unit(" Hz")
            .with_step_size(1.0),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            model_window: FloatParam::new(
                "Model window",
                30.0,
                FloatRange::Linear {
                    min: 5.0,
                    max: 30.0,
                },
            )
            .with_unit(" s")
            .with_step_size(1.0)
            .non_automatable(),
            perturbation_path: Arc::new(RwLock::new(String::new())),
            perturbation_status: Arc::new(RwLock::new("no perturbation file".into())),
        }
    }
}

/// The Cloak plugin.
pub struct Cloak {
    params: Arc<CloakParams>,
    processor: Option<CloakProcessor>,
    source: Option<SourceReceiver>,
    loader: Option<LoaderHandle>,
    shared: Arc<SourceShared>,
    meter: Arc<BandMeter>,
    /// The model mode's stream, when the plugin was activated in that mode.
    model: Option<ModelCloakStream>,
    /// Its window (s), as activated.
    model_window: f32,
    /// The built-in mute segment at the host rate (empty if it could not be made).
    mute_segment: Vec<f32>,
    /// Whether the host renders offline (the model mode then waits for its worker).
    offline: bool,
    /// A restart was requested (the mode or window changed since activation).
    restart_requested: bool,
}

impl Default for Cloak {
    fn default() -> Self {
        let params = Arc::new(CloakParams::default());
        let shared = Arc::new(SourceShared {
            path: params.perturbation_path.clone(),
            status_text: params.perturbation_status.clone(),
            status: AtomicU8::new(SOURCE_NONE),
        });
        Cloak {
            params,
            processor: None,
            source: None,
            loader: None,
            shared,
            meter: Arc::new(BandMeter::default()),
            model: None,
            model_window: 0.0,
            mute_segment: Vec::new(),
            offline: false,
            restart_requested: false,
        }
    }
}

impl Cloak {
    /// The band levels the audio thread publishes (shared with the editor).
    pub fn meter(&self) -> Arc<BandMeter> {
        self.meter.clone()
    }

    /// Status of the perturbation file (`source_loader::SOURCE_*`).
    pub fn source_status(&self) -> u8 {
        self.shared.status.load(Ordering::Relaxed)
    }
}

impl Plugin for Cloak {
    const NAME: &'static str = "advox Cloak";
    const VENDOR: &'static str = crate::VENDOR;
    const URL: &'static str = crate::URL;
    const EMAIL: &'static str = crate::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = crate::STEREO_OR_MONO;

    type SysExMessage = ();
    type BackgroundTask = ();
    #[cfg(feature = "editor")]
    type Editor = nice_plug_egui::EguiEditor<crate::editor::cloak_editor::CloakEditor>;
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
        crate::editor::cloak_editor::create(
            self.params.clone(),
            self.meter.clone(),
            self.shared.clone(),
        )
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let rate = buffer_config.sample_rate;
        let count = audio_io_layout
            .main_output_channels
            .map(NonZeroU32::get)
            .unwrap_or(2) as usize;
        let mut processor = match CloakProcessor::new(rate, count) {
            Ok(p) => p,
            Err(e) => {
                nice_log!("advox Cloak: cannot run at {rate} Hz: {e}");
                return false;
            }
        };
        processor.set_meter(Some(self.meter.clone()));
        self.mute_segment = match advox::stream::mute_segment::builtin_at_rate(rate.round() as u32)
        {
            Ok(s) => s,
            Err(e) => {
                nice_log!("advox Cloak: mute mode unavailable: {e}");
                Vec::new()
            }
        };
        self.offline = buffer_config.process_mode == ProcessMode::Offline;
        self.restart_requested = false;
        self.model = None;
        if self.params.mode.value() == ModeParam::Model {
            let config = ModelStreamConfig {
                sample_rate: rate,
                chunk_seconds: self.params.model_window.value(),
                cloak: ModelCloakConfig {
                    margin_db: self.params.margin_db.value(),
                    ..ModelCloakConfig::default()
                },
            };
            match spawn_model_cloak(config, count, crate::load_default_model) {
                Ok((stream, _worker)) => {
                    self.model_window = self.params.model_window.value();
                    self.model = Some(stream);
                }
                Err(e) => nice_log!("advox Cloak: model mode unavailable: {e}"),
            }
        }
        let latency = self
            .model
            .as_ref()
            .map_or(processor.latency(), |m| m.latency());
        context.set_latency_samples(latency as u32);
        self.processor = Some(processor);
        // A fresh loader for this rate (the old one stops when its handle drops).
        self.loader = None;
        let (receiver, handle) = spawn_loader(self.shared.clone(), rate);
        self.source = Some(receiver);
        self.loader = Some(handle);
        true
    }

    fn reset(&mut self) {
        if let Some(p) = self.processor.as_mut() {
            p.reset();
        }
        if let Some(m) = self.model.as_mut() {
            m.reset();
        }
    }

    fn deactivate(&mut self) {
        self.loader = None;
        // Dropping the stream stops its worker (after the model step it is in).
        self.model = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let p = &self.params;
        let want_model = p.mode.value() == ModeParam::Model;
        // The model mode's stream exists only from an activation in that mode (its latency is
        // the host's to know): a change of mode or window asks the host for a restart, and
        // until then the active path plays the delayed input.
        let stale = match &self.model {
            Some(_) => !want_model || p.model_window.value() != self.model_window,
            None => want_model,
        };
        if stale && !self.restart_requested {
            self.restart_requested = true;
            context.request_restart();
        }
        if let Some(model) = self.model.as_mut() {
            model.state().set_margin_db(p.margin_db.value());
            let depth = if stale || p.bypass.value() {
                0.0
            } else {
                p.depth.value()
            };
            model.process(buffer.as_slice(), self.offline, depth);
            return ProcessStatus::Normal;
        }
        let settings = CloakSettings {
            mode: match p.mode.value() {
                ModeParam::Universal => CloakMode::Universal,
                ModeParam::Mute => CloakMode::MuteSegment,
                ModeParam::MaskedNoise | ModeParam::Model => CloakMode::MaskedNoise,
            },
            depth: p.depth.value(),
            margin_db: p.margin_db.value(),
            band_low_hz: p.band_low_hz.value(),
            band_high_hz: p.band_high_hz.value(),
            bypass: p.bypass.value() || want_model,
        };
        let source = match settings.mode {
            CloakMode::MuteSegment => Some(self.mute_segment.as_slice()),
            _ => self.source.as_mut().map(|s| s.current()),
        };
        if let Some(p) = self.processor.as_mut() {
            p.process(buffer.as_slice(), &settings, source);
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Cloak {
    const CLAP_ID: &'static str = "dev.advox.cloak";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Keeps speech recognisers from the words: a mute segment at the start of every 30-s window, or a perturbation under the masking threshold");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Stereo,
        ClapFeature::Mono,
        ClapFeature::Utility,
    ];
}

impl Vst3Plugin for Cloak {
    const VST3_CLASS_ID: [u8; 16] = *b"advoxCloakPlugin";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_named_by_their_ids_and_the_default_is_the_mute_segment() {
        assert_eq!(
            ModeParam::from_id("masked-noise"),
            Some(ModeParam::MaskedNoise)
        );
        assert_eq!(ModeParam::from_id("mute"), Some(ModeParam::Mute));
        assert_eq!(ModeParam::from_id("universal"), Some(ModeParam::Universal));
        assert_eq!(ModeParam::from_id("model"), Some(ModeParam::Model));
        assert_eq!(ModeParam::from_id("Masked noise"), None);
        assert_eq!(CloakParams::default().mode.value(), ModeParam::Mute);
    }
}
