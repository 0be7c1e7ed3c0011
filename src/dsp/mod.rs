//! Signal processing shared by the attacks, the mel front-end and the plugins.

pub mod filter;
pub mod stft;
pub mod window;

pub use stft::Stft;
pub use window::{hann_periodic, hann_symmetric};
