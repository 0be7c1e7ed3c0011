//! Fused attention (flash-style: score tiles of [`QUERY_TILE`] rows stay in cache, the
//! probabilities are kept or recomputed from the saved log-sum-exp) and its backward.

use super::{exp_approx, matmul, matmul_uninit, reference, with_cpu_f32s, ROW_MAJOR, TRANSPOSED};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
    // One zmm (AVX-512) or two ymm (AVX2) registers of partial maxima and sums.
    const LANES: usize = 16;
    for (i, (row, l)) in s.chunks_exact_mut(keys).zip(lse.iter_mut()).enumerate() {
        let valid = visible_keys(causal, first_row + i, keys);
        let (live, masked) = row.split_at_mut(valid);
        let mut mx = [f32::NEG_INFINITY; LANES];
        let mut chunks = live.chunks_exact(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                mx[j] = mx[j].max(c[j]);
            }
        }
        let mut m = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        m = mx.iter().fold(m, |a, &b| a.max(b));
        // Exponentials and their sum in one pass.
        let mut acc = [0.0f32; LANES];
        let mut chunks = live.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                let e = exp_approx(c[j] - m);
                c[j] = e;
                acc[j] += e;
            }
        }
        let mut tail = 0.0f32;
        for v in chunks.into_remainder() {
            *v = exp_approx(*v - m);
            tail += *v;
        }
        let sum = acc.iter().sum::<f32>() + tail;
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
        return Err(Error::Shape(format!(
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
    // Kept probabilities go straight into fresh memory: each tile's product writes them.
    let n_probs = if keep_probs { b * h * tq * tk } else { 0 };
    let mut probs: Vec<f32> = Vec::with_capacity(n_probs);
    let mut prob_slices: Vec<Option<&mut [MaybeUninit<f32>]>> = if keep_probs {
        probs.spare_capacity_mut()[..n_probs]
            .chunks_mut(tq * tk)
            .map(Some)
            .collect()
    } else {
        (0..b * h).map(|_| None).collect()
    };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    with_cpu_f32s([&q, &k, &v], |[qs, ks, vs]| {
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
                    let (qv, kv) = (ROW_MAJOR(dh), TRANSPOSED(dh));
                    let q_blk = &qh[q0 * dh..(q0 + rows) * dh];
                    let s = match kept {
                        Some(p) => {
                            let p = &mut p[q0 * tk..(q0 + rows) * tk];
                            matmul_uninit(rows, tk, dh, p, q_blk, qv, kh, kv, scale as f32)
                        }
                        None => {
                            let s = &mut scratch[..rows * tk];
                            let sv = ROW_MAJOR(tk);
                            matmul(rows, tk, dh, s, sv, false, q_blk, qv, kh, kv, scale as f32);
                            s
                        }
                    };
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
    })?;
    drop(prob_slices);
    // SAFETY: the tiles above wrote all `n_probs` probabilities (every query row of every
    // head, every key), reached only when none of them failed.
    unsafe { probs.set_len(n_probs) };
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
            return Err(Error::Internal(
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
    let empty = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
    let kept = saved.p.as_ref().unwrap_or(&empty);
    let inputs = [kept, &saved.q, &saved.k, &saved.v, &saved.o, lse, d_o];
    with_cpu_f32s(inputs, |[kept, qs, ks, vs, os, ls, dos]| {
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
                let kept_bh = (!kept.is_empty()).then(|| &kept[bh * tq * tk..(bh + 1) * tq * tk]);
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
                            probs_from_lse(p, &lh[q0..q0 + rows], tk, q0, causal);
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
    })?;
    let dev = saved.q.device();
    Ok((
        Tensor::from_vec(dq, (b, h, tq, dh), dev)?,
        Tensor::from_vec(dk, (b, h, tk, dh), dev)?,
        Tensor::from_vec(dv, (b, h, tk, dh), dev)?,
    ))
}

/// Gradients `(dq, dk, dv)` of the first `rows` query and key positions of a self-attention
/// (`Tq == Tk`, not causal), each `(B, H, rows, dh)`: what the backward needs when only those
/// positions' inputs can change (Whisper's first encoder layer under a short signal in its
/// 30-s window). About `rows / T` of the work of [`attention_backward`]; falls back to it (and
/// narrows) when `rows` is more than half the sequence, for causal attention and off the CPU.
pub fn attention_backward_prefix(
    saved: &AttentionSaved,
    d_o: &Tensor,
    rows: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, h, tq, tk, dh) = check_attention_shapes(&saved.q, &saved.k, &saved.v)?;
    if rows > tq.min(tk) {
        return Err(Error::Shape(format!(
            "{rows} leading rows asked of a {tq}x{tk} attention"
        )));
    }
    let lse = match &saved.lse {
        Some(lse)
            if matches!(d_o.device(), Device::Cpu)
                && saved.causal_offset.is_none()
                && tq == tk
                && 2 * rows <= tq =>
        {
            lse
        }
        _ => {
            let (dq, dk, dv) = attention_backward(saved, d_o)?;
            return Ok((
                dq.narrow(2, 0, rows)?,
                dk.narrow(2, 0, rows)?,
                dv.narrow(2, 0, rows)?,
            ));
        }
    };
    let t = tq;
    let scale = saved.scale as f32;
    let dev = saved.q.device();
    if rows == 0 || dh == 0 {
        let empty = || Tensor::zeros((b, h, rows, dh), candle_core::DType::F32, dev);
        return Ok((empty()?, empty()?, empty()?));
    }
    let mut dq = vec![0.0f32; b * h * rows * dh];
    let mut dk = vec![0.0f32; b * h * rows * dh];
    let mut dv = vec![0.0f32; b * h * rows * dh];
    let empty = Tensor::zeros(0, candle_core::DType::F32, &Device::Cpu)?;
    let kept = saved.p.as_ref().unwrap_or(&empty);
    let inputs = [&saved.q, &saved.k, &saved.v, &saved.o, lse, d_o, kept];
    with_cpu_f32s(inputs, |[qs, ks, vs, os, ls, dos, kept]| {
        let m = t * dh;
        dq.par_chunks_mut(rows * dh)
            .zip(dk.par_chunks_mut(rows * dh))
            .zip(dv.par_chunks_mut(rows * dh))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| {
                let (qh, kh, vh) = (&qs[bh * m..][..m], &ks[bh * m..][..m], &vs[bh * m..][..m]);
                let (oh, doh, lh) = (&os[bh * m..][..m], &dos[bh * m..][..m], &ls[bh * t..][..t]);
                let kept = (!kept.is_empty()).then(|| &kept[bh * t * t..][..t * t]);
                // D_i = dO_i · O_i, the softmax backward's row term.
                let d: Vec<f32> = doh
                    .chunks_exact(dh)
                    .zip(oh.chunks_exact(dh))
                    .map(|(a, c)| a.iter().zip(c).map(|(x, y)| x * y).sum())
                    .collect();
                // Columns 0..rows of P (every query's weight on the leading keys): dV, dK.
                let mut p_cols = vec![0.0f32; t * rows];
                match kept {
                    Some(p) => {
                        for (dst, src) in p_cols.chunks_exact_mut(rows).zip(p.chunks_exact(t)) {
                            dst.copy_from_slice(&src[..rows]);
                        }
                    }
                    None => {
                        let (qv, kv) = (ROW_MAJOR(dh), TRANSPOSED(dh));
                        matmul(
                            t,
                            rows,
                            dh,
                            &mut p_cols,
                            ROW_MAJOR(rows),
                            false,
                            qh,
                            qv,
                            kh,
                            kv,
                            scale,
                        );
                        probs_from_lse(&mut p_cols, lh, rows, 0, None);
                    }
                }
                // dV = P[:, ..rows]ᵀ dO
                let (pv, dov) = (TRANSPOSED(rows), ROW_MAJOR(dh));
                matmul(
                    rows,
                    dh,
                    t,
                    dv,
                    ROW_MAJOR(dh),
                    false,
                    &p_cols,
                    pv,
                    doh,
                    dov,
                    1.0,
                );
                // dS[:, ..rows] = P ⊙ (dO V[..rows]ᵀ − D);  dK = scale dSᵀ Q
                let mut ds = vec![0.0f32; t * rows];
                let (dov, vv) = (ROW_MAJOR(dh), TRANSPOSED(dh));
                matmul(
                    t,
                    rows,
                    dh,
                    &mut ds,
                    ROW_MAJOR(rows),
                    false,
                    doh,
                    dov,
                    vh,
                    vv,
                    1.0,
                );
                softmax_grad(&mut ds, &p_cols, &d, rows);
                let (dsv, qv) = (TRANSPOSED(rows), ROW_MAJOR(dh));
                matmul(
                    rows,
                    dh,
                    t,
                    dk,
                    ROW_MAJOR(dh),
                    false,
                    &ds,
                    dsv,
                    qh,
                    qv,
                    scale,
                );
                // Rows 0..rows of P (the leading queries' weights on every key): dQ.
                let mut p_rows = vec![0.0f32; rows * t];
                match kept {
                    Some(p) => p_rows.copy_from_slice(&p[..rows * t]),
                    None => {
                        let (qv, kv) = (ROW_MAJOR(dh), TRANSPOSED(dh));
                        matmul(
                            rows,
                            t,
                            dh,
                            &mut p_rows,
                            ROW_MAJOR(t),
                            false,
                            qh,
                            qv,
                            kh,
                            kv,
                            scale,
                        );
                        probs_from_lse(&mut p_rows, &lh[..rows], t, 0, None);
                    }
                }
                // dS[..rows, :] = P ⊙ (dO[..rows] Vᵀ − D);  dQ = scale dS K
                let mut ds = vec![0.0f32; rows * t];
                let (dov, vv) = (ROW_MAJOR(dh), TRANSPOSED(dh));
                matmul(
                    rows,
                    t,
                    dh,
                    &mut ds,
                    ROW_MAJOR(t),
                    false,
                    doh,
                    dov,
                    vh,
                    vv,
                    1.0,
                );
                softmax_grad(&mut ds, &p_rows, &d[..rows], t);
                let (dsv, kv) = (ROW_MAJOR(t), ROW_MAJOR(dh));
                matmul(
                    rows,
                    dh,
                    t,
                    dq,
                    ROW_MAJOR(dh),
                    false,
                    &ds,
                    dsv,
                    kh,
                    kv,
                    scale,
                );
            });
    })?;
    Ok((
        Tensor::from_vec(dq, (b, h, rows, dh), dev)?,
        Tensor::from_vec(dk, (b, h, rows, dh), dev)?,
        Tensor::from_vec(dv, (b, h, rows, dh), dev)?,
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

    #[test]
    fn leading_rows_backward_matches_the_full_backward() {
        let dev = Device::Cpu;
        for (t, rows, save) in [
            (150, 20, Save::Statistics),
            (150, 20, Save::Probabilities),
            (64, 1, Save::Probabilities),
            (33, 16, Save::Statistics),
            (40, 30, Save::Statistics),
            (50, 0, Save::Probabilities),
        ] {
            let q = Tensor::randn(0f32, 1.0, (2, 3, t, 16), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (2, 3, t, 16), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (2, 3, t, 16), &dev).unwrap();
            let d_o = Tensor::randn(0f32, 1.0, (2, 3, t, 16), &dev).unwrap();
            let (_, s) = attention(&q, &k, &v, 0.25, None, save).unwrap();
            let s = s.unwrap();
            let (dq, dk, dv) = attention_backward(&s, &d_o).unwrap();
            let (pq, pk, pv) = attention_backward_prefix(&s, &d_o, rows).unwrap();
            for (full, part, name) in [(dq, pq, "dq"), (dk, pk, "dk"), (dv, pv, "dv")] {
                assert_eq!(part.dims(), &[2, 3, rows, 16]);
                let full = full.narrow(2, 0, rows).unwrap();
                if rows == 0 {
                    continue;
                }
                assert!(
                    max_abs_diff(&full, &part) < 1e-4,
                    "{name}: t {t}, rows {rows}"
                );
            }
        }
        let q = Tensor::randn(0f32, 1.0, (1, 1, 8, 4), &dev).unwrap();
        let (_, s) = attention(&q, &q, &q, 0.5, None, Save::Statistics).unwrap();
        assert!(attention_backward_prefix(&s.unwrap(), &q, 9).is_err());
    }
}
