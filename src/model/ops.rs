//! Fused CPU kernels for the model's hot spots, each with its analytic backward:
//! attention (flash-style: score tiles stay in cache, probabilities are recomputed from the
//! saved log-sum-exp instead of being stored) and exact-erf GELU (value and derivative in one
//! pass). They work on the tensors' memory directly, run in parallel with rayon, use the `gemm`
//! crate (candle's own CPU GEMM) for the products and vectorised exp/erf. Other devices use the
//! equivalent candle-op formulations in [`reference`].

use crate::{Error, Result};
use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;

/// Rows of the query tile.
const QUERY_TILE: usize = 128;

/// Run `f` on the contiguous f32 data of a CPU tensor.
fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let data = cpu.as_slice::<f32>()?;
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| Error::InvalidArgument("tensor is not contiguous".into()))?;
            Ok(f(&data[start..end]))
        }
        _ => Err(Error::InvalidArgument("expected a CPU tensor".into())),
    }
}

/// Row-major strides of a matrix view: `(row_stride, col_stride)`.
#[derive(Clone, Copy)]
struct View {
    rs: isize,
    cs: isize,
}

const ROW_MAJOR: fn(usize) -> View = |cols| View {
    rs: cols as isize,
    cs: 1,
};
const TRANSPOSED: fn(usize) -> View = |cols| View {
    rs: 1,
    cs: cols as isize,
};

/// `c (m x n) = beta * a (m x k) · b (k x n)`, plus `c` when `accumulate`. Single-threaded:
/// callers parallelise over independent tiles. Bounds are checked before the unsafe call.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    cv: View,
    accumulate: bool,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    beta: f32,
) {
    let extent = |v: View, rows: usize, cols: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows as isize - 1) * v.rs + (cols as isize - 1) * v.cs + 1
        }
    };
    assert!(
        extent(cv, m, n) as usize <= c.len(),
        "matmul: output out of bounds"
    );
    assert!(
        extent(av, m, k) as usize <= a.len(),
        "matmul: lhs out of bounds"
    );
    assert!(
        extent(bv, k, n) as usize <= b.len(),
        "matmul: rhs out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|x| *x = 0.0);
        }
        return;
    }
    // SAFETY: every index the GEMM touches lies inside the slices (checked above); `c` does
    // not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            cv.cs,
            cv.rs,
            accumulate,
            a.as_ptr(),
            av.cs,
            av.rs,
            b.as_ptr(),
            bv.cs,
            bv.rs,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `e^x`, branch-free (vectorises), relative error ~2e-7 on [-87, 88].
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to integer.
    let x = x.clamp(-87.0, 88.0);
    let r = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let f = x - r * 0.693_145_75 - r * 1.428_606_8e-6;
    let p = ((((1.987_569_1e-4 * f + 1.398_199_9e-3) * f + 8.333_452e-3) * f + 4.166_579_6e-2) * f
        + 0.166_666_65)
        * f
        + 0.5;
    let p = p * f * f + f + 1.0;
    p * f32::from_bits(((r as i32 + 127) as u32) << 23)
}

/// `erf(x)`, rational approximation (Eigen's single-precision `erf`), max error ~1e-7.
#[inline(always)]
fn erf_approx(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// Run `kernel` compiled for AVX2+FMA when the CPU has them.
macro_rules! dispatch {
    ($generic:ident, $avx:ident, ($($arg:ident : $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx($($arg: $ty),*) {
            $generic($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected at run time.
            unsafe { $avx($($arg),*) };
            return;
        }
        $generic($($arg),*)
    };
}

#[inline(always)]
fn gelu_kernel(x: &[f32], y: &mut [f32], d: &mut [f32]) {
    const INV_SQRT2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((xi, yi), di) in x.iter().zip(y.iter_mut()).zip(d.iter_mut()) {
        let v = *xi;
        let cdf = 0.5 * (1.0 + erf_approx(v * INV_SQRT2));
        let pdf = INV_SQRT_2PI * exp_approx(-0.5 * v * v);
        *yi = v * cdf;
        *di = cdf + v * pdf;
    }
}

fn gelu_chunk(x: &[f32], y: &mut [f32], d: &mut [f32]) {
    dispatch!(gelu_kernel, gelu_kernel_avx2, (x: &[f32], y: &mut [f32], d: &mut [f32]));
}

/// Exact-erf GELU of `x` and its derivative `Φ(x) + x φ(x)` (the tensor the backward multiplies
/// the incoming gradient by).
pub fn gelu_with_derivative(x: &Tensor) -> Result<(Tensor, Tensor)> {
    if !matches!(x.device(), Device::Cpu) {
        return reference::gelu_with_derivative(x);
    }
    let n = x.elem_count();
    let mut y = vec![0.0f32; n];
    let mut d = vec![0.0f32; n];
    with_cpu_f32(x, |xs| {
        const CHUNK: usize = 16 * 1024;
        xs.par_chunks(CHUNK)
            .zip(y.par_chunks_mut(CHUNK))
            .zip(d.par_chunks_mut(CHUNK))
            .for_each(|((xc, yc), dc)| gelu_chunk(xc, yc, dc));
    })?;
    let shape = x.shape().clone();
    Ok((
        Tensor::from_vec(y, shape.clone(), x.device())?,
        Tensor::from_vec(d, shape, x.device())?,
    ))
}

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
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    /// Row log-sum-exp of the scaled scores, `(B, H, Tq)`; `None` on the reference path.
    lse: Option<Tensor>,
    /// Probabilities `(B, H, Tq, Tk)`, when kept (else recomputed from `lse`).
    p: Option<Tensor>,
    scale: f64,
    causal_offset: Option<usize>,
}

fn check_attention_shapes(
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

/// Output channels per parallel block of a convolution.
const CHANNEL_BLOCK: usize = 32;

fn conv_dims(x: &Tensor, w: &Tensor, stride: usize) -> Result<(usize, usize, usize, usize, usize)> {
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
pub mod reference {
    use super::*;
    use candle_core::D;

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
    pub fn conv1d_k3_input_grad(
        dy: &Tensor,
        w: &Tensor,
        stride: usize,
        t_in: usize,
    ) -> Result<Tensor> {
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
    pub fn attention_backward(
        s: &AttentionSaved,
        d_o: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let p =
            s.p.as_ref()
                .ok_or_else(|| Error::InvalidArgument("no probabilities saved".into()))?;
        let dv = p.t()?.matmul(d_o)?;
        let dp = d_o.matmul(&s.v.t()?)?;
        let row = (d_o * &s.o)?.sum_keepdim(D::Minus1)?;
        let ds = (p * dp.broadcast_sub(&row)?)?;
        let dq = (ds.matmul(&s.k)? * s.scale)?;
        let dk = (ds.t()?.matmul(&s.q)? * s.scale)?;
        Ok((dq, dk, dv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn fast_exp_and_erf_are_accurate() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let e = exp_approx(x);
            assert!(((e - x.exp()) / x.exp()).abs() < 1e-6, "exp({x})");
            let y = i as f32 / 1000.0;
            assert!(
                (erf_approx(y) - libm_erf(y)).abs() < 1e-6,
                "erf({y}): {} vs {}",
                erf_approx(y),
                libm_erf(y)
            );
        }
    }

    fn libm_erf(x: f32) -> f32 {
        let t = Tensor::new(&[x], &Device::Cpu).unwrap();
        t.erf().unwrap().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn fused_gelu_matches_candle() {
        let x = Tensor::randn(0f32, 2.0, (3, 1000), &Device::Cpu).unwrap();
        let (y, d) = gelu_with_derivative(&x).unwrap();
        let (yr, dr) = reference::gelu_with_derivative(&x).unwrap();
        assert!(max_abs_diff(&y, &yr) < 1e-6);
        assert!(max_abs_diff(&d, &dr) < 1e-6);
        assert!(max_abs_diff(&y, &x.gelu_erf().unwrap()) < 1e-6);
    }

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
