//! OpenAI Whisper's log-mel front-end, in two forms that share one definition:
//! [`log_mel`] (plain, realfft, for inference) and [`MelFrontEnd::log_mel`] (a candle graph from
//! waveform to log-mel, differentiable, for attacks).
//!
//! Definition (as `whisper.audio.log_mel_spectrogram`): the waveform is zero-padded (or cut) to
//! 30 s = 480000 samples, reflect-padded by 200 on both sides, framed with n_fft = 400 and hop 160
//! under a periodic Hann window (3001 frames, the last dropped), power |X|², Slaney mel
//! filterbank, `log10(max(x, 1e-10))`, `max(x, global_max - 8)`, `(x + 4) / 4`.

use crate::dsp::hann_periodic;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use realfft::RealFftPlanner;

/// Sample rate of the front-end.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size.
pub const N_FFT: usize = 400;
/// Hop between frames.
pub const HOP_LENGTH: usize = 160;
/// Samples in one 30-s window.
pub const N_SAMPLES: usize = 30 * SAMPLE_RATE;
/// Mel frames in one window.
pub const N_FRAMES: usize = N_SAMPLES / HOP_LENGTH;
/// Frequency bins per frame.
pub const N_BINS: usize = N_FFT / 2 + 1;

/// `log10` of the power floor: the log-mel of a frame that sees only zeros.
const SILENT_LOG_MEL: f32 = -10.0;

/// Frames of a window holding `n` samples (then zeros) that overlap the samples; the others
/// see only zeros.
pub fn live_frames(n: usize) -> usize {
    if n + N_FFT >= N_SAMPLES {
        N_FRAMES
    } else {
        ((n + N_FFT / 2 - 1) / HOP_LENGTH + 1).min(N_FRAMES)
    }
}

/// Index into the (zero-padded, 480000-sample) window of sample `i` of frame `t`, with the
/// centre reflect padding applied. The one framing rule both forms use.
pub fn frame_sample_index(t: usize, i: usize) -> usize {
    let p = (t * HOP_LENGTH + i) as isize - (N_FFT / 2) as isize;
    let last = (N_SAMPLES - 1) as isize;
    let j = if p < 0 {
        -p
    } else if p > last {
        2 * last - p
    } else {
        p
    };
    j as usize
}

fn hz_to_mel_slaney(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

fn mel_to_hz_slaney(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// Slaney-scale, Slaney-normalised mel filterbank (as `librosa.filters.mel(sr, n_fft, n_mels)`),
/// row-major `n_mels x (n_fft / 2 + 1)`, from 0 Hz to `sample_rate / 2`.
pub fn mel_filterbank(sample_rate: usize, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let fmax = sample_rate as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * fmax / (n_bins - 1) as f64)
        .collect();
    let mel_max = hz_to_mel_slaney(fmax);
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz_slaney(mel_max * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0.0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let lower_width = mel_f[m + 1] - mel_f[m];
        let upper_width = mel_f[m + 2] - mel_f[m + 1];
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / lower_width;
            let upper = (mel_f[m + 2] - f) / upper_width;
            weights[m * n_bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    weights
}

/// How a recogniser fills the 30-s window past the end of a shorter signal. Deployed Whisper
/// implementations differ here, and an adversarial example tuned to one front end can fail on
/// the other (`../shared/notes/faster-whisper-front-end.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrontEnd {
    /// OpenAI's `whisper`, Hugging Face transformers, whisper.cpp: the *audio* is zero-padded
    /// to 30 s, so the frames past the signal hold the log-mel floor of silence.
    #[default]
    Openai,
    /// faster-whisper (CTranslate2): the log-mel of the signal (padded by one hop) is padded
    /// with zero *features* to 3000 frames — a quiet hiss in log-mel terms, not silence. The
    /// frames that overlap the signal are OpenAI's (up to the reflection padding of the last
    /// one or two, which this does not model).
    FasterWhisper,
}

impl std::str::FromStr for FrontEnd {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        FrontEnd::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                crate::error::unknown_name("front end", s, &FrontEnd::ALL.map(FrontEnd::name))
            })
    }
}

impl FrontEnd {
    /// Both front ends.
    pub const ALL: [FrontEnd; 2] = [FrontEnd::Openai, FrontEnd::FasterWhisper];

    /// Its name (`openai`, `faster-whisper`).
    pub fn name(self) -> &'static str {
        match self {
            FrontEnd::Openai => "openai",
            FrontEnd::FasterWhisper => "faster-whisper",
        }
    }

    /// The frames of a window of `n` samples that hold features of the signal; the rest are
    /// padding (the whole window under [`FrontEnd::Openai`]).
    pub fn signal_frames(self, n: usize) -> usize {
        match self {
            FrontEnd::Openai => N_FRAMES,
            // faster-whisper pads the audio by one hop and frames it (centred, dropping the
            // last frame: n/160 + 1 frames), then takes `content_frames = frames − 1` of them
            // (`transcribe.py`: `features[:, seek:seek + segment_size]` with `segment_size ≤
            // content_frames`) and pads those with zeros (`pad_or_trim`).
            FrontEnd::FasterWhisper => (n.min(N_SAMPLES) / HOP_LENGTH).min(N_FRAMES),
        }
    }
}

/// [`log_mel`] as `front_end` computes it for a window of `samples`.
pub fn log_mel_with(samples: &[f32], n_mels: usize, front_end: FrontEnd) -> Vec<f32> {
    let mut mel = log_mel(samples, n_mels);
    let keep = front_end.signal_frames(samples.len());
    if keep < N_FRAMES {
        for row in mel.chunks_exact_mut(N_FRAMES) {
            row[keep..].iter_mut().for_each(|v| *v = 0.0);
        }
    }
    mel
}

/// Plain log-mel of one 30-s window: `n_mels x N_FRAMES`, row-major. Samples past 30 s are
/// ignored; shorter input is zero-padded.
pub fn log_mel(samples: &[f32], n_mels: usize) -> Vec<f32> {
    let filters = mel_filterbank(SAMPLE_RATE, N_FFT, n_mels);
    let window = hann_periodic(N_FFT);
    let mut padded = vec![0.0f32; N_SAMPLES];
    let n = samples.len().min(N_SAMPLES);
    padded[..n].copy_from_slice(&samples[..n]);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
    let mut frame = vec![0.0f32; N_FFT];
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f32; N_BINS];
    let mut mel = vec![0.0f32; n_mels * N_FRAMES];
    for t in 0..N_FRAMES {
        for (i, f) in frame.iter_mut().enumerate() {
            *f = padded[frame_sample_index(t, i)] * window[i];
        }
        let _ = fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch);
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for m in 0..n_mels {
            let row = &filters[m * N_BINS..(m + 1) * N_BINS];
            let e: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
            mel[m * N_FRAMES + t] = e.max(1e-10).log10();
        }
    }
    let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in &mut mel {
        *v = (v.max(max - 8.0) + 4.0) / 4.0;
    }
    mel
}

/// The differentiable front-end: constant tensors (window-folded DFT matrices, filterbank,
/// frame gather indices) built once per device; a clone shares them (candle tensors are
/// reference-counted).
#[derive(Clone)]
pub struct MelFrontEnd {
    n_mels: usize,
    kind: FrontEnd,
    frame_index: Tensor,
    dft_cos: Tensor,
    dft_sin: Tensor,
    filters_t: Tensor,
}

impl MelFrontEnd {
    /// Build the front-end for `n_mels` bands on `device`.
    pub fn new(n_mels: usize, device: &Device) -> Result<Self> {
        let window = hann_periodic(N_FFT);
        let mut cos = vec![0.0f32; N_FFT * N_BINS];
        let mut sin = vec![0.0f32; N_FFT * N_BINS];
        for n in 0..N_FFT {
            for k in 0..N_BINS {
                let phase = 2.0 * std::f64::consts::PI * ((n * k) % N_FFT) as f64 / N_FFT as f64;
                cos[n * N_BINS + k] = (phase.cos() * window[n] as f64) as f32;
                sin[n * N_BINS + k] = (-phase.sin() * window[n] as f64) as f32;
            }
        }
        let index: Vec<u32> = (0..N_FRAMES)
            .flat_map(|t| (0..N_FFT).map(move |i| frame_sample_index(t, i) as u32))
            .collect();
        let filters = mel_filterbank(SAMPLE_RATE, N_FFT, n_mels);
        Ok(MelFrontEnd {
            n_mels,
            kind: FrontEnd::Openai,
            frame_index: Tensor::from_vec(index, N_FRAMES * N_FFT, device)?,
            dft_cos: Tensor::from_vec(cos, (N_FFT, N_BINS), device)?,
            dft_sin: Tensor::from_vec(sin, (N_FFT, N_BINS), device)?,
            filters_t: Tensor::from_vec(filters, (n_mels, N_BINS), device)?
                .t()?
                .contiguous()?,
        })
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The same front end computing the log-mel as `kind` does (see [`FrontEnd`]).
    pub fn as_kind(mut self, kind: FrontEnd) -> Self {
        self.kind = kind;
        self
    }

    /// Which implementation's log-mel it computes.
    pub fn kind(&self) -> FrontEnd {
        self.kind
    }

    /// Log-mel of a waveform tensor of shape `(n,)`, `n <= 480000`: `(n_mels, 3000)`, as
    /// [`MelFrontEnd::kind`] computes it. Built from differentiable candle ops, so gradients
    /// flow back to the waveform.
    pub fn log_mel(&self, wave: &Tensor) -> Result<Tensor> {
        let mel = self.padded_audio_log_mel(wave)?;
        let keep = self.kind.signal_frames(wave.dim(0)?);
        if keep >= N_FRAMES {
            return Ok(mel);
        }
        Ok(mel
            .narrow(1, 0, keep)?
            .pad_with_zeros(1, 0, N_FRAMES - keep)?)
    }

    /// OpenAI's log-mel (the audio zero-padded to 30 s).
    fn padded_audio_log_mel(&self, wave: &Tensor) -> Result<Tensor> {
        let n = wave.dim(0)?;
        if n > N_SAMPLES {
            return Err(crate::Error::InvalidArgument(format!(
                "a window holds at most {N_SAMPLES} samples, got {n}"
            )));
        }
        let wave = wave.to_dtype(DType::F32)?;
        let padded = if n < N_SAMPLES {
            wave.pad_with_zeros(0, 0, N_SAMPLES - n)?
        } else {
            wave
        };
        // Frames that see only the zero padding have zero power: their log-mel is the floor,
        // a constant, so only the frames touching the signal go through the transform.
        let live = live_frames(n);
        let index = self.frame_index.narrow(0, 0, live * N_FFT)?;
        let frames = padded.index_select(&index, 0)?.reshape((live, N_FFT))?;
        let re = frames.matmul(&self.dft_cos)?;
        let im = frames.matmul(&self.dft_sin)?;
        let power = (re.sqr()? + im.sqr()?)?;
        let mel = power.matmul(&self.filters_t)?;
        let log = (mel.maximum(1e-10)?.log()? * (1.0 / std::f64::consts::LN_10))?;
        let log = if live < N_FRAMES {
            let floor = Tensor::full(SILENT_LOG_MEL, (N_FRAMES - live, self.n_mels), log.device())?;
            Tensor::cat(&[&log, &floor], 0)?
        } else {
            log
        };
        let floor = (log.flatten_all()?.max(0)? - 8.0)?;
        let clamped = log.broadcast_maximum(&floor)?;
        Ok(((clamped + 4.0)? * 0.25)?.t()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differentiable_and_plain_forms_agree_at_every_length() {
        let mut seed = 1u32;
        for n in [1usize, 161, 16_000, 479_500, 479_700, N_SAMPLES] {
            let wave: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            let openai = log_mel(&wave, 80);
            for kind in FrontEnd::ALL {
                let front = MelFrontEnd::new(80, &Device::Cpu).unwrap().as_kind(kind);
                let plain = log_mel_with(&wave, 80, kind);
                let t = Tensor::from_vec(wave.clone(), n, &Device::Cpu).unwrap();
                let diff = front
                    .log_mel(&t)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let err = plain
                    .iter()
                    .zip(&diff)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(err < 1e-4, "{kind:?}, length {n}: max error {err}");
                // faster-whisper keeps n/160 frames of the signal (OpenAI's values) and pads
                // the rest of the window with zero features.
                let keep = kind.signal_frames(n);
                if kind == FrontEnd::FasterWhisper {
                    assert_eq!(keep, (n / HOP_LENGTH).min(N_FRAMES));
                }
                for (row, reference) in plain.chunks(N_FRAMES).zip(openai.chunks(N_FRAMES)) {
                    assert_eq!(row[..keep], reference[..keep], "{kind:?}, length {n}");
                    assert!(
                        row[keep..].iter().all(|&v| v == 0.0),
                        "{kind:?}, length {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn live_frames_cover_every_frame_touching_the_signal() {
        for n in [1usize, 159, 160, 161, 27_423, 479_599, 479_600, N_SAMPLES] {
            let live = live_frames(n);
            for t in live..N_FRAMES {
                for i in 0..N_FFT {
                    assert!(
                        frame_sample_index(t, i) >= n,
                        "n {n}: frame {t} sees sample {i}"
                    );
                }
            }
        }
    }
}
