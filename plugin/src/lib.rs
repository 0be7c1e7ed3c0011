//! advox's real-time plugins, CLAP and VST3: **Cloak** keeps speech recognisers from the
//! words — by default a mute segment at the start of every 30-s window, or a perturbation kept
//! under the masking threshold (a universal perturbation file, shaped noise, or an attack per
//! window); **Sentinel** flags adversarial audio (per-frame features, plus a Whisper check on a
//! background thread) with MIDI notes and an optional gate. Parameters, state, threads and glue
//! live here; every DSP routine is in the `advox` core (`advox::stream`).

pub mod cloak;
#[cfg(feature = "editor")]
pub mod editor;
pub mod sentinel;
pub mod source_loader;

use nice_plug::prelude::{AudioIOLayout, NonZeroU32};
use std::sync::{Arc, Mutex, PoisonError, Weak};

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
/// Sentinel's model check and Cloak's model mode. One copy per process, shared by every
/// instance and activation while any holds it: a host that restarts a plugin many times a
/// second (clap-validator's fuzzer does) would otherwise start a load of its own on each
/// worker, all at once, until memory runs out. Loads wait for the one in progress.
pub(crate) fn load_default_model() -> advox::Result<Arc<advox::model::LoadedModel>> {
    static SHARED: Mutex<Weak<advox::model::LoadedModel>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(model) = shared.upgrade() {
        return Ok(model);
    }
    let dir = advox::model::provision::model_dir("tiny.en");
    if !advox::model::provision::is_model_dir(&dir) {
        return Err(advox::Error::bad_model(
            &dir,
            "no model here: run `advox model fetch` to provision tiny.en",
        ));
    }
    let model = Arc::new(advox::model::LoadedModel::load(
        &dir,
        &candle_core::Device::Cpu,
    )?);
    *shared = Arc::downgrade(&model);
    Ok(model)
}

/// Vendor, site and contact of both plugins.
pub const VENDOR: &str = "advox";
/// The project's site.
pub const URL: &str = "https://github.com/advox/advox";
/// Contact address.
pub const EMAIL: &str = "advox@example.invalid";

nice_plug::nice_export_clap!(Cloak, Sentinel);
nice_plug::nice_export_vst3!(Cloak, Sentinel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_that_load_at_once_share_one_model() {
        let loads: Vec<_> = (0..6)
            .map(|_| std::thread::spawn(load_default_model))
            .collect();
        let models: Vec<_> = loads
            .into_iter()
            .map(|t| t.join().expect("a loader panicked"))
            .collect::<advox::Result<_>>()
            .expect("tiny.en is provisioned (`advox model fetch`)");
        assert!(models.iter().all(|m| Arc::ptr_eq(m, &models[0])));
        assert_eq!(Arc::strong_count(&models[0]), 6);
        drop(models);
        // Freed with its last holder; the next activation loads it again.
        let again = load_default_model().expect("tiny.en");
        assert_eq!(Arc::strong_count(&again), 1);
    }
}
