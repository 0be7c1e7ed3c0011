//! Psychoacoustic masking model: threshold shape, loss, projection, streaming vs whole file.

use advox::masking::{
    absolute_threshold_db, bark, MaskingAnalyzer, MaskingConfig, MaskingThreshold, Normalization,
};
use advox::rng::Rng;

const SR: f32 = 16_000.0;

fn tone(freq: f32, amplitude: f32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * i as f32 / SR).sin())
        .collect()
}

fn noise(len: usize, amplitude: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.symmetric(amplitude)).collect()
}

/// Speech-like test signal: a few harmonics with a slow envelope, plus a little noise.
fn voiced(len: usize) -> Vec<f32> {
    let n = noise(len, 0.002, 9);
    (0..len)
        .map(|i| {
            let t = i as f32 / SR;
            let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin().abs();
            let f0 = 140.0;
            let s: f32 = (1..12)
                .map(|h| (2.0 * std::f32::consts::PI * f0 * h as f32 * t).sin() / h as f32)
                .sum();
            0.2 * env * s + n[i]
        })
        .collect()
}

#[test]
fn bark_and_threshold_in_quiet_have_their_textbook_values() {
    assert!((bark(1000.0) - 8.51).abs() < 0.05, "{}", bark(1000.0));
    assert!((bark(4000.0) - 17.4).abs() < 0.2, "{}", bark(4000.0));
    // The threshold in quiet has its minimum near 3.3 kHz and rises steeply at both ends.
    let at = absolute_threshold_db;
    assert!(at(3300.0) < at(1000.0) && at(3300.0) < at(8000.0));
    assert!(at(100.0) > 5.0 && at(15_000.0) > 30.0);
}

#[test]
fn threshold_of_a_1khz_tone_at_60_db() {
    let amplitude = 0.3f32;
    let x = tone(1000.0, amplitude, 16_000);
    // Put the tone's windowed peak (z² = A²/6) at 60 dB.
    let reference = amplitude * amplitude / 6.0 * 10f32.powf((96.0 - 60.0) / 10.0);
    let cfg = MaskingConfig {
        normalization: Normalization::Reference(reference),
        ..Default::default()
    };
    let th = MaskingThreshold::compute(&x, cfg).unwrap();
    let bins = th.bins();
    let t = th.frames() / 2;
    let theta = &th.theta_db()[t * bins..(t + 1) * bins];
    let psd = &th.signal_psd_db()[t * bins..(t + 1) * bins];
    let tone_bin = (1000.0 / SR * cfg.n_fft as f32).round() as usize;
    let peak_psd = psd.iter().copied().fold(f32::MIN, f32::max);
    assert!((peak_psd - 60.0).abs() < 0.5, "tone at {peak_psd} dB");
    let argmax = (0..bins)
        .max_by(|&a, &b| theta[a].total_cmp(&theta[b]))
        .unwrap();
    assert!(
        argmax.abs_diff(tone_bin) <= 1,
        "threshold peaks at bin {argmax}, the tone is at {tone_bin}"
    );
    // Offset of a tonal masker: about 6 + 0.275·8.5 = 8.4 dB under its (smoothed) level.
    assert!(
        theta[argmax] > 45.0 && theta[argmax] < 60.0,
        "{}",
        theta[argmax]
    );
    // One Bark below and above the tone: the spreading function falls faster below.
    let freqs: Vec<f32> = (0..bins)
        .map(|k| k as f32 * SR / cfg.n_fft as f32)
        .collect();
    let at_bark = |target: f32| {
        (0..bins)
            .min_by(|&a, &b| {
                (bark(freqs[a]) - target)
                    .abs()
                    .total_cmp(&(bark(freqs[b]) - target).abs())
            })
            .unwrap()
    };
    let b0 = bark(1000.0);
    let below = theta[argmax] - theta[at_bark(b0 - 1.5)];
    let above = theta[argmax] - theta[at_bark(b0 + 1.5)];
    assert!(
        below > above + 5.0,
        "fall 1.5 Bark below {below} dB, above {above} dB"
    );
    // Never under the threshold in quiet.
    let analyzer = MaskingAnalyzer::new(SR, cfg.n_fft).unwrap();
    for (k, (&th_db, &ath)) in theta.iter().zip(analyzer.absolute_threshold()).enumerate() {
        assert!(th_db >= ath - 1e-3, "bin {k}: {th_db} under the ATH {ath}");
    }
}

#[test]
fn loss_is_zero_under_the_threshold_and_positive_over_it() {
    let x = voiced(24_000);
    let th = MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap();
    let mut delta = noise(x.len(), 0.05, 3);
    let (loud, _) = th.loss_and_grad(&delta).unwrap();
    assert!(loud > 0.0);
    th.project(&mut delta, 6.0, 50, None).unwrap();
    let (under, grad) = th.loss_and_grad(&delta).unwrap();
    assert_eq!(
        under, 0.0,
        "δ projected to θ − 6 dB still has a masking loss"
    );
    assert!(grad.iter().all(|g| *g == 0.0));
    let stats = th.stats(&delta).unwrap();
    assert!(stats.energy_under_threshold > 0.999, "{stats:?}");
    assert!(stats.mean_margin_db >= 5.9, "{stats:?}");
    assert!(
        delta.iter().any(|d| d.abs() > 1e-5),
        "projection removed everything"
    );
    // The same perturbation 12 dB louder sits at θ + 6 dB where it touched the bound.
    let louder: Vec<f32> = delta.iter().map(|d| d * 10f32.powf(12.0 / 20.0)).collect();
    let (over, _) = th.loss_and_grad(&louder).unwrap();
    assert!(over > 0.0, "δ at θ + 6 dB has no masking loss");
    assert!(th.stats(&louder).unwrap().bins_over_threshold > 0.0);
}

#[test]
fn masking_loss_gradient_matches_finite_differences() {
    let x = voiced(6_000);
    let th = MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap();
    let delta = noise(x.len(), 0.5, 4);
    let (loss, grad) = th.loss_and_grad(&delta).unwrap();
    assert!(loss > 0.0);
    let direction = noise(x.len(), 1.0, 5);
    let h = 1e-3f64;
    let shifted = |s: f64| -> f64 {
        let d: Vec<f32> = delta
            .iter()
            .zip(&direction)
            .map(|(a, b)| (*a as f64 + s * *b as f64) as f32)
            .collect();
        th.loss_and_grad(&d).unwrap().0 as f64
    };
    let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
    let analytic: f64 = grad
        .iter()
        .zip(&direction)
        .map(|(g, d)| *g as f64 * *d as f64)
        .sum();
    let rel = (numeric - analytic).abs() / analytic.abs().max(1e-12);
    assert!(rel < 0.02, "directional derivative {analytic} vs {numeric}");
}

#[test]
fn frame_by_frame_threshold_equals_the_whole_file_one() {
    let x = voiced(20_000);
    for normalization in [Normalization::Frame, Normalization::Utterance] {
        let cfg = MaskingConfig {
            normalization,
            ..Default::default()
        };
        let whole = MaskingThreshold::compute(&x, cfg).unwrap();
        let mut analyzer = MaskingAnalyzer::new(SR, cfg.n_fft).unwrap();
        let bins = analyzer.bins();
        let mut theta = vec![0.0f32; bins];
        let streaming = match normalization {
            // Streaming gets the utterance's peak as a fixed reference.
            Normalization::Utterance => Normalization::Reference(whole.psd_max(0)),
            other => other,
        };
        let mut frame = vec![0.0f32; cfg.n_fft];
        for t in 0..whole.frames() {
            let start = (t * cfg.hop) as isize - (cfg.n_fft / 2) as isize;
            for (i, f) in frame.iter_mut().enumerate() {
                let idx = start + i as isize;
                *f = if idx >= 0 && (idx as usize) < x.len() {
                    x[idx as usize]
                } else {
                    0.0
                };
            }
            let psd_max = analyzer
                .frame_threshold(&frame, streaming, &mut theta)
                .unwrap();
            assert_eq!(psd_max, whole.psd_max(t));
            let reference = &whole.theta_db()[t * bins..(t + 1) * bins];
            for (k, (a, b)) in theta.iter().zip(reference).enumerate() {
                assert!(
                    a == b || (a - b).abs() < 1e-4,
                    "{normalization:?} frame {t} bin {k}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn bad_settings_are_refused() {
    assert!(MaskingAnalyzer::new(0.0, 2048).is_err());
    assert!(MaskingAnalyzer::new(SR, 15).is_err());
    let mut a = MaskingAnalyzer::new(SR, 512).unwrap();
    let mut theta = vec![0.0; a.bins()];
    assert!(a
        .frame_threshold(&[0.0; 100], Normalization::Frame, &mut theta)
        .is_err());
    assert!(a
        .frame_threshold(&[0.0; 512], Normalization::Utterance, &mut theta)
        .is_err());
    assert!(MaskingThreshold::compute(&[], MaskingConfig::default()).is_err());
    let th = MaskingThreshold::compute(&[0.1; 1000], MaskingConfig::default()).unwrap();
    assert!(th.loss_and_grad(&[0.0; 999]).is_err());
}
