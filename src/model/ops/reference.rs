//! The same operations written with candle ops: used on GPUs and as the tests' oracle.

use super::attention::{check_attention_shapes, AttentionSaved};
use super::conv::conv_dims;
use crate::{Error, Result};
use candle_core::{Device, Tensor, D};

/// GELU and its derivative from candle ops.
pub fn gelu_with_derivative(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
    let cdf = cdf?;
    let pdf = ((x.sqr()? * -0.5)?.exp()?
        * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2))?;
    let y = (x * &cdf)?;
    let d = (cdf + (x * pdf)?)?;
    Ok((y, d))
}

/// Kernel-3 convolution from candle ops.
pub fn conv1d_k3(x: &Tensor, w: &Tensor, bias: &Tensor, stride: usize) -> Result<Tensor> {
    conv_dims(x, w, stride)?;
    Ok(x.conv1d(w, 1, stride, 1, 1)?
        .broadcast_add(&bias.reshape((1, (), 1))?)?)
}

/// Input gradient of a kernel-3 convolution from candle ops: the gradient, dilated with
/// zeros for stride 2, convolved with the transposed, flipped kernel.
pub fn conv1d_k3_input_grad(dy: &Tensor, w: &Tensor, stride: usize, t_in: usize) -> Result<Tensor> {
    let (b, c, t_out) = dy.dims3()?;
    let idx = Tensor::from_vec(vec![2u32, 1, 0], 3, w.device())?;
    let w_back = w.index_select(&idx, 2)?.transpose(0, 1)?.contiguous()?;
    let dilated = if stride == 2 {
        Tensor::stack(&[dy, &dy.zeros_like()?], 3)?.reshape((b, c, 2 * t_out))?
    } else {
        dy.clone()
    };
    Ok(dilated.conv1d(&w_back, 1, 1, 1, 1)?.narrow(2, 0, t_in)?)
}

fn causal_mask(tq: usize, tk: usize, offset: usize, dev: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j > i + offset {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (tq, tk), dev)?)
}

/// Attention from candle ops (stores the probabilities).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    causal_offset: Option<usize>,
    record: bool,
) -> Result<(Tensor, Option<AttentionSaved>)> {
    let (_, _, tq, tk, _) = check_attention_shapes(q, k, v)?;
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let scores = match causal_offset {
        Some(off) => scores.broadcast_add(&causal_mask(tq, tk, off, q.device())?)?,
        None => scores,
    };
    let p = candle_nn::ops::softmax_last_dim(&scores)?;
    let o = p.matmul(v)?;
    let saved = record.then(|| AttentionSaved {
        q: q.clone(),
        k: k.clone(),
        v: v.clone(),
        o: o.clone(),
        lse: None,
        p: Some(p),
        scale,
        causal_offset,
    });
    Ok((o, saved))
}

/// Backward of [`attention`] from candle ops.
pub fn attention_backward(s: &AttentionSaved, d_o: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let p =
        s.p.as_ref()
            .ok_or_else(|| Error::Internal("no probabilities saved".into()))?;
    let dv = p.t()?.matmul(d_o)?;
    let dp = d_o.matmul(&s.v.t()?)?;
    let row = (d_o * &s.o)?.sum_keepdim(D::Minus1)?;
    let ds = (p * dp.broadcast_sub(&row)?)?;
    let dq = (ds.matmul(&s.k)? * s.scale)?;
    let dk = (ds.t()?.matmul(&s.q)? * s.scale)?;
    Ok((dq, dk, dv))
}
