//! advox's real-time plugins, CLAP and VST3: **Cloak** adds a perturbation kept under the
//! masking threshold (a universal perturbation file or shaped noise) so speech recognisers
//! mishear; **Sentinel** flags adversarial audio (per-frame features, plus a Whisper check on a
//! background thread) with MIDI notes and an optional gate. Parameters, state, threads and glue
//! live here; every DSP routine is in the `advox` core (`advox::stream`).

pub mod cloak;
pub mod sentinel;
pub mod source_loader;

pub use cloak::Cloak;
pub use sentinel::Sentinel;

nice_plug::nice_export_clap!(Cloak, Sentinel);
nice_plug::nice_export_vst3!(Cloak, Sentinel);
