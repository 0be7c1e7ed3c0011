//! Channel mixing and band-limited resampling (rubato's windowed-sinc resampler).

use super::Audio;
use crate::{Error, Result};
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Mix all channels down to one by averaging.
pub fn to_mono(audio: &Audio) -> Vec<f32> {
    match audio.channels.len() {
        0 => Vec::new(),
        1 => audio.channels[0].clone(),
        n => {
            let scale = 1.0 / n as f32;
            (0..audio.frames())
                .map(|i| audio.channels.iter().map(|c| c[i]).sum::<f32>() * scale)
                .collect()
        }
    }
}

/// Resample mono samples from `from_hz` to `to_hz` with a band-limited sinc interpolator
/// (256 taps, Blackman-Harris window, cutoff at 95 % of the lower Nyquist frequency).
/// The output has `round(len * to_hz / from_hz)` samples (at least one for a non-empty input)
/// and no leading delay.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::InvalidArgument("sample rate of 0 Hz".into()));
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let ratio = to_hz as f64 / from_hz as f64;
    let params = SincInterpolationParameters {
        sinc_len: 256,
        f_cutoff: Some(0.95),
        interpolation: SincInterpolationType::Cubic,
        oversampling_factor: 256,
        window: WindowFunction::BlackmanHarris2,
    };
    let chunk = 4096.min(samples.len().max(1));
    let mut resampler = Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input)
        .map_err(|e| Error::Internal(format!("resampler: {e}")))?;
    let data = vec![samples.to_vec()];
    let input = SequentialSliceOfVecs::new(&data, 1, samples.len())
        .map_err(|e| Error::Internal(format!("resampler input: {e}")))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| Error::Internal(format!("resampling failed: {e}")))?;
    let mut out = out.take_data();
    let expected = ((samples.len() as f64 * ratio).round() as usize).max(1);
    out.resize(expected, 0.0);
    Ok(out)
}
