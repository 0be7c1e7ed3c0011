//! Differentiable building blocks written from primitive candle operations, for the places that
//! train weights with candle's autograd (adversarial fine-tuning, the detector's autoencoder).
//!
//! candle-nn's fused layer norm and softmax have no backward (the input silently gets no
//! gradient), and candle 0.11's `conv1d` returns a wrong kernel gradient; reductions,
//! element-wise operations, `narrow`, `cat`, `pad_with_zeros` and `matmul` all differentiate
//! correctly, so everything here is made of those. (The attack path does not use this module:
//! its backward to the input is hand-written in [`crate::model`].)

use crate::{Error, Result};
use candle_core::{Tensor, D};

/// Adam with decoupled weight decay off, at learning rate `lr`: the optimiser every trainer
/// of advox uses.
pub fn adam(vars: Vec<candle_core::Var>, lr: f64) -> Result<candle_nn::AdamW> {
    use candle_nn::Optimizer;
    Ok(candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?)
}

/// Layer norm over the last dimension: `(x − mean) / sqrt(var + eps) · gamma + beta`.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(xhat.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Softmax over the last dimension. On the CPU (f32) one custom operation whose backward,
/// `p ⊙ (g − Σ g ⊙ p)`, needs only its output — a graph keeps one tensor per softmax instead of
/// four, which matters for the encoder's 1500 × 1500 attention maps. Elsewhere: reductions and
/// element-wise operations.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return Ok(x.apply_op1_arc(std::sync::Arc::new(Box::new(Softmax)))?);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

struct Softmax;

impl candle_core::CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "advox-softmax-last"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("softmax of a strided tensor".into()))?;
        let data = &storage.as_slice::<f32>()?[start..end];
        let n = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = data.to_vec();
        out.par_chunks_mut(n).for_each(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        });
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((res * grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Log-softmax over the last dimension.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_z)?)
}

/// Geometry of a 1-D convolution written as shifted copies and one matrix product.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Kernel taps.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zeros before the first frame.
    pub pad_left: usize,
    /// Zeros after the last frame.
    pub pad_right: usize,
}

impl ConvShape {
    /// Stride 1, output as long as the input (`kernel / 2` zeros before, the rest after).
    pub fn same(kernel: usize) -> Self {
        ConvShape {
            kernel,
            stride: 1,
            pad_left: kernel / 2,
            pad_right: kernel.saturating_sub(1) - kernel / 2,
        }
    }

    /// Output frames for `frames` input frames.
    pub fn output_frames(&self, frames: usize) -> Option<usize> {
        let padded = frames + self.pad_left + self.pad_right;
        (self.kernel > 0 && self.stride > 0 && padded >= self.kernel)
            .then(|| (padded - self.kernel) / self.stride + 1)
    }
}

/// 1-D convolution `(batch, inputs, frames)` → `(batch, outputs, frames')` with `weight`
/// `(outputs, kernel · inputs)` in tap-major order (column `k · inputs + c` is tap `k` of input
/// channel `c`) and `bias` `(outputs, 1)`. Use [`tap_major`] to bring a PyTorch-layout kernel
/// `(outputs, inputs, kernel)` into this order.
pub fn conv1d_columns(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    shape: ConvShape,
) -> Result<Tensor> {
    let (batch, inputs, frames) = x.dims3()?;
    let out_frames = shape.output_frames(frames).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "a {frames}-frame input is too short for a {}-tap convolution",
            shape.kernel
        ))
    })?;
    if weight.dim(1)? != shape.kernel * inputs {
        return Err(Error::Shape(format!(
            "convolution weight {:?} does not take {inputs} channels × {} taps",
            weight.dims(),
            shape.kernel
        )));
    }
    let padded = x.pad_with_zeros(2, shape.pad_left, shape.pad_right)?;
    let span = (out_frames - 1) * shape.stride + 1;
    let taps: Vec<Tensor> = (0..shape.kernel)
        .map(|k| {
            let t = padded.narrow(2, k, span)?;
            if shape.stride == 1 {
                return Ok(t);
            }
            // Every stride-th frame: pad to a whole number of strides, fold, keep the first.
            t.pad_with_zeros(2, 0, out_frames * shape.stride - span)?
                .reshape((batch, inputs, out_frames, shape.stride))?
                .narrow(3, 0, 1)?
                .squeeze(3)
        })
        .collect::<candle_core::Result<_>>()?;
    let columns = Tensor::cat(&taps, 1)?;
    Ok(weight.broadcast_matmul(&columns)?.broadcast_add(bias)?)
}

/// A PyTorch-layout kernel `(outputs, inputs, kernel)` as the tap-major `(outputs, kernel ·
/// inputs)` matrix [`conv1d_columns`] takes (differentiable).
pub fn tap_major(weight: &Tensor) -> Result<Tensor> {
    let (outputs, inputs, kernel) = weight.dims3()?;
    Ok(weight
        .transpose(1, 2)?
        .contiguous()?
        .reshape((outputs, kernel * inputs))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn seq(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 97) as f32 / 97.0 - 0.5) * scale)
            .collect()
    }

    /// Direct definition of a PyTorch-layout convolution.
    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        dims: (usize, usize, usize, usize),
        s: ConvShape,
    ) -> Vec<f32> {
        let (c_in, t_in, c_out, k) = dims;
        let t_out = s.output_frames(t_in).unwrap();
        let mut y = vec![0.0; c_out * t_out];
        for o in 0..c_out {
            for t in 0..t_out {
                let mut acc = b[o];
                for c in 0..c_in {
                    for tap in 0..k {
                        let pos = (t * s.stride + tap) as isize - s.pad_left as isize;
                        if pos >= 0 && (pos as usize) < t_in {
                            acc += w[(o * c_in + c) * k + tap] * x[c * t_in + pos as usize];
                        }
                    }
                }
                y[o * t_out + t] = acc;
            }
        }
        y
    }

    #[test]
    fn strided_convolution_matches_its_definition_and_finite_differences() {
        let dev = Device::Cpu;
        let (c_in, t_in, c_out, k) = (3, 11, 4, 3);
        let shape = ConvShape {
            kernel: k,
            stride: 2,
            pad_left: 1,
            pad_right: 1,
        };
        let xs = seq(c_in * t_in, 2.0);
        let ws = seq(c_out * c_in * k, 1.0);
        let bs = seq(c_out, 0.5);
        let x = Tensor::from_vec(xs.clone(), (1, c_in, t_in), &dev).unwrap();
        let w = Var::from_vec(ws.clone(), (c_out, c_in, k), &dev).unwrap();
        let b = Tensor::from_vec(bs.clone(), (c_out, 1), &dev).unwrap();
        let y = conv1d_columns(&x, &tap_major(&w).unwrap(), &b, shape).unwrap();
        let want = reference(&xs, &ws, &bs, (c_in, t_in, c_out, k), shape);
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y.dims(), [1, c_out, 6]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // d(sum of squares)/dw against central differences of the definition.
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(&w)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |ws: &[f32]| -> f32 {
            reference(&xs, ws, &bs, (c_in, t_in, c_out, k), shape)
                .iter()
                .map(|v| v * v)
                .sum()
        };
        for i in [0, 5, 17, 35] {
            let h = 1e-2;
            let (mut up, mut down) = (ws.clone(), ws.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (f(&up) - f(&down)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-2 * (1.0 + fd.abs()),
                "w[{i}]: {} vs {fd}",
                g[i]
            );
        }
    }

    #[test]
    fn too_short_inputs_and_mismatched_kernels_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, 1), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 10), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((3, 1), candle_core::DType::F32, &dev).unwrap();
        let shape = ConvShape {
            kernel: 5,
            stride: 1,
            pad_left: 0,
            pad_right: 0,
        };
        assert!(conv1d_columns(&x, &w, &b, shape).is_err());
        assert!(conv1d_columns(&x, &w, &b, ConvShape::same(3)).is_err());
        assert!(conv1d_columns(&x, &w, &b, ConvShape::same(5)).is_ok());
    }

    #[test]
    fn softmax_gradient_matches_the_primitive_one() {
        let dev = Device::Cpu;
        let x = Var::from_vec(seq(24, 6.0), (2, 3, 4), &dev).unwrap();
        let w = Tensor::from_vec(seq(24, 1.0), (2, 3, 4), &dev).unwrap();
        let fused = (softmax_last(&x).unwrap() * &w).unwrap().sum_all().unwrap();
        let g1 = fused.backward().unwrap().get(&x).unwrap().clone();
        let max = x.max_keepdim(D::Minus1).unwrap().detach();
        let e = x.broadcast_sub(&max).unwrap().exp().unwrap();
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        let plain = (p * &w).unwrap().sum_all().unwrap();
        let g2 = plain.backward().unwrap().get(&x).unwrap().clone();
        let (a, b) = (
            g1.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            g2.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(a.iter().any(|v| v.abs() > 1e-3));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn layer_norm_and_softmax_have_their_definitions() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(vec![1.0f32, 2.0, 4.0, -1.0], (1, 4), &dev).unwrap();
        let p = softmax_last(&x).unwrap().to_vec2::<f32>().unwrap()[0].clone();
        let z: f32 = [1.0f32, 2.0, 4.0, -1.0].iter().map(|v| v.exp()).sum();
        assert!((p[2] - 4f32.exp() / z).abs() < 1e-6);
        let lp = log_softmax_last(&x).unwrap().to_vec2::<f32>().unwrap()[0].clone();
        assert!((lp[2] - p[2].ln()).abs() < 1e-5);
        let one = Tensor::ones(4, candle_core::DType::F32, &dev).unwrap();
        let zero = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let n = layer_norm(&x, &one, &zero, 0.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()[0]
            .clone();
        let mean: f32 = n.iter().sum::<f32>() / 4.0;
        let var: f32 = n.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
