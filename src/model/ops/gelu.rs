//! Exact-erf GELU, value and derivative in one vectorised pass.

use super::{erf_approx, exp_approx, reference, with_cpu_f32};
use crate::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[inline(always)]
fn gelu_kernel(x: &[f32], y: &mut [MaybeUninit<f32>], d: &mut [MaybeUninit<f32>]) {
    const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((xi, yi), di) in x.iter().zip(y.iter_mut()).zip(d.iter_mut()) {
        let v = *xi;
        let cdf = 0.5 * (1.0 + erf_approx(v * INV_SQRT2));
        let pdf = INV_SQRT_2PI * exp_approx(-0.5 * v * v);
        yi.write(v * cdf);
        di.write(cdf + v * pdf);
    }
}

/// [`gelu_kernel`]'s value alone: the same `Φ`, no derivative.
#[inline(always)]
fn gelu_value_kernel(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    for (xi, yi) in x.iter().zip(y.iter_mut()) {
        let v = *xi;
        yi.write(v * (0.5 * (1.0 + erf_approx(v * INV_SQRT2))));
    }
}

fn gelu_value_chunk(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    dispatch!(gelu_value_kernel, gelu_value_kernel_avx2, (x: &[f32], y: &mut [MaybeUninit<f32>]));
}

/// Exact-erf GELU of `x` without its derivative (inference: nothing to differentiate);
/// bit for bit the value [`gelu_with_derivative`] returns.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !matches!(x.device(), Device::Cpu) {
        return Ok(reference::gelu_with_derivative(x)?.0);
    }
    let n = x.elem_count();
    let mut y: Vec<f32> = Vec::with_capacity(n);
    with_cpu_f32(x, |xs| {
        assert_eq!(xs.len(), n, "gelu: input size");
        const CHUNK: usize = 16 * 1024;
        xs.par_chunks(CHUNK)
            .zip(y.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .for_each(|(xc, yc)| gelu_value_chunk(xc, yc));
    })?;
    // SAFETY: the chunks above cover all `n` elements, and the kernel writes each one.
    unsafe { y.set_len(n) };
    Ok(Tensor::from_vec(y, x.shape().clone(), x.device())?)
}

fn gelu_chunk(x: &[f32], y: &mut [MaybeUninit<f32>], d: &mut [MaybeUninit<f32>]) {
    dispatch!(gelu_kernel, gelu_kernel_avx2, (x: &[f32], y: &mut [MaybeUninit<f32>], d: &mut [MaybeUninit<f32>]));
}

/// Exact-erf GELU of `x` and its derivative `Φ(x) + x φ(x)` (the tensor the backward multiplies
/// the incoming gradient by).
pub fn gelu_with_derivative(x: &Tensor) -> Result<(Tensor, Tensor)> {
    if !matches!(x.device(), Device::Cpu) {
        return reference::gelu_with_derivative(x);
    }
    let n = x.elem_count();
    // Outputs go straight into fresh memory: the kernel writes every element.
    let mut y: Vec<f32> = Vec::with_capacity(n);
    let mut d: Vec<f32> = Vec::with_capacity(n);
    with_cpu_f32(x, |xs| {
        assert_eq!(xs.len(), n, "gelu: input size");
        const CHUNK: usize = 16 * 1024;
        xs.par_chunks(CHUNK)
            .zip(y.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .zip(d.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
            .for_each(|((xc, yc), dc)| gelu_chunk(xc, yc, dc));
    })?;
    // SAFETY: the chunks above cover all `n` elements of both (equal-length) outputs, and the
    // kernel writes each one.
    unsafe {
        y.set_len(n);
        d.set_len(n);
    }
    let shape = x.shape().clone();
    Ok((
        Tensor::from_vec(y, shape.clone(), x.device())?,
        Tensor::from_vec(d, shape, x.device())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;

    #[test]
    fn fused_gelu_matches_candle() {
        let x = Tensor::randn(0f32, 2.0, (3, 1000), &Device::Cpu).unwrap();
        let (y, d) = gelu_with_derivative(&x).unwrap();
        let (yr, dr) = reference::gelu_with_derivative(&x).unwrap();
        assert!(max_abs_diff(&y, &yr) < 1e-6);
        assert!(max_abs_diff(&d, &dr) < 1e-6);
        assert!(max_abs_diff(&y, &x.gelu_erf().unwrap()) < 1e-6);
        // The value alone is the same value, bit for bit.
        let v = gelu(&x).unwrap();
        assert_eq!(
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
