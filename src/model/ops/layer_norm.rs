//! Layer-norm input gradient in one pass per row (instead of a dozen tensor operations), with
//! the residual branch's gradient added in the same pass.

use super::with_cpu_f32s;
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Gradient w.r.t. `x` of `layer_norm(x) · γ + β` over the last axis, given the output
/// gradient `dy`, plus `residual` (same shape) when given:
/// `dx = r (g − mean(g) − x̂ mean(g x̂)) [+ residual]`, `g = dy γ`, recomputing `x̂` and `r`.
pub fn layer_norm_backward(
    x: &Tensor,
    gamma: &Tensor,
    dy: &Tensor,
    eps: f64,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let d = gamma.elem_count();
    if x.dims() != dy.dims()
        || x.dims().last() != Some(&d)
        || residual.is_some_and(|r| r.dims() != x.dims())
    {
        return Err(Error::Shape(format!(
            "layer-norm gradient shapes: x {:?}, dy {:?}, gamma {:?}",
            x.dims(),
            dy.dims(),
            gamma.dims()
        )));
    }
    if !matches!(x.device(), Device::Cpu) || d == 0 {
        let dx = reference(x, gamma, dy, eps)?;
        return Ok(match residual {
            Some(r) => (dx + r)?,
            None => dx,
        });
    }
    let n = x.elem_count();
    let mut dx: Vec<f32> = Vec::with_capacity(n);
    let res = residual.unwrap_or(dy);
    let add = residual.is_some();
    with_cpu_f32s([x, gamma, dy, res], |[xs, gs, dys, rs]| {
        const ROWS: usize = 16;
        dx.spare_capacity_mut()[..n]
            .par_chunks_mut(ROWS * d)
            .zip(xs.par_chunks(ROWS * d))
            .zip(dys.par_chunks(ROWS * d))
            .zip(rs.par_chunks(ROWS * d))
            .for_each(|(((out, xc), dyc), rc)| {
                for (((o, xr), dr), rr) in out
                    .chunks_exact_mut(d)
                    .zip(xc.chunks_exact(d))
                    .zip(dyc.chunks_exact(d))
                    .zip(rc.chunks_exact(d))
                {
                    row(o, xr, gs, dr, add.then_some(rr), eps as f32);
                }
            });
    })?;
    // SAFETY: the chunks above cover all `n` elements and `row` writes each one.
    unsafe { dx.set_len(n) };
    Ok(Tensor::from_vec(dx, x.shape().clone(), x.device())?)
}

#[inline]
fn row(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    res: Option<&[f32]>,
    eps: f32,
) {
    let inv_d = 1.0 / x.len() as f32;
    let mean = x.iter().sum::<f32>() * inv_d;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_d;
    let r = 1.0 / (var + eps).sqrt();
    let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
    for ((xv, gv), dv) in x.iter().zip(gamma).zip(dy) {
        let g = dv * gv;
        sum_g += g;
        sum_gx += g * (xv - mean) * r;
    }
    let (mean_g, mean_gx) = (sum_g * inv_d, sum_gx * inv_d);
    for (i, o) in out.iter_mut().enumerate() {
        let xhat = (x[i] - mean) * r;
        let v = r * (dy[i] * gamma[i] - mean_g - xhat * mean_gx);
        o.write(v + res.map_or(0.0, |rs| rs[i]));
    }
}

/// The same from candle operations (other devices, and the tests' oracle).
fn reference(x: &Tensor, gamma: &Tensor, dy: &Tensor, eps: f64) -> Result<Tensor> {
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let r = (var + eps)?.sqrt()?.recip()?;
    let xhat = xc.broadcast_mul(&r)?;
    let g = dy.broadcast_mul(gamma)?;
    let g_mean = g.mean_keepdim(D::Minus1)?;
    let gx_mean = (&g * &xhat)?.mean_keepdim(D::Minus1)?;
    let inner = g
        .broadcast_sub(&g_mean)?
        .sub(&xhat.broadcast_mul(&gx_mean)?)?;
    Ok(inner.broadcast_mul(&r)?)
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;

    #[test]
    fn fused_layer_norm_gradient_matches_candle_ops() {
        let dev = Device::Cpu;
        for rows in [1usize, 15, 17, 100] {
            let x = (Tensor::randn(0f32, 3.0, (1, rows, 48), &dev).unwrap() + 0.7).unwrap();
            let gamma = Tensor::randn(0f32, 1.0, 48, &dev).unwrap();
            let dy = Tensor::randn(0f32, 1.0, (1, rows, 48), &dev).unwrap();
            let res = Tensor::randn(0f32, 1.0, (1, rows, 48), &dev).unwrap();
            let want = reference(&x, &gamma, &dy, 1e-5).unwrap();
            let got = layer_norm_backward(&x, &gamma, &dy, 1e-5, None).unwrap();
            assert!(max_abs_diff(&got, &want) < 1e-5, "rows {rows}");
            let got = layer_norm_backward(&x, &gamma, &dy, 1e-5, Some(&res)).unwrap();
            assert!(
                max_abs_diff(&got, &(want + res).unwrap()) < 1e-5,
                "rows {rows}, residual"
            );
        }
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
        let g = Tensor::zeros(5, candle_core::DType::F32, &dev).unwrap();
        assert!(layer_norm_backward(&x, &g, &x, 1e-5, None).is_err());
    }
}
