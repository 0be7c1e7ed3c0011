//! advox: adversarial attacks on speech recognisers, and their detection and defence.
//!
//! The core library owns every algorithm; the `advox` CLI and the plugins are thin shells.
//! Data flow of the foundation: [`audio`] reads any file to 16 kHz mono, [`mel`] turns it into
//! OpenAI's log-mel (plain or differentiable), [`model::Whisper`] runs the encoder/decoder
//! (forward, and a hand-written backward to the input), [`model::decode`] turns logits into text.

pub mod atomic_file;
pub mod attack;
pub mod attribute;
pub mod audio;
pub mod autodiff;
pub mod defend;
pub mod detect;
pub mod dsp;
pub mod error;
pub mod eval;
pub mod formats;
pub mod gradient;
pub mod manifest;
pub mod masking;
pub mod mel;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod objective;
pub mod perturb;
#[cfg(feature = "plots")]
pub mod plot;
pub mod recognizer;
pub mod rng;
pub mod stream;
pub mod text;
pub mod transcribe;
pub mod transfer;
pub mod ultrasonic;
pub mod verify;

pub use error::{Error, Result};
