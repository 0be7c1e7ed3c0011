//! Whisper's kernel-3 convolutions as strided GEMMs, forward and input gradient.

use super::{matmul, reference, with_cpu_f32, View, ROW_MAJOR};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// Output channels per parallel block of a convolution.
const CHANNEL_BLOCK: usize = 32;

pub(super) fn conv_dims(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, c_in, t_in) = x.dims3()?;
    let (c_out, w_in, k) = w.dims3()?;
    if w_in != c_in || k != 3 || !(1..=2).contains(&stride) || t_in == 0 {
        return Err(Error::Shape(format!(
            "conv1d expects kernel 3 and stride 1 or 2: input {:?}, weight {:?}",
            x.dims(),
            w.dims()
        )));
    }
    Ok((b, c_in, t_in, c_out, (t_in - 1) / stride + 1))
}

/// Zero-pad each row of a `(rows, t)` block by one sample on both sides.
fn pad_rows(x: &[f32], rows: usize, t: usize) -> Vec<f32> {
    let mut padded = vec![0.0f32; rows * (t + 2)];
    for (dst, src) in padded.chunks_exact_mut(t + 2).zip(x.chunks_exact(t)) {
        dst[1..=t].copy_from_slice(src);
    }
    padded
}

/// First column from which every column of the `(rows, t)` block `x` equals its last column
/// (bit for bit); `t - 1` when the last two differ.
fn constant_suffix_start(x: &[f32], rows: usize, t: usize) -> usize {
    x.chunks_exact(t)
        .take(rows)
        .map(|row| {
            let last = row[t - 1].to_bits();
            t - row.iter().rev().take_while(|v| v.to_bits() == last).count()
        })
        .max()
        .unwrap_or(0)
}

/// Output columns `[first, last]` of a kernel-3, padding-1 convolution whose inputs are all
/// columns `>= start` of the same (constant) input, so the outputs are all equal; `None` when
/// fewer than two.
fn constant_outputs(start: usize, t_in: usize, stride: usize) -> Option<(usize, usize)> {
    // Output o reads inputs stride·o − 1 ..= stride·o + 1 (the ends are zero padding).
    let first = (start + stride) / stride;
    let last = t_in.checked_sub(2)? / stride;
    (first < last).then_some((first, last))
}

/// Whisper's convolutions: kernel 3, padding 1, stride 1 or 2, `x` `(B, Cin, T)`, `w`
/// `(Cout, Cin, 3)`, `bias` `(Cout,)` -> `(B, Cout, (T - 1) / stride + 1)`. Three strided GEMMs
/// per batch row (one per tap) on the padded input, no im2col buffer. A constant run of input
/// columns at the end (Whisper's padded 30-s window) gives equal outputs: one is computed and
/// copied, so the cost follows the signal's length.
pub fn conv1d_k3(x: &Tensor, w: &Tensor, bias: &Tensor, stride: usize) -> Result<Tensor> {
    if !matches!(x.device(), Device::Cpu) {
        return reference::conv1d_k3(x, w, bias, stride);
    }
    let (b, c_in, t_in, c_out, t_out) = conv_dims(x, w, stride)?;
    let bias = bias.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0.0f32; b * c_out * t_out];
    let tp = t_in + 2;
    with_cpu_f32(x, |xs| {
        with_cpu_f32(w, |ws| {
            for (xb, yb) in xs
                .chunks_exact(c_in * t_in)
                .zip(y.chunks_exact_mut(c_out * t_out))
            {
                let constant =
                    constant_outputs(constant_suffix_start(xb, c_in, t_in), t_in, stride);
                // Column ranges computed by GEMM: all, or all but the copies of a constant run.
                let ranges = match constant {
                    Some((first, last)) => [(0, first + 1), (last + 1, t_out)],
                    None => [(0, t_out), (t_out, t_out)],
                };
                let xp = pad_rows(xb, c_in, t_in);
                yb.par_chunks_mut(CHANNEL_BLOCK * t_out)
                    .enumerate()
                    .for_each(|(blk, yc)| {
                        let c0 = blk * CHANNEL_BLOCK;
                        let rows = yc.len() / t_out;
                        for (r, row) in yc.chunks_exact_mut(t_out).enumerate() {
                            row.iter_mut().for_each(|v| *v = bias[c0 + r]);
                        }
                        for &(a, e) in ranges.iter().filter(|(a, e)| e > a) {
                            for tap in 0..3 {
                                let lhs = View {
                                    rs: (c_in * 3) as isize,
                                    cs: 3,
                                };
                                let rhs = View {
                                    rs: tp as isize,
                                    cs: stride as isize,
                                };
                                matmul(
                                    rows,
                                    e - a,
                                    c_in,
                                    &mut yc[a..],
                                    ROW_MAJOR(t_out),
                                    true,
                                    &ws[c0 * c_in * 3 + tap..],
                                    lhs,
                                    &xp[tap + stride * a..],
                                    rhs,
                                    1.0,
                                );
                            }
                        }
                        if let Some((first, last)) = constant {
                            for row in yc.chunks_exact_mut(t_out) {
                                let v = row[first];
                                row[first + 1..=last].iter_mut().for_each(|y| *y = v);
                            }
                        }
                    });
            }
        })
    })??;
    Ok(Tensor::from_vec(y, (b, c_out, t_out), x.device())?)
}

/// Gradient of [`conv1d_k3`] w.r.t. its input, given the output gradient `dy`
/// `(B, Cout, T_dy)` and the input length `t_in`. `dy` may hold only the first
/// `T_dy <= (t_in - 1) / stride + 1` output columns; the others are taken as zero (their
/// gradient is not needed), which saves their work.
pub fn conv1d_k3_input_grad(dy: &Tensor, w: &Tensor, stride: usize, t_in: usize) -> Result<Tensor> {
    if !matches!(dy.device(), Device::Cpu) {
        let t_full = (t_in.max(1) - 1) / stride + 1;
        let t_dy = dy.dim(2)?;
        let dy = match t_full.checked_sub(t_dy) {
            Some(0) | None => dy.clone(),
            Some(missing) => dy.pad_with_zeros(2, 0, missing)?,
        };
        return reference::conv1d_k3_input_grad(&dy, w, stride, t_in);
    }
    let (b, c_out, t_out) = dy.dims3()?;
    let (w_out, c_in, _) = w.dims3()?;
    if w_out != c_out || t_out > (t_in.max(1) - 1) / stride + 1 {
        return Err(Error::Shape(format!(
            "conv gradient shapes {:?} / {:?}",
            dy.dims(),
            w.dims()
        )));
    }
    let tp = t_in + 2;
    let mut dx = vec![0.0f32; b * c_in * t_in];
    if t_out == 0 {
        return Ok(Tensor::from_vec(dx, (b, c_in, t_in), dy.device())?);
    }
    // Padded input columns the GEMMs write: 0 ..= stride·(t_out − 1) + 2.
    let written = (stride * t_out.saturating_sub(1) + 3).min(tp);
    with_cpu_f32(dy, |dys| {
        with_cpu_f32(w, |ws| {
            for (dyb, dxb) in dys
                .chunks_exact(c_out * t_out)
                .zip(dx.chunks_exact_mut(c_in * t_in))
            {
                let mut dxp = vec![0.0f32; c_in * tp];
                dxp.par_chunks_mut(CHANNEL_BLOCK * tp)
                    .enumerate()
                    .for_each(|(blk, dc)| {
                        let c0 = blk * CHANNEL_BLOCK;
                        let rows = dc.len() / tp;
                        for tap in 0..3 {
                            let dst = View {
                                rs: tp as isize,
                                cs: stride as isize,
                            };
                            let lhs = View {
                                rs: 3,
                                cs: (c_in * 3) as isize,
                            };
                            matmul(
                                rows,
                                t_out,
                                c_out,
                                &mut dc[tap..],
                                dst,
                                true,
                                &ws[c0 * 3 + tap..],
                                lhs,
                                dyb,
                                ROW_MAJOR(t_out),
                                1.0,
                            );
                        }
                    });
                let copied = written.saturating_sub(1).min(t_in);
                for (dst, src) in dxb.chunks_exact_mut(t_in).zip(dxp.chunks_exact(tp)) {
                    dst[..copied].copy_from_slice(&src[1..=copied]);
                }
            }
        })
    })??;
    Ok(Tensor::from_vec(dx, (b, c_in, t_in), dy.device())?)
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;

    #[test]
    fn gemm_convolutions_match_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for (stride, t) in [(1, 50), (2, 50), (2, 37), (1, 1)] {
            let x = Tensor::randn(0f32, 1.0, (2, 70, t), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (40, 70, 3), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, 40, &dev).unwrap();
            let y = conv1d_k3(&x, &w, &b, stride).unwrap();
            let yr = reference::conv1d_k3(&x, &w, &b, stride).unwrap();
            assert_eq!(y.dims(), yr.dims());
            assert!(max_abs_diff(&y, &yr) < 1e-4, "forward stride {stride}");
            // The input gradient is the adjoint: <conv(x), dy> == <x, conv_grad(dy)>.
            let dy = Tensor::randn(0f32, 1.0, y.dims(), &dev).unwrap();
            let dx = conv1d_k3_input_grad(&dy, &w, stride, t).unwrap();
            let dxr = reference::conv1d_k3_input_grad(&dy, &w, stride, t).unwrap();
            assert!(max_abs_diff(&dx, &dxr) < 1e-4, "backward stride {stride}");
            let y0 = conv1d_k3(&x, &w, &b.zeros_like().unwrap(), stride).unwrap();
            let lhs = (y0 * &dy)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let rhs = (&x * dx)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                (lhs - rhs).abs() < 1e-2 * lhs.abs().max(1.0),
                "adjoint {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn constant_tails_are_computed_once_and_match_candle() {
        let dev = Device::Cpu;
        for (stride, t, tail) in [(1, 60, 40), (2, 60, 40), (2, 61, 7), (1, 30, 2), (2, 9, 9)] {
            let head = Tensor::randn(0f32, 1.0, (2, 20, t - tail), &dev).unwrap();
            let col = Tensor::randn(0f32, 1.0, (2, 20, 1), &dev).unwrap();
            let x = Tensor::cat(&[head, col.repeat((1, 1, tail)).unwrap()], 2).unwrap();
            let w = Tensor::randn(0f32, 1.0, (40, 20, 3), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, 40, &dev).unwrap();
            let y = conv1d_k3(&x, &w, &b, stride).unwrap();
            let yr = reference::conv1d_k3(&x, &w, &b, stride).unwrap();
            assert!(
                max_abs_diff(&y, &yr) < 1e-4,
                "stride {stride}, t {t}, tail {tail}"
            );
        }
    }

    #[test]
    fn input_gradient_of_leading_output_columns_matches_zero_padded_gradient() {
        let dev = Device::Cpu;
        for (stride, t, kept) in [(1, 50, 11), (2, 50, 7), (2, 37, 19), (1, 20, 20), (2, 8, 1)] {
            let w = Tensor::randn(0f32, 1.0, (30, 20, 3), &dev).unwrap();
            let t_out = (t - 1) / stride + 1;
            let dy = Tensor::randn(0f32, 1.0, (2, 30, kept), &dev).unwrap();
            let full = dy.pad_with_zeros(2, 0, t_out - kept).unwrap();
            let dx = conv1d_k3_input_grad(&dy, &w, stride, t).unwrap();
            let dxr = reference::conv1d_k3_input_grad(&full, &w, stride, t).unwrap();
            assert_eq!(dx.dims(), dxr.dims());
            assert!(
                max_abs_diff(&dx, &dxr) < 1e-4,
                "stride {stride}, t {t}, kept {kept}"
            );
        }
        let w = Tensor::zeros((3, 2, 3), candle_core::DType::F32, &dev).unwrap();
        let too_long = Tensor::zeros((1, 3, 6), candle_core::DType::F32, &dev).unwrap();
        assert!(conv1d_k3_input_grad(&too_long, &w, 2, 10).is_err());
    }
}
