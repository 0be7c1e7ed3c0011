//! Cloak's shaping of a universal source as a differentiable map, for training a source
//! through exactly what the plugin does to it.
//!
//! For one input, Cloak's universal mode is a fixed function of the source `s` (looped from the
//! stream's start): every synthesised frame takes the source segment under a √Hann window,
//! scales each bin down to its allowance ([`crate::stream::cloak::shape_bin`]; the allowances
//! depend on the input only, [`ShapingPlan`]), resynthesises it under a √Hann window and
//! overlap-adds it. [`CloakShaper::forward`] computes that perturbation from a plan (equal to
//! what [`crate::stream::cloak::CloakChannel::process`] adds, tested), [`CloakShaper::backward`]
//! its exact vector-Jacobian product: a bin within its allowance passes the gradient unchanged,
//! a clipped bin (whose magnitude is the allowance's) passes only its phase component.

use crate::stream::cloak::{shape_bin, ShapingPlan};
use crate::{Error, Result};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Forward and adjoint of Cloak's shaping at one frame size.
pub struct CloakShaper {
    n: usize,
    sqrt_hann: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl CloakShaper {
    /// A shaper for the frames of `plan`.
    pub fn for_plan(plan: &ShapingPlan) -> Result<Self> {
        let n = plan.n;
        if n < 4 || !n.is_multiple_of(2) || plan.hop * 2 != n {
            return Err(Error::InvalidArgument(format!(
                "a shaping plan needs an even frame of at least 4 samples and half-frame hops, \
                 got {n} and {}",
                plan.hop
            )));
        }
        let mut planner = RealFftPlanner::<f32>::new();
        Ok(CloakShaper {
            n,
            sqrt_hann: crate::dsp::hann_periodic(n)
                .iter()
                .map(|w| w.sqrt())
                .collect(),
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        })
    }

    /// The source segment of a frame starting at input time `start`, windowed, and its spectrum.
    fn analyse(&self, source: &[f32], start: i64, offset: usize) -> Result<Vec<Complex32>> {
        let len = source.len() as i64;
        let mut buffer: Vec<f32> = (0..self.n)
            .map(|i| {
                let at = (start + i as i64 + offset as i64).rem_euclid(len) as usize;
                source[at] * self.sqrt_hann[i]
            })
            .collect();
        let mut spectrum = self.forward.make_output_vec();
        self.forward
            .process(&mut buffer, &mut spectrum)
            .map_err(|e| Error::Internal(format!("FFT: {e}")))?;
        Ok(spectrum)
    }

    /// The perturbation (`len` samples, aligned with the input) Cloak adds at `depth` for the
    /// looped `source`, whose sample `offset` plays at the input's first sample.
    pub fn forward(
        &self,
        plan: &ShapingPlan,
        source: &[f32],
        offset: usize,
        len: usize,
        depth: f32,
    ) -> Result<Vec<f32>> {
        let mut delta = vec![0.0f32; len];
        if source.is_empty() {
            return Ok(delta);
        }
        let n2 = (self.n * self.n) as f32;
        let scale = depth / self.n as f32;
        let mut out = vec![0.0f32; self.n];
        for frame in &plan.frames {
            let mut spectrum = self.analyse(source, frame.start, offset)?;
            for (c, &allowed) in spectrum.iter_mut().zip(&frame.allowance) {
                *c = shape_bin(*c, allowed, n2);
            }
            self.inverse
                .process(&mut spectrum, &mut out)
                .map_err(|e| Error::Internal(format!("inverse FFT: {e}")))?;
            for (i, v) in out.iter().enumerate() {
                let t = frame.start + i as i64;
                if t >= 0 && (t as usize) < len {
                    delta[t as usize] += v * scale * self.sqrt_hann[i];
                }
            }
        }
        Ok(delta)
    }

    /// The gradient with respect to `source` of a loss whose gradient with respect to
    /// [`CloakShaper::forward`]'s perturbation is `grad_delta`.
    pub fn backward(
        &self,
        plan: &ShapingPlan,
        source: &[f32],
        offset: usize,
        depth: f32,
        grad_delta: &[f32],
    ) -> Result<Vec<f32>> {
        let mut grad_source = vec![0.0f32; source.len()];
        if source.is_empty() {
            return Ok(grad_source);
        }
        let n = self.n;
        let n2 = (n * n) as f32;
        let scale = depth / n as f32;
        let len = source.len() as i64;
        let mut gy = vec![0.0f32; n];
        let mut grad_out = self.forward.make_output_vec();
        let mut grad_frame = vec![0.0f32; n];
        for frame in &plan.frames {
            // Through the synthesis window and the inverse FFT (the adjoint of an unnormalised
            // complex-to-real transform is twice the forward one on the interior bins).
            let mut any = false;
            for (i, g) in gy.iter_mut().enumerate() {
                let t = frame.start + i as i64;
                *g = if t >= 0 && (t as usize) < grad_delta.len() {
                    grad_delta[t as usize] * scale * self.sqrt_hann[i]
                } else {
                    0.0
                };
                any |= *g != 0.0;
            }
            if !any {
                continue;
            }
            self.forward
                .process(&mut gy, &mut grad_out)
                .map_err(|e| Error::Internal(format!("FFT: {e}")))?;
            // Through the per-bin scaling.
            let spectrum = self.analyse(source, frame.start, offset)?;
            let last = grad_out.len() - 1;
            for (k, (g, (&c, &allowed))) in grad_out
                .iter_mut()
                .zip(spectrum.iter().zip(&frame.allowance))
                .enumerate()
            {
                if k == 0 || k == last || allowed <= 0.0 {
                    *g = Complex32::new(0.0, 0.0);
                    continue;
                }
                let g2 = *g * 2.0;
                let estimate = 2.0 * c.norm_sqr() / n2;
                *g = if estimate > allowed {
                    // out = r ĉ with r fixed: only the component across ĉ passes, times r/|c|.
                    let norm = c.norm();
                    let unit = c / norm;
                    let r = (allowed * n2 / 2.0).sqrt();
                    let radial = unit.re * g2.re + unit.im * g2.im;
                    (g2 - unit * radial) * (r / norm)
                } else {
                    g2
                };
            }
            // Through the forward FFT (its adjoint is half an unnormalised inverse transform on
            // the interior bins) and the analysis window.
            self.inverse
                .process(&mut grad_out, &mut grad_frame)
                .map_err(|e| Error::Internal(format!("inverse FFT: {e}")))?;
            for (i, g) in grad_frame.iter().enumerate() {
                let at = (frame.start + i as i64 + offset as i64).rem_euclid(len) as usize;
                grad_source[at] += 0.5 * g * self.sqrt_hann[i];
            }
        }
        Ok(grad_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::stream::cloak::{CloakChannel, CloakMode, CloakSettings};

    /// Tone bursts over a little noise: some frames loud, some quiet, one silent stretch.
    fn input(len: usize, rate: f32) -> Vec<f32> {
        let mut rng = Rng::new(5);
        (0..len)
            .map(|i| {
                let t = i as f32 / rate;
                let on = ((t * 4.0).fract() < 0.6) as u8 as f32;
                let silent = (0.9..1.1).contains(&t);
                if silent {
                    0.0
                } else {
                    on * 0.2 * (std::f32::consts::TAU * 300.0 * t).sin() + 0.002 * rng.normal()
                }
            })
            .collect()
    }

    fn settings(margin_db: f32) -> CloakSettings {
        CloakSettings {
            mode: CloakMode::Universal,
            margin_db,
            ..CloakSettings::default()
        }
    }

    #[test]
    fn the_shaper_adds_what_the_streaming_cloak_adds() {
        let rate = 16_000.0;
        let x = input(24_000, rate);
        let mut rng = Rng::new(9);
        let source: Vec<f32> = (0..4_000).map(|_| rng.symmetric(0.05)).collect();
        for margin in [6.0, -3.0] {
            let s = settings(margin);
            let mut channel = CloakChannel::new(rate, 256, 0).unwrap();
            let plan = channel.plan(&x, &s);
            let latency = channel.latency();
            let mut stream = x.clone();
            stream.resize(x.len() + latency, 0.0);
            for block in stream.chunks_mut(512) {
                channel.process(block, &s, Some(&source));
            }
            let shaper = CloakShaper::for_plan(&plan).unwrap();
            let delta = shaper.forward(&plan, &source, 0, x.len(), 1.0).unwrap();
            let mut worst = 0.0f32;
            for i in 0..x.len() {
                let added = stream[i + latency] - x[i];
                worst = worst.max((added - delta[i]).abs());
            }
            assert!(worst < 1e-5, "margin {margin}: differs by {worst}");
            assert!(delta.iter().any(|d| d.abs() > 1e-4));
        }
    }

    #[test]
    fn the_backward_pass_is_the_gradient_of_the_forward_one() {
        let rate = 16_000.0;
        let x = input(6_000, rate);
        let mut channel = CloakChannel::new(rate, 256, 0).unwrap();
        let plan = channel.plan(&x, &settings(0.0));
        let shaper = CloakShaper::for_plan(&plan).unwrap();
        let mut rng = Rng::new(2);
        // Mixed scales, so some bins clip and some do not.
        let source: Vec<f32> = (0..1_000)
            .map(|i| rng.symmetric(if i % 300 < 150 { 0.5 } else { 0.0005 }))
            .collect();
        let weights: Vec<f32> = (0..x.len()).map(|_| rng.normal()).collect();
        let loss = |s: &[f32]| -> f64 {
            let d = shaper.forward(&plan, s, 37, x.len(), 0.8).unwrap();
            d.iter().zip(&weights).map(|(a, b)| (a * b) as f64).sum()
        };
        let grad = shaper.backward(&plan, &source, 37, 0.8, &weights).unwrap();
        let mut checked = 0;
        for i in (0..source.len()).step_by(41) {
            let h = (1e-3 * source[i].abs()).max(2e-5);
            let mut plus = source.clone();
            plus[i] += h;
            let mut minus = source.clone();
            minus[i] -= h;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
            let exact = grad[i] as f64;
            let tolerance = 1e-3 + 0.02 * numeric.abs().max(exact.abs());
            assert!(
                (numeric - exact).abs() <= tolerance,
                "sample {i}: numeric {numeric}, backward {exact}"
            );
            checked += (numeric.abs() > 1e-3) as usize;
        }
        assert!(checked > 5, "only {checked} samples had a gradient");
    }
}
