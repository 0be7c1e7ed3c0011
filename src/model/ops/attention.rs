//! Fused attention (flash-style: score tiles of [`QUERY_TILE`] rows stay in cache, the
//! probabilities are kept or recomputed from the saved log-sum-exp) and its backward.

use super::{exp_approx, matmul, reference, with_cpu_f32, ROW_MAJOR, TRANSPOSED};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// Rows of the query tile.
const QUERY_TILE: usize = 128;

/// Keys query row `row` may see: all, or (causal, at `offset`) those up to its position.
#[inline(always)]
fn visible_keys(causal_offset: Option<usize>, row: usize, keys: usize) -> usize {
    match causal_offset {
        Some(offset) => (offset + row + 1).min(keys),
        None => keys,
    }
}

#[inline(always)]
fn softmax_rows_kernel(
    s: &mut [f32],
    lse: &mut [f32],
    keys: usize,
    first_row: usize,
    causal: Option<usize>,
) {
    for (i, (row, l)) in s.chunks_exact_mut(keys).zip(lse.iter_mut()).enumerate() {
        let valid = visible_keys(causal, first_row + i, keys);
        let (live, masked) = row.split_at_mut(valid);
        let mut mx = [f32::NEG_INFINITY; 8];
        let mut chunks = live.chunks_exact(8);
        for c in &mut chunks {
            for j in 0..8 {
                mx[j] = mx[j].max(c[j]);
            }
        }
        let mut m = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        m = mx.iter().fold(m, |a, &b| a.max(b));
        for v in live.iter_mut() {
            *v = exp_approx(*v - m);
        }
        let mut acc = [0.0f32; 8];
        let mut chunks = live.chunks_exact(8);
        for c in &mut chunks {
            for j in 0..8 {
                acc[j] += c[j];
            }
        }
        let sum = acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inv = 1.0 / sum;
        live.iter_mut().for_each(|v| *v *= inv);
        masked.iter_mut().for_each(|v| *v = 0.0);
        *l = m + sum.ln();
    }
}

fn softmax_rows(
    s: &mut [f32],
    lse: &mut [f32],
    keys: usize,
    first_row: usize,
    causal: Option<usize>,
) {
    dispatch!(softmax_rows_kernel, softmax_rows_avx2, (s: &mut [f32], lse: &mut [f32], keys: usize, first_row: usize, causal: Option<usize>));
}

#[inline(always)]
fn probs_from_lse_kernel(
    s: &mut [f32],
    lse: &[f32],
    keys: usize,
    first_row: usize,
    causal: Option<usize>,
) {
    for (i, (row, l)) in s.chunks_exact_mut(keys).zip(lse.iter()).enumerate() {
        let valid = visible_keys(causal, first_row + i, keys);
        let (live, masked) = row.split_at_mut(valid);
        let l = *l;
        live.iter_mut().for_each(|v| *v = exp_approx(*v - l));
        masked.iter_mut().for_each(|v| *v = 0.0);
    }
}

fn probs_from_lse(
    s: &mut [f32],
    lse: &[f32],
    keys: usize,
    first_row: usize,
    causal: Option<usize>,
) {
    dispatch!(probs_from_lse_kernel, probs_from_lse_avx2, (s: &mut [f32], lse: &[f32], keys: usize, first_row: usize, causal: Option<usize>));
}

/// `dS = P ⊙ (dP − rowsum)` in place in `dp`.
#[inline(always)]
fn softmax_grad_kernel(dp: &mut [f32], p: &[f32], rowsum: &[f32], keys: usize) {
    for ((drow, prow), r) in dp
        .chunks_exact_mut(keys)
        .zip(p.chunks_exact(keys))
        .zip(rowsum)
    {
        let r = *r;
        for (dv, pv) in drow.iter_mut().zip(prow) {
            *dv = pv * (*dv - r);
        }
    }
}

fn softmax_grad(dp: &mut [f32], p: &[f32], rowsum: &[f32], keys: usize) {
    dispatch!(softmax_grad_kernel, softmax_grad_avx2, (dp: &mut [f32], p: &[f32], rowsum: &[f32], keys: usize));
}

/// Saved state of a fused attention for its backward pass.
#[derive(Debug)]
pub struct AttentionSaved {
    pub(super) q: Tensor,
    pub(super) k: Tensor,
    pub(super) v: Tensor,
    pub(super) o: Tensor,
    /// Row log-sum-exp of the scaled scores, `(B, H, Tq)`; `None` on the reference path.
    pub(super) lse: Option<Tensor>,
    /// Probabilities `(B, H, Tq, Tk)`, when kept (else recomputed from `lse`).
    pub(super) p: Option<Tensor>,
    pub(super) scale: f64,
    pub(super) causal_offset: Option<usize>,
}

pub(super) fn check_attention_shapes(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, h, tq, dh) = q.dims4()?;
    let (bk, hk, tk, dhk) = k.dims4()?;
    if (bk, hk, dhk) != (b, h, dh) || v.dims() != k.dims() {
        return Err(Error::InvalidArgument(format!(
            "attention shapes differ: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    Ok((b, h, tq, tk, dh))
}

/// What an attention call keeps for its backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// Nothing (inference).
    Nothing,
    /// Row statistics only; the backward recomputes the probabilities (least memory).
    Statistics,
    /// The probabilities too (`B·H·Tq·Tk` floats; the fastest backward).
    Probabilities,
}

/// `softmax(scale · q kᵀ [+ causal mask]) v` for head-split `(B, H, T, dh)` tensors, and what
/// [`attention_backward`] needs, as `save` asks.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    causal_offset: Option<usize>,
    save: Save,
) -> Result<(Tensor, Option<AttentionSaved>)> {
    if !matches!(q.device(), Device::Cpu) {
        return reference::attention(q, k, v, scale, causal_offset, save != Save::Nothing);
    }
    let (b, h, tq, tk, dh) = check_attention_shapes(q, k, v)?;
    let mut o = vec![0.0f32; b * h * tq * dh];
    let mut lse = vec![0.0f32; b * h * tq];
    let keep_probs = save == Save::Probabilities;
    let mut probs = if keep_probs {
        vec![0.0f32; b * h * tq * tk]
    } else {
        Vec::new()
    };
    let mut prob_slices: Vec<Option<&mut [f32]>> = if keep_probs {
        probs.chunks_mut(tq * tk).map(Some).collect()
    } else {
        (0..b * h).map(|_| None).collect()
    };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    with_cpu_f32(&q, |qs| {
        with_cpu_f32(&k, |ks| {
            with_cpu_f32(&v, |vs| {
                o.par_chunks_mut(tq * dh)
                    .zip(lse.par_chunks_mut(tq))
                    .zip(prob_slices.par_iter_mut())
                    .enumerate()
                    .for_each(|(bh, ((o_bh, lse_bh), kept))| {
                        let qh = &qs[bh * tq * dh..(bh + 1) * tq * dh];
                        let kh = &ks[bh * tk * dh..(bh + 1) * tk * dh];
                        let vh = &vs[bh * tk * dh..(bh + 1) * tk * dh];
                        let mut scratch = match kept {
                            Some(_) => Vec::new(),
                            None => vec![0.0f32; QUERY_TILE * tk],
                        };
                        for q0 in (0..tq).step_by(QUERY_TILE) {
                            let rows = QUERY_TILE.min(tq - q0);
                            let s = match kept {
                                Some(p) => &mut p[q0 * tk..(q0 + rows) * tk],
                                None => &mut scratch[..rows * tk],
                            };
                            matmul(
                                rows,
                                tk,
                                dh,
                                s,
                                ROW_MAJOR(tk),
                                false,
                                &qh[q0 * dh..],
                                ROW_MAJOR(dh),
                                kh,
                                TRANSPOSED(dh),
                                scale as f32,
                            );
                            softmax_rows(s, &mut lse_bh[q0..q0 + rows], tk, q0, causal_offset);
                            matmul(
                                rows,
                                dh,
                                tk,
                                &mut o_bh[q0 * dh..],
                                ROW_MAJOR(dh),
                                false,
                                s,
                                ROW_MAJOR(tk),
                                vh,
                                ROW_MAJOR(dh),
                                1.0,
                            );
                        }
                    });
            })
        })
    })???;
    drop(prob_slices);
    let dev = q.device();
    let o = Tensor::from_vec(o, (b, h, tq, dh), dev)?;
    if save == Save::Nothing {
        return Ok((o, None));
    }
    let p = if keep_probs {
        Some(Tensor::from_vec(probs, (b, h, tq, tk), dev)?)
    } else {
        None
    };
    let saved = AttentionSaved {
        q: q.clone(),
        k: k.clone(),
        v: v.clone(),
        o: o.clone(),
        lse: Some(Tensor::from_vec(lse, (b, h, tq), dev)?),
        p,
        scale,
        causal_offset,
    };
    Ok((o, Some(saved)))
}

/// Gradients of the attention inputs `(dq, dk, dv)` given the gradient of its output.
pub fn attention_backward(
    saved: &AttentionSaved,
    d_o: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let lse = match (&saved.lse, &saved.p) {
        (Some(lse), _) if matches!(d_o.device(), Device::Cpu) => lse,
        (_, Some(_)) => return reference::attention_backward(saved, d_o),
        _ => {
            return Err(Error::InvalidArgument(
                "attention state lacks its statistics".into(),
            ))
        }
    };
    let (b, h, tq, tk, dh) = check_attention_shapes(&saved.q, &saved.k, &saved.v)?;
    let scale = saved.scale as f32;
    let causal = saved.causal_offset;
    let mut dq = vec![0.0f32; b * h * tq * dh];
    let mut dk = vec![0.0f32; b * h * tk * dh];
    let mut dv = vec![0.0f32; b * h * tk * dh];
    let d_o = d_o.contiguous()?;
    let tensors = [&saved.q, &saved.k, &saved.v, &saved.o, lse, &d_o];
    let slices = tensors.map(|t| t.to_dtype(candle_core::DType::F32));
    let [q, k, v, o, lse, d_o] = slices;
    let (q, k, v, o, lse, d_o) = (q?, k?, v?, o?, lse?, d_o?);
    let empty = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
    let kept = saved.p.as_ref().unwrap_or(&empty);
    with_cpu_f32(kept, |kept| {
        with_cpu_f32(&q, |qs| {
            with_cpu_f32(&k, |ks| {
                with_cpu_f32(&v, |vs| {
                    with_cpu_f32(&o, |os| {
                        with_cpu_f32(&lse, |ls| {
                            with_cpu_f32(&d_o, |dos| {
                                dq.par_chunks_mut(tq * dh)
                                    .zip(dk.par_chunks_mut(tk * dh))
                                    .zip(dv.par_chunks_mut(tk * dh))
                                    .enumerate()
                                    .for_each(|(bh, ((dq_bh, dk_bh), dv_bh))| {
                                        let qh = &qs[bh * tq * dh..(bh + 1) * tq * dh];
                                        let kh = &ks[bh * tk * dh..(bh + 1) * tk * dh];
                                        let vh = &vs[bh * tk * dh..(bh + 1) * tk * dh];
                                        let oh = &os[bh * tq * dh..(bh + 1) * tq * dh];
                                        let doh = &dos[bh * tq * dh..(bh + 1) * tq * dh];
                                        let lh = &ls[bh * tq..(bh + 1) * tq];
                                        let kept_bh = (!kept.is_empty())
                                            .then(|| &kept[bh * tq * tk..(bh + 1) * tq * tk]);
                                        let mut scratch = match kept_bh {
                                            Some(_) => Vec::new(),
                                            None => vec![0.0f32; QUERY_TILE * tk],
                                        };
                                        let mut dp = vec![0.0f32; QUERY_TILE * tk];
                                        let mut rowsum = vec![0.0f32; QUERY_TILE];
                                        for q0 in (0..tq).step_by(QUERY_TILE) {
                                            let rows = QUERY_TILE.min(tq - q0);
                                            let dp = &mut dp[..rows * tk];
                                            let q_blk = &qh[q0 * dh..(q0 + rows) * dh];
                                            let do_blk = &doh[q0 * dh..(q0 + rows) * dh];
                                            let p: &[f32] = match kept_bh {
                                                Some(kp) => &kp[q0 * tk..(q0 + rows) * tk],
                                                None => {
                                                    let p = &mut scratch[..rows * tk];
                                                    matmul(
                                                        rows,
                                                        tk,
                                                        dh,
                                                        p,
                                                        ROW_MAJOR(tk),
                                                        false,
                                                        q_blk,
                                                        ROW_MAJOR(dh),
                                                        kh,
                                                        TRANSPOSED(dh),
                                                        scale,
                                                    );
                                                    probs_from_lse(
                                                        p,
                                                        &lh[q0..q0 + rows],
                                                        tk,
                                                        q0,
                                                        causal,
                                                    );
                                                    p
                                                }
                                            };
                                            // dV += Pᵀ dO
                                            matmul(
                                                tk,
                                                dh,
                                                rows,
                                                dv_bh,
                                                ROW_MAJOR(dh),
                                                true,
                                                p,
                                                TRANSPOSED(tk),
                                                do_blk,
                                                ROW_MAJOR(dh),
                                                1.0,
                                            );
                                            // dP = dO Vᵀ
                                            matmul(
                                                rows,
                                                tk,
                                                dh,
                                                dp,
                                                ROW_MAJOR(tk),
                                                false,
                                                do_blk,
                                                ROW_MAJOR(dh),
                                                vh,
                                                TRANSPOSED(dh),
                                                1.0,
                                            );
                                            for (i, r) in rowsum[..rows].iter_mut().enumerate() {
                                                let a = &do_blk[i * dh..(i + 1) * dh];
                                                let c = &oh[(q0 + i) * dh..(q0 + i + 1) * dh];
                                                *r = a.iter().zip(c).map(|(x, y)| x * y).sum();
                                            }
                                            softmax_grad(dp, p, &rowsum[..rows], tk);
                                            // dQ = scale dS K ; dK += scale dSᵀ Q
                                            matmul(
                                                rows,
                                                dh,
                                                tk,
                                                &mut dq_bh[q0 * dh..],
                                                ROW_MAJOR(dh),
                                                false,
                                                dp,
                                                ROW_MAJOR(tk),
                                                kh,
                                                ROW_MAJOR(dh),
                                                scale,
                                            );
                                            matmul(
                                                tk,
                                                dh,
                                                rows,
                                                dk_bh,
                                                ROW_MAJOR(dh),
                                                true,
                                                dp,
                                                TRANSPOSED(tk),
                                                q_blk,
                                                ROW_MAJOR(dh),
                                                scale,
                                            );
                                        }
                                    });
                            })
                        })
                    })
                })
            })
        })
    })???????;
    let dev = saved.q.device();
    Ok((
        Tensor::from_vec(dq, (b, h, tq, dh), dev)?,
        Tensor::from_vec(dk, (b, h, tk, dh), dev)?,
        Tensor::from_vec(dv, (b, h, tk, dh), dev)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::max_abs_diff;
    use super::*;

    #[test]
    fn fused_attention_matches_reference_forward_and_backward() {
        let dev = Device::Cpu;
        let cases = [
            (150, 150, Some(0), Save::Statistics),
            (70, 130, None, Save::Probabilities),
            (3, 9, Some(6), Save::Statistics),
            (1, 200, None, Save::Probabilities),
            (140, 140, Some(0), Save::Probabilities),
        ];
        for (tq, tk, causal, save) in cases {
            let q = Tensor::randn(0f32, 1.0, (2, 3, tq, 16), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (2, 3, tk, 16), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (2, 3, tk, 16), &dev).unwrap();
            let d_o = Tensor::randn(0f32, 1.0, (2, 3, tq, 16), &dev).unwrap();
            let (o, s) = attention(&q, &k, &v, 0.25, causal, save).unwrap();
            let (or, sr) = reference::attention(&q, &k, &v, 0.25, causal, true).unwrap();
            assert!(max_abs_diff(&o, &or) < 1e-5, "forward {tq}x{tk}");
            let (dq, dk, dv) = attention_backward(&s.unwrap(), &d_o).unwrap();
            let (dqr, dkr, dvr) = reference::attention_backward(&sr.unwrap(), &d_o).unwrap();
            assert!(max_abs_diff(&dq, &dqr) < 1e-4, "dq {tq}x{tk}");
            assert!(max_abs_diff(&dk, &dkr) < 1e-4, "dk {tq}x{tk}");
            assert!(max_abs_diff(&dv, &dvr) < 1e-4, "dv {tq}x{tk}");
        }
    }
}
