//! Property tests of the constraint projections: after projecting any perturbation, every
//! constraint that is set holds.

use advox::masking::{MaskingConfig, MaskingThreshold};
use advox::metrics::{l2, linf, snr_db};
use advox::perturb::{speech_mask, BandLimiter, Constraints, MaskingBound};
use advox::rng::Rng;
use std::sync::Arc;

fn random(rng: &mut Rng, n: usize, a: f32) -> Vec<f32> {
    (0..n).map(|_| rng.symmetric(a)).collect()
}

#[test]
fn every_constraint_holds_after_projection() {
    let mut rng = Rng::new(1);
    for case in 0..200 {
        let n = 100 + (rng.next_u64() % 3000) as usize;
        let x = random(&mut rng, n, 0.5);
        let amplitude = 0.2 * rng.uniform() + 1e-3;
        let mut delta = random(&mut rng, n, amplitude);
        let pick = rng.next_u64();
        let mask: Vec<bool> = (0..n).map(|i| (i / 50) % 3 != 0).collect();
        let c = Constraints {
            linf: (pick & 1 != 0).then(|| 0.001 + 0.05 * rng.uniform()),
            l2: (pick & 2 != 0).then(|| 0.01 + rng.uniform()),
            snr_db: (pick & 4 != 0).then(|| 10.0 + 40.0 * rng.uniform()),
            band_hz: None,
            time_mask: (pick & 8 != 0).then(|| mask.clone()),
            masking: None,
        };
        c.validate(n).unwrap();
        c.project(&mut delta, &x, None).unwrap();
        if let Some(eps) = c.linf {
            assert!(linf(&delta) <= eps as f64 + 1e-7, "case {case}: linf");
        }
        if let Some(b) = c.l2 {
            assert!(l2(&delta) <= b as f64 + 1e-6, "case {case}: l2");
        }
        if let Some(s) = c.snr_db {
            assert!(snr_db(&x, &delta) >= s as f64 - 1e-4, "case {case}: snr");
        }
        if c.time_mask.is_some() {
            assert!(
                delta.iter().zip(&mask).all(|(d, m)| *m || *d == 0.0),
                "case {case}: mask"
            );
        }
        // Projecting again changes nothing material (it is idempotent up to the margin).
        let mut again = delta.clone();
        c.project(&mut again, &x, None).unwrap();
        assert!(
            l2(&again) >= l2(&delta) * 0.998,
            "case {case}: not idempotent"
        );
    }
}

#[test]
fn band_limiter_removes_out_of_band_energy() {
    let sr = 16_000.0f32;
    let tone = |f: f32| {
        (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / sr).sin())
            .collect::<Vec<f32>>()
    };
    let limiter = BandLimiter::new(4000.0, 8000.0, 16_000).unwrap();
    let mut low = tone(500.0);
    limiter.apply(&mut low).unwrap();
    assert!(
        l2(&low[500..7500]) < 1e-3 * l2(&tone(500.0)[500..7500]),
        "500 Hz survived"
    );
    let mut high = tone(6000.0);
    limiter.apply(&mut high).unwrap();
    let reference = tone(6000.0);
    let err: Vec<f32> = high.iter().zip(&reference).map(|(a, b)| a - b).collect();
    assert!(
        l2(&err[500..7500]) < 1e-3 * l2(&reference[500..7500]),
        "6 kHz was changed"
    );
    assert!(BandLimiter::new(5000.0, 100.0, 16_000).is_err());
}

#[test]
fn speech_mask_marks_sound_not_silence() {
    let mut x = vec![0.0f32; 16_000];
    for (i, v) in x.iter_mut().enumerate().skip(6000).take(4000) {
        *v = 0.3 * (i as f32 * 0.1).sin();
    }
    let mask = speech_mask(&x, 16_000);
    assert!(mask[8000]);
    assert!(!mask[100] && !mask[15_900]);
    let constraints = Constraints {
        time_mask: Some(vec![true; 10]),
        ..Default::default()
    };
    assert!(constraints.validate(11).is_err());
    assert!(Constraints {
        linf: Some(-1.0),
        ..Default::default()
    }
    .validate(5)
    .is_err());
}

#[test]
fn masking_bound_holds_after_projection() {
    let mut rng = Rng::new(2);
    for case in 0..30 {
        let n = 2_000 + (rng.next_u64() % 30_000) as usize;
        let f0 = 100.0 + 900.0 * rng.uniform();
        let level = 0.05 + 0.5 * rng.uniform();
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                level * (2.0 * std::f32::consts::PI * f0 * t).sin()
                    + 0.3 * level * (2.0 * std::f32::consts::PI * 3.1 * f0 * t).sin()
                    + rng.symmetric(0.01 * level)
            })
            .collect();
        let threshold = Arc::new(MaskingThreshold::compute(&x, MaskingConfig::default()).unwrap());
        let margin_db = 10.0 * rng.uniform();
        let c = Constraints {
            linf: (case % 3 == 0).then_some(0.01),
            snr_db: (case % 4 == 0).then_some(20.0),
            time_mask: (case % 5 == 0).then(|| (0..n).map(|i| (i / 700) % 3 != 0).collect()),
            masking: Some(MaskingBound {
                threshold: threshold.clone(),
                margin_db,
            }),
            ..Default::default()
        };
        c.validate(n).unwrap();
        let amplitude = 0.1 * rng.uniform() + 1e-3;
        let mut delta = random(&mut rng, n, amplitude);
        c.project(&mut delta, &x, None).unwrap();
        if let Some(eps) = c.linf {
            assert!(linf(&delta) <= eps as f64 + 1e-7, "case {case}: linf");
        }
        if let Some(s) = c.snr_db {
            assert!(snr_db(&x, &delta) >= s as f64 - 1e-4, "case {case}: snr");
        }
        if let Some(mask) = &c.time_mask {
            assert!(
                delta.iter().zip(mask).all(|(d, m)| *m || *d == 0.0),
                "case {case}: time mask"
            );
        }
        // Under the threshold everywhere that matters (resynthesis leaves a trace of energy).
        let stats = threshold.stats(&delta).unwrap();
        assert!(
            stats.energy_under_threshold > 0.995 && stats.bins_over_threshold < 0.005,
            "case {case}: margin {margin_db} dB: {stats:?}"
        );
        assert!(
            stats.mean_margin_db > margin_db as f64 - 0.5,
            "case {case}: {stats:?}"
        );
        assert!(l2(&delta) > 0.0, "case {case}: everything removed");
    }
}
