//! advox's real-time plugins, CLAP and VST3: **Cloak** adds a perturbation kept under the
//! masking threshold (a universal perturbation file or shaped noise) so speech recognisers
//! mishear; **Sentinel** flags adversarial audio (per-frame features, plus a Whisper check on a
//! background thread) with MIDI notes and an optional gate. Parameters, state, threads and glue
//! live here; every DSP routine is in the `advox` core (`advox::stream`).

pub mod cloak;
#[cfg(feature = "editor")]
pub mod editor;
pub mod sentinel;
pub mod source_loader;

use nice_plug::prelude::{AudioIOLayout, NonZeroU32};

pub use cloak::Cloak;
pub use sentinel::Sentinel;

/// Both plugins: stereo in/out, or mono in/out.
pub const STEREO_OR_MONO: &[AudioIOLayout] = &[
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

/// The default model (tiny.en from advox's model cache), loaded on a worker thread by
/// Sentinel's model check and Cloak's model mode.
pub(crate) fn load_default_model() -> advox::Result<advox::model::LoadedModel> {
    let dir = advox::model::provision::model_dir("tiny.en");
    if !advox::model::provision::is_model_dir(&dir) {
        return Err(advox::Error::bad_model(
            &dir,
            "no model here: run `advox model fetch` to provision tiny.en",
        ));
    }
    advox::model::LoadedModel::load(&dir, &candle_core::Device::Cpu)
}

/// Vendor, site and contact of both plugins.
pub const VENDOR: &str = "advox";
/// The project's site.
pub const URL: &str = "https://github.com/advox/advox";
/// Contact address.
pub const EMAIL: &str = "advox@example.invalid";

nice_plug::nice_export_clap!(Cloak, Sentinel);
nice_plug::nice_export_vst3!(Cloak, Sentinel);
