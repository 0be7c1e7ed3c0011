//! Fused CPU kernels for the model's hot spots, each with its analytic backward:
//! attention (flash-style: score tiles stay in cache, probabilities are recomputed from the
//! saved log-sum-exp instead of being stored) and exact-erf GELU (value and derivative in one
//! pass). They work on the tensors' memory directly, run in parallel with rayon, use the `gemm`
//! crate (candle's own CPU GEMM) for the products and vectorised exp/erf. Other devices use the
//! equivalent candle-op formulations in [`reference`].

use crate::{Error, Result};
use candle_core::{Storage, Tensor};
use std::mem::MaybeUninit;

/// Run `f` on the contiguous f32 data of a CPU tensor.
pub(super) fn with_cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let data = cpu.as_slice::<f32>()?;
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| Error::Internal("tensor is not contiguous".into()))?;
            Ok(f(&data[start..end]))
        }
        _ => Err(Error::Internal("expected a CPU tensor".into())),
    }
}

/// Run `f` on the contiguous f32 data of several CPU tensors at once.
pub(super) fn with_cpu_f32s<R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    let owned = tensors
        .iter()
        .map(|t| t.to_dtype(candle_core::DType::F32)?.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(N);
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => {
                let data = cpu.as_slice::<f32>()?;
                let (start, end) = layout
                    .contiguous_offsets()
                    .ok_or_else(|| Error::Internal("tensor is not contiguous".into()))?;
                slices.push(&data[start..end]);
            }
            _ => return Err(Error::Internal("expected a CPU tensor".into())),
        }
    }
    let slices: [&[f32]; N] = slices
        .try_into()
        .map_err(|_| Error::Shape("tensor count".into()))?;
    Ok(f(slices))
}

/// Row-major strides of a matrix view: `(row_stride, col_stride)`.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub(super) rs: isize,
    pub(super) cs: isize,
}

pub(super) const ROW_MAJOR: fn(usize) -> View = |cols| View {
    rs: cols as isize,
    cs: 1,
};
pub(super) const TRANSPOSED: fn(usize) -> View = |cols| View {
    rs: 1,
    cs: cols as isize,
};

/// `c (m x n) = beta * a (m x k) · b (k x n)`, plus `c` when `accumulate`. Single-threaded:
/// callers parallelise over independent tiles. Bounds are checked before the unsafe call.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
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
    assert!(extent(cv, m, n) <= c.len(), "matmul: output out of bounds");
    // SAFETY: `c` holds every element the view addresses (checked above) and is a distinct
    // borrow from `a` and `b`.
    unsafe { gemm_into(m, n, k, c.as_mut_ptr(), cv, accumulate, a, av, b, bv, beta) }
}

/// [`matmul`] into fresh (uninitialised) memory: `c` is the row-major `m x n` product, every
/// element written without being read, and is returned initialised. Saves zeroing buffers
/// that a product overwrites anyway.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_uninit<'c>(
    m: usize,
    n: usize,
    k: usize,
    c: &'c mut [MaybeUninit<f32>],
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    beta: f32,
) -> &'c mut [f32] {
    assert_eq!(c.len(), m * n, "matmul: output size");
    if k == 0 || m == 0 || n == 0 {
        c.iter_mut().for_each(|v| {
            v.write(0.0);
        });
    } else {
        // SAFETY: `c` is exactly the `m x n` row-major output (checked above), a distinct
        // borrow from `a` and `b`; without `accumulate` the GEMM writes every element of it and
        // reads none (gemm's `read_dst = false` path).
        unsafe {
            gemm_into(
                m,
                n,
                k,
                c.as_mut_ptr().cast(),
                ROW_MAJOR(n),
                false,
                a,
                av,
                b,
                bv,
                beta,
            )
        }
    }
    // SAFETY: every element was written above.
    unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Elements a strided `rows x cols` view spans.
fn extent(v: View, rows: usize, cols: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        ((rows as isize - 1) * v.rs + (cols as isize - 1) * v.cs + 1) as usize
    }
}

/// The GEMM call behind [`matmul`] and [`matmul_uninit`].
///
/// # Safety
/// `c` must address every element of the `m x n` view `cv` and must not alias `a` or `b`;
/// with `accumulate` those elements must be initialised.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    cv: View,
    accumulate: bool,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    beta: f32,
) {
    assert!(extent(av, m, k) <= a.len(), "matmul: lhs out of bounds");
    assert!(extent(bv, k, n) <= b.len(), "matmul: rhs out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *c.offset(i as isize * cv.rs + j as isize * cv.cs) = 0.0;
                }
            }
        }
        return;
    }
    gemm::gemm(
        m,
        n,
        k,
        c,
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

/// `e^x`, branch-free (vectorises), relative error ~2e-7 on [-87, 88].
#[inline(always)]
pub(super) fn exp_approx(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to integer.
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let r = t - MAGIC;
    // `r` as an integer, read from `t`'s mantissa (its unit in the last place is 1 there):
    // the same value as `r as i32`, without the saturating conversion that keeps the
    // compiler from vectorising the loop.
    let ri = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let f = x - r * 0.693_145_75 - r * 1.428_606_8e-6;
    let p = ((((1.987_569_1e-4 * f + 1.398_199_9e-3) * f + 8.333_452e-3) * f + 4.166_579_6e-2) * f
        + 0.166_666_65)
        * f
        + 0.5;
    let p = p * f * f + f + 1.0;
    p * f32::from_bits((ri.wrapping_add(127) as u32) << 23)
}

/// `erf(x)`, rational approximation (Eigen's single-precision `erf`), max error ~1e-7.
#[inline(always)]
pub(super) fn erf_approx(x: f32) -> f32 {
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

/// Run `kernel` compiled for AVX-512 (F, BW, DQ, VL) or AVX2+FMA when the CPU has them, else
/// for the baseline x86-64 (or whatever the target is). The kernels are written as loops over
/// fixed 16-wide lanes, so each compiles to one zmm or two ymm registers per lane group and gives
/// the same bits on either path (the compiler does not contract `a * b + c` into FMAs).
macro_rules! dispatch {
    ($generic:ident, $avx:ident, ($($arg:ident : $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                $generic($($arg),*)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $avx($($arg: $ty),*) {
                $generic($($arg),*)
            }
            match super::simd_level() {
                // SAFETY: the features were detected at run time.
                super::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                super::SimdLevel::Avx2 => return unsafe { $avx($($arg),*) },
                super::SimdLevel::Baseline => {}
            }
        }
        $generic($($arg),*)
    };
}

/// The vector instruction sets the fused kernels are compiled for, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Neither of the others: the target's baseline.
    Baseline,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512 F, BW, DQ and VL (with AVX2 and FMA).
    Avx512,
}

/// The instruction set this CPU runs the fused kernels with (detected once). Setting
/// `ADVOX_SIMD=avx2` or `baseline` before the first call caps it (to compare paths).
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("ADVOX_SIMD").as_deref() {
            Ok("avx2") => SimdLevel::Avx2,
            Ok("baseline") => SimdLevel::Baseline,
            _ => SimdLevel::Avx512,
        };
        detect_simd().min(cap)
    })
}

#[cfg(target_arch = "x86_64")]
fn detect_simd() -> SimdLevel {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl");
    if avx2 && avx512 {
        SimdLevel::Avx512
    } else if avx2 {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_simd() -> SimdLevel {
    SimdLevel::Baseline
}

mod attention;
mod conv;
mod gelu;
mod layer_norm;
mod linear;
pub mod reference;

pub use attention::{
    attention, attention_backward, attention_backward_prefix, AttentionSaved, Save,
};
pub use conv::{conv1d_k3, conv1d_k3_input_grad};
pub use gelu::{gelu, gelu_with_derivative};
pub use layer_norm::layer_norm_backward;
pub use linear::{linear, linear_input_grad};

/// Largest absolute difference of two tensors (tests).
#[cfg(test)]
pub(super) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
}
