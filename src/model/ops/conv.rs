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
        return Err(Error::InvalidArgument(format!(
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

/// Whisper's convolutions: kernel 3, padding 1, stride 1 or 2, `x` `(B, Cin, T)`, `w`
/// `(Cout, Cin, 3)`, `bias` `(Cout,)` -> `(B, Cout, (T - 1) / stride + 1)`. Three strided GEMMs
/// per batch row (one per tap) on the padded input, no im2col buffer.
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
                let xp = pad_rows(xb, c_in, t_in);
                yb.par_chunks_mut(CHANNEL_BLOCK * t_out)
                    .enumerate()
                    .for_each(|(blk, yc)| {
                        let c0 = blk * CHANNEL_BLOCK;
                        let rows = yc.len() / t_out;
                        for (r, row) in yc.chunks_exact_mut(t_out).enumerate() {
                            row.iter_mut().for_each(|v| *v = bias[c0 + r]);
                        }
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
                                t_out,
                                c_in,
                                yc,
                                ROW_MAJOR(t_out),
                                true,
                                &ws[c0 * c_in * 3 + tap..],
                                lhs,
                                &xp[tap..],
                                rhs,
                                1.0,
                            );
                        }
                    });
            }
        })
    })??;
    Ok(Tensor::from_vec(y, (b, c_out, t_out), x.device())?)
}

/// Gradient of [`conv1d_k3`] w.r.t. its input, given the output gradient `dy`
/// `(B, Cout, T_out)` and the input length `t_in`.
pub fn conv1d_k3_input_grad(dy: &Tensor, w: &Tensor, stride: usize, t_in: usize) -> Result<Tensor> {
    if !matches!(dy.device(), Device::Cpu) {
        return reference::conv1d_k3_input_grad(dy, w, stride, t_in);
    }
    let (b, c_out, t_out) = dy.dims3()?;
    let (w_out, c_in, _) = w.dims3()?;
    if w_out != c_out || t_out != (t_in.max(1) - 1) / stride + 1 {
        return Err(Error::InvalidArgument(format!(
            "conv gradient shapes {:?} / {:?}",
            dy.dims(),
            w.dims()
        )));
    }
    let tp = t_in + 2;
    let mut dx = vec![0.0f32; b * c_in * t_in];
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
                for (dst, src) in dxb.chunks_exact_mut(t_in).zip(dxp.chunks_exact(tp)) {
                    dst.copy_from_slice(&src[1..=t_in]);
                }
            }
        })
    })??;
    Ok(Tensor::from_vec(dx, (b, c_in, t_in), dy.device())?)
}

/// The same operations written with candle ops: used on GPUs and as the tests' oracle.

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
}
