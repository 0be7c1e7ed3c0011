//! Short-time Fourier transform and its inverse (weighted overlap-add), on realfft.
//!
//! Frames start at `t * hop` on the signal padded by `n_fft / 2` zeros on both sides (centred
//! frames). The inverse divides by the summed squared window, so `istft(stft(x)) == x` for any
//! window/hop pair whose squared window overlap-adds to a non-zero value everywhere inside the
//! signal (every COLA pair, e.g. Hann with hop n/2 or n/4).

use crate::{Error, Result};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// A planned STFT of fixed frame size, hop and window.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// A complex spectrogram: `frames` rows of `bins = n_fft / 2 + 1` coefficients, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    /// Number of frames.
    pub frames: usize,
    /// Bins per frame (`n_fft / 2 + 1`).
    pub bins: usize,
    /// Coefficients, `frames * bins`, frame-major.
    pub data: Vec<Complex32>,
}

impl Spectrogram {
    /// Coefficients of one frame.
    pub fn frame(&self, t: usize) -> &[Complex32] {
        &self.data[t * self.bins..(t + 1) * self.bins]
    }
}

impl Stft {
    /// Plan an STFT. `window.len()` must equal `n_fft`, `hop` must be in `1..=n_fft`.
    pub fn new(n_fft: usize, hop: usize, window: Vec<f32>) -> Result<Self> {
        if n_fft < 2 || !n_fft.is_multiple_of(2) {
            return Err(Error::InvalidArgument(format!(
                "n_fft must be even and >= 2, got {n_fft}"
            )));
        }
        if hop == 0 || hop > n_fft {
            return Err(Error::InvalidArgument(format!(
                "hop must be in 1..={n_fft}, got {hop}"
            )));
        }
        if window.len() != n_fft {
            return Err(Error::InvalidArgument(format!(
                "window length {} differs from n_fft {n_fft}",
                window.len()
            )));
        }
        let mut planner = RealFftPlanner::<f32>::new();
        Ok(Stft {
            n_fft,
            hop,
            window,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        })
    }

    /// Frame size.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }
    /// Hop between frames.
    pub fn hop(&self) -> usize {
        self.hop
    }
    /// Bins per frame.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }
    /// Number of centred frames for a signal of `len` samples.
    pub fn frames_for(&self, len: usize) -> usize {
        len / self.hop + 1
    }

    /// Forward transform of a whole signal (centred frames, zero padding at the ends).
    pub fn stft(&self, signal: &[f32]) -> Spectrogram {
        let frames = self.frames_for(signal.len());
        let bins = self.bins();
        let half = self.n_fft / 2;
        let mut data = vec![Complex32::new(0.0, 0.0); frames * bins];
        let mut frame = vec![0.0f32; self.n_fft];
        let mut scratch = self.forward.make_scratch_vec();
        for t in 0..frames {
            let start = (t * self.hop) as isize - half as isize;
            for (i, f) in frame.iter_mut().enumerate() {
                let idx = start + i as isize;
                let s = if idx >= 0 && (idx as usize) < signal.len() {
                    signal[idx as usize]
                } else {
                    0.0
                };
                *f = s * self.window[i];
            }
            let out = &mut data[t * bins..(t + 1) * bins];
            // Lengths are fixed by construction, so the transform cannot fail.
            let _ = self
                .forward
                .process_with_scratch(&mut frame, out, &mut scratch);
        }
        Spectrogram { frames, bins, data }
    }

    /// Inverse transform by weighted overlap-add, returning `len` samples.
    pub fn istft(&self, spec: &Spectrogram, len: usize) -> Result<Vec<f32>> {
        if spec.bins != self.bins() {
            return Err(Error::InvalidArgument(format!(
                "spectrogram has {} bins, this STFT expects {}",
                spec.bins,
                self.bins()
            )));
        }
        let half = self.n_fft / 2;
        let norm = self.wola_norm(spec.frames);
        let mut acc = vec![0.0f32; norm.len()];
        let mut buf = vec![Complex32::new(0.0, 0.0); self.bins()];
        let mut frame = vec![0.0f32; self.n_fft];
        let mut scratch = self.inverse.make_scratch_vec();
        let scale = 1.0 / self.n_fft as f32;
        for t in 0..spec.frames {
            buf.copy_from_slice(spec.frame(t));
            // A real signal's DC and Nyquist bins are real; drop any imaginary part.
            buf[0].im = 0.0;
            let last = buf.len() - 1;
            buf[last].im = 0.0;
            let _ = self
                .inverse
                .process_with_scratch(&mut buf, &mut frame, &mut scratch);
            let start = t * self.hop;
            for i in 0..self.n_fft {
                acc[start + i] += frame[i] * scale * self.window[i];
            }
        }
        let padded = norm.len();
        let mut out = vec![0.0f32; len];
        for (i, o) in out.iter_mut().enumerate() {
            let j = i + half;
            if j < padded && norm[j] > 1e-8 {
                *o = acc[j] / norm[j];
            }
        }
        Ok(out)
    }

    /// Summed squared window of `frames` overlapped frames (the ISTFT's normaliser).
    fn wola_norm(&self, frames: usize) -> Vec<f32> {
        let padded = frames.saturating_sub(1) * self.hop + self.n_fft;
        let mut norm = vec![0.0f32; padded];
        for t in 0..frames {
            for (i, w) in self.window.iter().enumerate() {
                norm[t * self.hop + i] += w * w;
            }
        }
        norm
    }

    /// Adjoint of [`Stft::istft`] for `frames` frames: maps a gradient w.r.t. the output signal
    /// to the gradient w.r.t. the real and imaginary parts of every coefficient (packed as the
    /// re/im parts of the returned spectrogram). `<istft(Z), g> == <Z, istft_adjoint(g)>`.
    pub fn istft_adjoint(&self, grad: &[f32], frames: usize) -> Spectrogram {
        let half = self.n_fft / 2;
        let bins = self.bins();
        let norm = self.wola_norm(frames);
        let scale = 1.0 / self.n_fft as f32;
        let mut data = vec![Complex32::new(0.0, 0.0); frames * bins];
        let mut frame = vec![0.0f32; self.n_fft];
        let mut scratch = self.forward.make_scratch_vec();
        for t in 0..frames {
            for (i, f) in frame.iter_mut().enumerate() {
                let j = t * self.hop + i;
                *f = match j.checked_sub(half) {
                    Some(k) if k < grad.len() && norm[j] > 1e-8 => {
                        grad[k] * self.window[i] * scale / norm[j]
                    }
                    _ => 0.0,
                };
            }
            let out = &mut data[t * bins..(t + 1) * bins];
            let _ = self
                .forward
                .process_with_scratch(&mut frame, out, &mut scratch);
            for (k, c) in out.iter_mut().enumerate() {
                if k == 0 || k == bins - 1 {
                    c.im = 0.0;
                } else {
                    *c *= 2.0;
                }
            }
        }
        Spectrogram { frames, bins, data }
    }

    /// Adjoint of [`Stft::stft`] for a signal of `len` samples: maps a gradient w.r.t. the real
    /// and imaginary parts of every coefficient (packed as the re/im parts of `grad`) to the
    /// gradient w.r.t. the signal. `<stft(x), G> == <x, stft_adjoint(G, len)>` with the real
    /// inner product over re/im parts.
    pub fn stft_adjoint(&self, grad: &Spectrogram, len: usize) -> Result<Vec<f32>> {
        if grad.bins != self.bins() {
            return Err(Error::InvalidArgument(format!(
                "spectrogram has {} bins, this STFT expects {}",
                grad.bins,
                self.bins()
            )));
        }
        let half = self.n_fft / 2;
        let bins = self.bins();
        let mut out = vec![0.0f32; len];
        let mut buf = vec![Complex32::new(0.0, 0.0); bins];
        let mut frame = vec![0.0f32; self.n_fft];
        let mut scratch = self.inverse.make_scratch_vec();
        for t in 0..grad.frames {
            // d/dx_n of Σ_k Re(G_k* X_k) = Re Σ_k G_k e^{+iθ}; the inverse real FFT doubles the
            // bins between DC and Nyquist, so halve them.
            for (k, (b, g)) in buf.iter_mut().zip(grad.frame(t)).enumerate() {
                *b = if k == 0 || k == bins - 1 {
                    Complex32::new(g.re, 0.0)
                } else {
                    g * 0.5
                };
            }
            let _ = self
                .inverse
                .process_with_scratch(&mut buf, &mut frame, &mut scratch);
            let start = (t * self.hop) as isize - half as isize;
            for (i, f) in frame.iter().enumerate() {
                let idx = start + i as isize;
                if idx >= 0 && (idx as usize) < len {
                    out[idx as usize] += f * self.window[i];
                }
            }
        }
        Ok(out)
    }
}
