//! FIR filters: windowed-sinc designs and convolution.

use std::f32::consts::PI;

/// Windowed-sinc (Blackman) low-pass at `cutoff_hz`, unit DC gain, or with `high` its spectral
/// complement (a high-pass); `taps` should be odd.
pub fn windowed_sinc(cutoff_hz: f32, sample_rate: f32, taps: usize, high: bool) -> Vec<f32> {
    let taps = taps.max(1) | 1;
    let mid = (taps / 2) as f32;
    let fc = cutoff_hz / sample_rate;
    let span = (taps - 1).max(1) as f32;
    let mut h: Vec<f32> = (0..taps)
        .map(|i| {
            let t = i as f32 - mid;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * t).sin() / (PI * t)
            };
            let w = 0.42 - 0.5 * (2.0 * PI * i as f32 / span).cos()
                + 0.08 * (4.0 * PI * i as f32 / span).cos();
            sinc * w
        })
        .collect();
    let sum: f32 = h.iter().sum();
    if sum != 0.0 {
        h.iter_mut().for_each(|v| *v /= sum);
    }
    if high {
        h.iter_mut().for_each(|v| *v = -*v);
        h[taps / 2] += 1.0;
    }
    h
}

/// Full linear convolution (`a.len() + b.len() − 1` samples).
pub fn convolve(a: &[f32], b: &[f32]) -> Vec<f32> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0.0f32; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        for (o, &y) in out[i..].iter_mut().zip(b) {
            *o += x * y;
        }
    }
    out
}

/// [`convolve`] by FFT (the same result to rounding), for long filters such as room impulse
/// responses, where the direct sum costs `a.len() · b.len()` products.
pub fn fft_convolve(a: &[f32], b: &[f32]) -> Vec<f32> {
    use realfft::RealFftPlanner;
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let len = a.len() + b.len() - 1;
    let n = len.next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |v: &[f32]| {
        let mut buf = vec![0.0f32; n];
        buf[..v.len()].copy_from_slice(v);
        let mut out = fwd.make_output_vec();
        // Lengths match the plan: the transform cannot fail.
        let _ = fwd.process(&mut buf, &mut out);
        out
    };
    let (fa, fb) = (spectrum(a), spectrum(b));
    let mut prod: Vec<_> = fa.iter().zip(&fb).map(|(x, y)| x * y).collect();
    let mut out = vec![0.0f32; n];
    let _ = inv.process(&mut prod, &mut out);
    out.truncate(len);
    out.iter_mut().for_each(|v| *v /= n as f32);
    out
}

/// `x` filtered by the linear-phase FIR `h`, delay removed: the same length as `x`.
pub fn filter_zero_phase(x: &[f32], h: &[f32]) -> Vec<f32> {
    let full = convolve(x, h);
    let delay = h.len() / 2;
    (0..x.len())
        .map(|i| full.get(i + delay).copied().unwrap_or(0.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain(h: &[f32], hz: f32, sr: f32) -> f32 {
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for (n, v) in h.iter().enumerate() {
            let w = 2.0 * PI * hz / sr * n as f32;
            re += v * w.cos();
            im -= v * w.sin();
        }
        (re * re + im * im).sqrt()
    }

    #[test]
    fn fft_convolution_matches_the_direct_sum() {
        let a: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let b: Vec<f32> = (0..300)
            .map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0)
            .collect();
        let (direct, fast) = (convolve(&a, &b), fft_convolve(&a, &b));
        assert_eq!(direct.len(), fast.len());
        let err = direct
            .iter()
            .zip(&fast)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-3, "{err}");
        assert!(fft_convolve(&[], &b).is_empty());
    }

    #[test]
    fn low_and_high_pass_split_the_band() {
        let lp = windowed_sinc(2000.0, 16000.0, 101, false);
        let hp = windowed_sinc(2000.0, 16000.0, 101, true);
        assert!((gain(&lp, 0.0, 16000.0) - 1.0).abs() < 1e-4);
        assert!(gain(&lp, 4000.0, 16000.0) < 1e-3);
        assert!(gain(&hp, 4000.0, 16000.0) > 0.999);
        assert!(gain(&hp, 0.0, 16000.0) < 1e-4);
    }

    #[test]
    fn zero_phase_filtering_keeps_length_and_alignment() {
        let mut x = vec![0.0f32; 50];
        x[20] = 1.0;
        let y = filter_zero_phase(&x, &[0.25, 0.5, 0.25]);
        assert_eq!(y.len(), 50);
        assert_eq!(&y[19..22], &[0.25, 0.5, 0.25]);
    }
}
