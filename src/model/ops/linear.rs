//! Frozen linear layers on the CPU: `x Wᵀ + b` with the bias written before the product (no
//! separate pass), and input gradients `Σ dyᵢ Wᵢ` summed inside the products.
//! Rows are split among the threads, one single-threaded GEMM each.

use super::{matmul, matmul_uninit, with_cpu_f32s, ROW_MAJOR, TRANSPOSED};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows per parallel block: enough for the GEMM to run well, at most one block per thread.
fn row_block(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(32)
}

/// `x (rows, in) · w (out, in)ᵀ [+ bias (out,)] [+ residual (rows, out)]` -> `(rows, out)`;
/// the residual is the product's starting value (a residual connection without its own pass).
pub fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let (rows, inner) = x.dims2()?;
    let (out, w_in) = w.dims2()?;
    if w_in != inner
        || bias.is_some_and(|b| b.dims() != [out])
        || residual.is_some_and(|r| r.dims() != [rows, out])
    {
        return Err(Error::Shape(format!(
            "linear shapes: input {:?}, weight {:?}, bias {:?}",
            x.dims(),
            w.dims(),
            bias.map(|b| b.dims().to_vec())
        )));
    }
    if !matches!(x.device(), Device::Cpu) || rows == 0 || out == 0 {
        let y = x.matmul(&w.t()?)?;
        let y = match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        return Ok(match residual {
            Some(r) => (y + r)?,
            None => y,
        });
    }
    let empty = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
    let inputs = [x, w, bias.unwrap_or(&empty), residual.unwrap_or(&empty)];
    if rows <= FEW_ROWS {
        let y = with_cpu_f32s(inputs, |[xs, ws, bs, rs]| {
            few_rows(rows, inner, out, xs, ws, bs, rs)
        })?;
        return Ok(Tensor::from_vec(y, (rows, out), x.device())?);
    }
    let mut y: Vec<f32> = Vec::with_capacity(rows * out);
    let block = row_block(rows);
    with_cpu_f32s(inputs, |[xs, ws, bs, rs]| {
        y.spare_capacity_mut()[..rows * out]
            .par_chunks_mut(block * out)
            .enumerate()
            .for_each(|(i, yc)| {
                let r = yc.len() / out;
                let xc = &xs[i * block * inner..][..r * inner];
                let (xv, wv) = (ROW_MAJOR(inner), TRANSPOSED(inner));
                if bs.is_empty() && rs.is_empty() {
                    matmul_uninit(r, out, inner, yc, xc, xv, ws, wv, 1.0);
                } else {
                    let res = (!rs.is_empty()).then(|| &rs[i * block * out..][..r * out]);
                    for (k, row) in yc.chunks_exact_mut(out).enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            let b = bs.get(j).copied().unwrap_or(0.0);
                            v.write(b + res.map_or(0.0, |rs| rs[k * out + j]));
                        }
                    }
                    // SAFETY: every element was just written (bias and residual).
                    let yc = unsafe { &mut *(yc as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    matmul(r, out, inner, yc, ROW_MAJOR(out), true, xc, xv, ws, wv, 1.0);
                }
            });
    })?;
    // SAFETY: the blocks above cover all `rows * out` outputs and write each one.
    unsafe { y.set_len(rows * out) };
    Ok(Tensor::from_vec(y, (rows, out), x.device())?)
}

/// Rows up to which [`linear`] splits the outputs among the threads instead of the rows, with
/// one dot product per output: decoding (a few beams, one token each) against the layers and
/// the vocabulary, where a GEMM spends its time packing a weight that it then uses a few times.
const FEW_ROWS: usize = 8;

/// Outputs per parallel block of [`few_rows`].
const OUTPUT_BLOCK: usize = 2048;

/// [`linear`] for at most [`FEW_ROWS`] rows: `y[r][j] = b[j] + res[r][j] + x[r] · w[j]`, the
/// weight read once, its rows split among the threads.
#[allow(clippy::too_many_arguments)]
fn few_rows(
    rows: usize,
    inner: usize,
    out: usize,
    xs: &[f32],
    ws: &[f32],
    bs: &[f32],
    rs: &[f32],
) -> Vec<f32> {
    // Column-major while computed (each block's outputs contiguous), row-major when returned.
    let mut by_output = vec![0.0f32; rows * out];
    let block = out
        .div_ceil(rayon::current_num_threads().max(1))
        .clamp(1, OUTPUT_BLOCK);
    by_output
        .par_chunks_mut(block * rows)
        .enumerate()
        .for_each(|(i, yc)| {
            let j0 = i * block;
            let n = yc.len() / rows;
            dots(xs, rows, inner, &ws[j0 * inner..][..n * inner], yc);
            for (jj, col) in yc.chunks_exact_mut(rows).enumerate() {
                let j = j0 + jj;
                for (r, v) in col.iter_mut().enumerate() {
                    *v += bs.get(j).copied().unwrap_or(0.0)
                        + rs.get(r * out + j).copied().unwrap_or(0.0);
                }
            }
        });
    let mut y = vec![0.0f32; rows * out];
    for (j, col) in by_output.chunks_exact(rows).enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out + j] = *v;
        }
    }
    y
}

/// `y[j * rows + r] = x[r] · w[j]` for the rows of `w` (`inner` wide each).
#[inline(always)]
fn dots_kernel(xs: &[f32], rows: usize, inner: usize, w: &[f32], y: &mut [f32]) {
    const LANES: usize = 16;
    for (wj, col) in w.chunks_exact(inner).zip(y.chunks_exact_mut(rows)) {
        for (xr, v) in xs.chunks_exact(inner).zip(col.iter_mut()) {
            let mut acc = [0.0f32; LANES];
            let (xc, wc) = (xr.chunks_exact(LANES), wj.chunks_exact(LANES));
            let tail: f32 = xc
                .remainder()
                .iter()
                .zip(wc.remainder())
                .map(|(a, b)| a * b)
                .sum();
            for (a, b) in xc.zip(wc) {
                for k in 0..LANES {
                    acc[k] += a[k] * b[k];
                }
            }
            *v = acc.iter().sum::<f32>() + tail;
        }
    }
}

fn dots(xs: &[f32], rows: usize, inner: usize, w: &[f32], y: &mut [f32]) {
    dispatch!(dots_kernel, dots_avx2, (xs: &[f32], rows: usize, inner: usize, w: &[f32], y: &mut [f32]));
}

/// `Σ dyᵢ (rows, outᵢ) · wᵢ (outᵢ, in)` -> `(rows, in)`: the input gradient of linear layers
/// sharing their input (one for a plain layer; q, k and v of an attention).
pub fn linear_input_grad(terms: &[(&Tensor, &Tensor)]) -> Result<Tensor> {
    let (first_dy, first_w) = terms
        .first()
        .ok_or_else(|| Error::Internal("no linear layer to differentiate".into()))?;
    let rows = first_dy.dim(0)?;
    let inner = first_w.dim(1)?;
    for (dy, w) in terms {
        let (r, o) = dy.dims2()?;
        let (wo, wi) = w.dims2()?;
        if r != rows || wo != o || wi != inner {
            return Err(Error::Shape(format!(
                "linear gradient shapes: {:?} / {:?}",
                dy.dims(),
                w.dims()
            )));
        }
    }
    if !matches!(first_dy.device(), Device::Cpu) || rows == 0 || inner == 0 {
        let mut acc = first_dy.matmul(first_w)?;
        for (dy, w) in &terms[1..] {
            acc = (acc + dy.matmul(w)?)?;
        }
        return Ok(acc);
    }
    let mut dx: Vec<f32> = Vec::with_capacity(rows * inner);
    let block = row_block(rows);
    let tensors: Vec<Tensor> = terms
        .iter()
        .flat_map(|(dy, w)| [(*dy).clone(), (*w).clone()])
        .collect();
    // Up to three layers share an input here (q, k, v).
    let mut refs: [&Tensor; 6] = [&tensors[0]; 6];
    if tensors.len() > refs.len() {
        return Err(Error::Internal("more than three linear layers".into()));
    }
    for (r, t) in refs.iter_mut().zip(&tensors) {
        *r = t;
    }
    let n_terms = terms.len();
    with_cpu_f32s(refs, |slices| {
        dx.spare_capacity_mut()[..rows * inner]
            .par_chunks_mut(block * inner)
            .enumerate()
            .for_each(|(i, dc)| {
                let r = dc.len() / inner;
                let mut acc: Option<&mut [f32]> = None;
                for t in 0..n_terms {
                    let (dys, ws) = (slices[2 * t], slices[2 * t + 1]);
                    let out = ws.len() / inner;
                    let dyc = &dys[i * block * out..][..r * out];
                    let (dv, wv) = (ROW_MAJOR(out), ROW_MAJOR(inner));
                    acc = Some(match acc.take() {
                        None => matmul_uninit(r, inner, out, &mut *dc, dyc, dv, ws, wv, 1.0),
                        Some(a) => {
                            let iv = ROW_MAJOR(inner);
                            matmul(r, inner, out, a, iv, true, dyc, dv, ws, wv, 1.0);
                            a
                        }
                    });
                }
            });
    })?;
    // SAFETY: the first term's product wrote every element of every block.
    unsafe { dx.set_len(rows * inner) };
    Ok(Tensor::from_vec(dx, (rows, inner), first_dy.device())?)
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;

    #[test]
    fn linear_and_its_input_gradient_match_candle() {
        let dev = Device::Cpu;
        for rows in [1usize, 7, 33, 300] {
            let x = Tensor::randn(0f32, 1.0, (rows, 24), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (40, 24), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, 40, &dev).unwrap();
            let plain = x.matmul(&w.t().unwrap()).unwrap();
            let y = linear(&x, &w, None, None).unwrap();
            assert!(max_abs_diff(&y, &plain) < 1e-4, "rows {rows}");
            let y = linear(&x, &w, Some(&b), None).unwrap();
            let yr = plain.broadcast_add(&b).unwrap();
            assert!(max_abs_diff(&y, &yr) < 1e-4, "rows {rows}, bias");
            let res = Tensor::randn(0f32, 1.0, (rows, 40), &dev).unwrap();
            let y = linear(&x, &w, Some(&b), Some(&res)).unwrap();
            assert!(
                max_abs_diff(&y, &(&yr + &res).unwrap()) < 1e-4,
                "rows {rows}, residual"
            );
            let y = linear(&x, &w, None, Some(&res)).unwrap();
            assert!(
                max_abs_diff(&y, &(&plain + &res).unwrap()) < 1e-4,
                "rows {rows}, residual"
            );
            let w2 = Tensor::randn(0f32, 1.0, (16, 24), &dev).unwrap();
            let dy = Tensor::randn(0f32, 1.0, (rows, 40), &dev).unwrap();
            let dy2 = Tensor::randn(0f32, 1.0, (rows, 16), &dev).unwrap();
            let dx = linear_input_grad(&[(&dy, &w), (&dy2, &w2), (&dy, &w)]).unwrap();
            let one = dy.matmul(&w).unwrap();
            let dxr = ((&one + dy2.matmul(&w2).unwrap()).unwrap() + &one).unwrap();
            assert!(max_abs_diff(&dx, &dxr) < 1e-3, "rows {rows}, gradient");
        }
        // Few rows against many outputs (decoding against the vocabulary): several output
        // blocks, an inner size that is no multiple of the vector width.
        let (x, w) = (
            Tensor::randn(0f32, 1.0, (FEW_ROWS, 37), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (2 * OUTPUT_BLOCK + 5, 37), &dev).unwrap(),
        );
        let b = Tensor::randn(0f32, 1.0, 2 * OUTPUT_BLOCK + 5, &dev).unwrap();
        let plain = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert!(max_abs_diff(&linear(&x, &w, Some(&b), None).unwrap(), &plain) < 1e-4);
        let w = Tensor::zeros((3, 5), candle_core::DType::F32, &dev).unwrap();
        let x = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(linear(&x, &w, None, None).is_err());
        assert!(linear_input_grad(&[]).is_err());
    }
}
