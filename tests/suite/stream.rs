//! The real-time core (Cloak, Sentinel, the model monitor) on the project's speech at host
//! rates, checked against offline computations made independently.

use crate::common;

use advox::masking::{MaskingConfig, MaskingThreshold, Normalization};
use advox::stream::cloak::{cloak_offline, CloakChannel, CloakMode, CloakSettings};
use advox::stream::frame_size_for;
use advox::stream::sentinel::{sentinel_offline, SentinelSettings};

/// A project sample at `rate`.
fn speech(name: &str, rate: u32) -> Vec<f32> {
    advox::audio::resample(&common::sample(name), 16_000, rate).unwrap()
}

/// A universal-perturbation-like signal: broadband, loud (±0.05), at `rate`.
fn perturbation(len: usize) -> Vec<f32> {
    let mut rng = advox::rng::Rng::new(7);
    (0..len).map(|_| rng.symmetric(0.05)).collect()
}

/// Per-frame noise-to-mask ratio (dB) of `delta` against the threshold of `x`, computed by the
/// whole-file masking model on the frames Cloak analyses (centred frames at its hops).
fn frame_nmr_db(x: &[f32], delta: &[f32], rate: f32, band: (f32, f32)) -> Vec<f32> {
    let n = frame_size_for(rate);
    let cfg = MaskingConfig {
        sample_rate: rate,
        n_fft: n,
        hop: n / 2,
        normalization: Normalization::full_scale(),
    };
    let m = MaskingThreshold::compute(x, cfg).unwrap();
    let p = m.perturbation_power(delta).unwrap();
    let bins = m.bins();
    let bin_hz = rate / n as f32;
    (0..m.frames())
        .map(|t| {
            let (mut sum, mut count) = (0.0f64, 0usize);
            for k in 1..bins - 1 {
                let f = k as f32 * bin_hz;
                if f < band.0 || f > band.1 {
                    continue;
                }
                let theta = m.theta_db()[t * bins + k];
                sum += (p[t * bins + k] / advox::masking::db_to_power(theta)) as f64;
                count += 1;
            }
            10.0 * (sum / count.max(1) as f64).log10() as f32
        })
        .collect()
}

#[test]
fn universal_mode_stays_under_the_masking_threshold_and_equals_its_offline_run() {
    for rate in [44_100u32, 48_000] {
        let x = speech("open_the_front_door.wav", rate);
        let n = frame_size_for(rate as f32);
        let latency = n + n / 2;
        let source = perturbation(rate as usize / 2 + 123);
        let settings = CloakSettings {
            mode: CloakMode::Universal,
            margin_db: 10.0,
            ..Default::default()
        };
        let mut padded = x.clone();
        padded.extend(std::iter::repeat_n(0.0, latency));
        let out = cloak_offline(&padded, rate as f32, &settings, Some(&source), 0).unwrap();
        let delta: Vec<f32> = (0..x.len()).map(|i| out[i + latency] - x[i]).collect();
        assert!(delta.iter().any(|d| d.abs() > 1e-5), "nothing was added");
        let nmr = frame_nmr_db(&x, &delta, rate as f32, (100.0, 8_000.0));
        let worst = nmr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        eprintln!("{rate} Hz worst frame NMR {worst:.2} dB");
        assert!(
            worst <= -(settings.margin_db - 1.0),
            "{rate} Hz: a frame's perturbation is {worst:.1} dB against the threshold"
        );
        // The unshaped perturbation is far over the threshold: the shaping did the work.
        let raw: Vec<f32> = (0..x.len()).map(|i| source[i % source.len()]).collect();
        let raw_nmr = frame_nmr_db(&x, &raw, rate as f32, (100.0, 8_000.0));
        assert!(raw_nmr.iter().copied().fold(f32::NEG_INFINITY, f32::max) > 10.0);
        // Any block size gives the same samples as one block.
        for block in [1usize, 17, 512, 8192] {
            let mut ch = CloakChannel::new(rate as f32, n, 0).unwrap();
            let mut y = padded.clone();
            for chunk in y.chunks_mut(block) {
                ch.process(chunk, &settings, Some(&source));
            }
            assert_eq!(y, out, "block size {block}");
        }
    }
}

#[test]
fn masked_noise_stays_under_the_threshold_in_its_band() {
    let rate = 48_000u32;
    let x = real_speech(1, rate).remove(0).1;
    let n = frame_size_for(rate as f32);
    let latency = n + n / 2;
    let settings = CloakSettings {
        mode: CloakMode::MaskedNoise,
        margin_db: 6.0,
        band_low_hz: 300.0,
        band_high_hz: 6_000.0,
        ..Default::default()
    };
    let mut padded = x.clone();
    padded.extend(std::iter::repeat_n(0.0, latency));
    let out = cloak_offline(&padded, rate as f32, &settings, None, 3).unwrap();
    let delta: Vec<f32> = (0..x.len()).map(|i| out[i + latency] - x[i]).collect();
    let nmr = frame_nmr_db(&x, &delta, rate as f32, (100.0, 8_000.0));
    let voiced: Vec<f32> = nmr.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = voiced.iter().sum::<f32>() / voiced.len() as f32;
    eprintln!(
        "masked noise mean NMR {mean:.2} dB, worst {:.2}",
        voiced.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    );
    assert!(
        mean <= -(settings.margin_db - 1.0),
        "mean noise-to-mask ratio {mean:.1} dB"
    );
    // Out of band there is (almost) nothing: energy above 7 kHz and below 200 Hz.
    let spec = advox::dsp::Stft::new(n, n / 2, advox::dsp::hann_periodic(n))
        .unwrap()
        .stft(&delta);
    let bin_hz = rate as f32 / n as f32;
    let (mut inside, mut outside) = (0.0f64, 0.0f64);
    for (i, c) in spec.data.iter().enumerate() {
        let f = (i % spec.bins) as f32 * bin_hz;
        if (300.0..=6_000.0).contains(&f) {
            inside += c.norm_sqr() as f64;
        } else if !(200.0..=7_000.0).contains(&f) {
            outside += c.norm_sqr() as f64;
        }
    }
    assert!(
        outside < 1e-3 * inside,
        "out-of-band {outside} vs in-band {inside}"
    );
}

#[test]
fn bypass_and_depth_zero_are_the_delayed_input_bit_for_bit() {
    for rate in [44_100.0f32, 48_000.0, 88_200.0, 96_000.0] {
        let n = frame_size_for(rate);
        let latency = n + n / 2;
        let mut x: Vec<f32> = (0..3 * n + 77)
            .map(|i| (i as f32 * 0.013).sin() * 0.3)
            .collect();
        x[5] = 1.0; // an impulse
        for settings in [
            CloakSettings {
                bypass: true,
                ..Default::default()
            },
            CloakSettings {
                depth: 0.0,
                ..Default::default()
            },
        ] {
            let mut ch = CloakChannel::new(rate, n, 0).unwrap();
            assert_eq!(ch.latency(), latency);
            let mut y = x.clone();
            for chunk in y.chunks_mut(61) {
                ch.process(chunk, &settings, None);
            }
            assert!(y[..latency].iter().all(|v| *v == 0.0));
            for i in 0..x.len() - latency {
                assert_eq!(
                    y[i + latency].to_bits(),
                    x[i].to_bits(),
                    "{rate} Hz sample {i}"
                );
            }
            // The latency reported is where the impulse comes out.
            let peak = (0..y.len()).max_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs()));
            assert_eq!(peak, Some(5 + latency));
        }
    }
}

#[test]
fn a_nan_burst_leaves_the_output_finite_and_the_state_clean() {
    let rate = 48_000.0;
    let n = frame_size_for(rate);
    let x = speech("call_my_mother.wav", 48_000);
    let settings = CloakSettings::default();
    let mut burst = x.clone();
    for v in &mut burst[10_000..10_300] {
        *v = f32::NAN;
    }
    burst[20_000] = f32::INFINITY;
    let out = cloak_offline(&burst, rate, &settings, None, 5).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
    // The same as the signal with silence in place of the bad samples: nothing lingers.
    let mut zeroed = burst.clone();
    zeroed
        .iter_mut()
        .filter(|v| !v.is_finite())
        .for_each(|v| *v = 0.0);
    let clean = cloak_offline(&zeroed, rate, &settings, None, 5).unwrap();
    assert_eq!(out, clean);
    assert!(out[30_000 + 2 * n..].iter().any(|v| *v != 0.0));
}

/// Real recorded speech (`common::corpus_test`: speakers that nothing was calibrated on) at
/// `rate`.
fn real_speech(n: usize, rate: u32) -> Vec<(String, Vec<f32>)> {
    common::corpus_test(n)
        .into_iter()
        .map(|c| {
            (
                c.name,
                advox::audio::resample(&c.samples, 16_000, rate).unwrap(),
            )
        })
        .collect()
}

#[test]
fn sentinel_scores_cloaked_speech_above_clean_speech() {
    let rate = 48_000.0;
    let settings = SentinelSettings::default();
    for (name, x) in real_speech(3, 48_000) {
        let cloaked = cloak_offline(&x, rate, &CloakSettings::default(), None, 9).unwrap();
        let clean = sentinel_offline(&x, rate, &settings).unwrap();
        let attacked = sentinel_offline(&cloaked, rate, &settings).unwrap();
        let (c, a) = (*clean.last().unwrap(), *attacked.last().unwrap());
        assert!(
            c < settings.threshold && a > settings.threshold,
            "{name}: clean {c}, cloaked {a}"
        );
    }
}

#[test]
fn the_monitor_reports_a_failed_model_load_and_scores_windows_like_the_detector() {
    use advox::detect::{Context, Detector, Input};
    use advox::stream::monitor::{spawn_monitor, MonitorConfig, MonitorStatus};
    use std::time::{Duration, Instant};
    let wait = |done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the monitor never got there"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // A model that cannot be loaded: the worker says why, the feed keeps accepting samples.
    let (mut feed, state, thread) = spawn_monitor(MonitorConfig::default(), || {
        Err::<advox::model::LoadedModel, _>(advox::Error::bad_model("/nowhere", "no model here"))
    })
    .unwrap();
    wait(&|| state.status() == MonitorStatus::Failed);
    assert!(state.error().unwrap().contains("/nowhere"));
    assert!(feed.push(0.1));
    drop(feed);
    thread.join().unwrap();
    assert_eq!(state.status(), MonitorStatus::Stopped);
    // The real model: one 4-s window at 48 kHz is scored as the detector scores it offline.
    let config = MonitorConfig {
        sample_rate: 48_000.0,
        window_seconds: 4.0,
        interval_seconds: 4.0,
        ..Default::default()
    };
    let detector = config.detector.clone();
    let (mut feed, state, _thread) = spawn_monitor(config, || {
        advox::model::LoadedModel::load(&common::model_dir(), &candle_core::Device::Cpu)
    })
    .unwrap();
    let mut x = speech("lock_the_back_door.wav", 48_000);
    x.extend(speech("call_my_mother.wav", 48_000));
    x.resize(4 * 48_000, 0.0);
    for &v in &x {
        while !feed.push(v) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    wait(&|| state.checks() >= 1);
    let x16 = advox::audio::resample(&x, 48_000, 16_000).unwrap();
    let ctx = Context {
        model: Some(common::model()),
        decode: advox::model::DecodeOptions {
            beam_size: 1,
            ..Default::default()
        },
    };
    let offline = detector.score(&ctx, &Input::new(&x16)).unwrap() as f32;
    assert!(
        (state.score() - offline.clamp(0.0, 1.0)).abs() < 1e-6,
        "{} vs {offline}",
        state.score()
    );
    assert!(matches!(detector, Detector::Consistency(_)));
    state.stop();
    // The output-entropy detector (nats, not 0..1) with a calibrated threshold: the window's
    // score is published relative to it, the threshold at 0.5.
    let threshold = 0.8;
    let config = MonitorConfig {
        sample_rate: 48_000.0,
        window_seconds: 4.0,
        interval_seconds: 4.0,
        detector: Detector::Entropy,
        threshold: Some(threshold),
    };
    let (mut feed, state, _thread) = spawn_monitor(config, || {
        advox::model::LoadedModel::load(&common::model_dir(), &candle_core::Device::Cpu)
    })
    .unwrap();
    for &v in &x {
        while !feed.push(v) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    wait(&|| state.checks() >= 1);
    let entropy = Detector::Entropy.score(&ctx, &Input::new(&x16)).unwrap();
    let expected = (entropy / (2.0 * threshold)).clamp(0.0, 1.0) as f32;
    assert!(
        (state.score() - expected).abs() < 1e-6,
        "{} vs {expected} (entropy {entropy})",
        state.score()
    );
    state.stop();
    // A threshold that is not positive is refused.
    let bad = MonitorConfig {
        threshold: Some(0.0),
        ..Default::default()
    };
    assert!(
        spawn_monitor(bad, || -> advox::Result<advox::model::LoadedModel> {
            unreachable!()
        })
        .is_err()
    );
}

#[test]
fn the_band_meter_shows_the_input_threshold_and_a_perturbation_under_it() {
    use advox::stream::band_meter::{band_of, BandMeter, METER_BANDS, METER_FLOOR_DB};
    let rate = 48_000.0f32;
    let n = frame_size_for(rate);
    // A 1 kHz tone at −12 dBFS with a little broadband noise.
    let x: Vec<f32> = (0..24_000)
        .map(|i| {
            0.25 * (std::f32::consts::TAU * 1_000.0 * i as f32 / rate).sin()
                + ((i * 7919) % 101) as f32 * 2e-6
        })
        .collect();
    let settings = CloakSettings {
        mode: CloakMode::MaskedNoise,
        margin_db: 10.0,
        band_low_hz: 300.0,
        band_high_hz: 6_000.0,
        ..Default::default()
    };
    let meter = std::sync::Arc::new(BandMeter::default());
    let mut metered = CloakChannel::new(rate, n, 5).unwrap();
    metered.set_meter(Some(meter.clone()));
    let mut plain = CloakChannel::new(rate, n, 5).unwrap();
    let (mut a, mut b) = (x.clone(), x.clone());
    for (ca, cb) in a.chunks_mut(512).zip(b.chunks_mut(512)) {
        metered.process(ca, &settings, None);
        plain.process(cb, &settings, None);
    }
    assert_eq!(a, b, "metering does not change the audio");
    let s = meter.snapshot();
    assert_eq!(s.frames, (x.len() / (n / 2)) as u64);
    let tone = band_of(1_000.0).unwrap();
    let loudest = (0..METER_BANDS)
        .max_by(|&i, &j| s.input_db[i].total_cmp(&s.input_db[j]))
        .unwrap();
    assert_eq!(
        loudest, tone,
        "input spectrum peaks at the tone: {:?}",
        s.input_db
    );
    // A −12 dBFS sine sits near 96 − 12 dB on the model's scale (spread over its band's bins).
    assert!(
        s.input_db[tone] > 60.0 && s.input_db[tone] < 84.0,
        "{}",
        s.input_db[tone]
    );
    assert!(s.threshold_db[tone] < s.input_db[tone]);
    let mut perturbed = 0;
    for b in 0..METER_BANDS {
        let (lo, hi) = advox::stream::band_meter::band_edges_hz(b);
        if s.perturbation_db[b] > METER_FLOOR_DB {
            perturbed += 1;
            assert!(
                hi > 300.0 && lo < 6_000.0,
                "band {b} ({lo}..{hi} Hz) is out of band"
            );
            assert!(
                s.perturbation_db[b] <= s.threshold_db[b] - settings.margin_db + 0.5,
                "band {b}: perturbation {} vs threshold {}",
                s.perturbation_db[b],
                s.threshold_db[b]
            );
        }
    }
    assert!(perturbed >= 10, "{perturbed} bands perturbed");
    // Bypass: the perturbation curve drops to the floor, the analysis goes on.
    let bypass = CloakSettings {
        bypass: true,
        ..settings
    };
    metered.process(&mut x.clone(), &bypass, None);
    let s = meter.snapshot();
    assert!(s.perturbation_db.iter().all(|&v| v == METER_FLOOR_DB));
    assert_eq!(loudest, tone);
    assert!(s.input_db[tone] > 60.0);
}

#[test]
fn the_perturbation_is_never_louder_than_the_signal_and_silence_stays_silent() {
    // Up to 24 kHz at margin 0: the threshold in quiet alone would allow noise far above full
    // scale above ~16 kHz; the cap at each frame's loudest component keeps it in proportion.
    let rate = 48_000u32;
    let x = speech("call_my_mother.wav", rate);
    let settings = CloakSettings {
        mode: CloakMode::MaskedNoise,
        margin_db: 0.0,
        band_low_hz: 20.0,
        band_high_hz: 24_000.0,
        ..Default::default()
    };
    let n = frame_size_for(rate as f32);
    let latency = n + n / 2;
    let mut padded = x.clone();
    padded.extend(std::iter::repeat_n(0.0, latency));
    let out = cloak_offline(&padded, rate as f32, &settings, None, 9).unwrap();
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let delta: Vec<f32> = (0..x.len()).map(|i| out[i + latency] - x[i]).collect();
    let delta_peak = delta.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let energy = |v: &[f32]| v.iter().map(|s| (*s as f64).powi(2)).sum::<f64>();
    let (e_delta, e_x) = (energy(&delta), energy(&x));
    eprintln!(
        "δ peak {delta_peak} (signal {peak}), energy ratio {}",
        e_delta / e_x
    );
    assert!(
        e_delta <= e_x,
        "perturbation energy {e_delta} vs signal {e_x}"
    );
    // Noise has a higher crest factor than speech frames, but nothing like the 7× of the
    // uncapped threshold in quiet.
    assert!(
        delta_peak < 2.0 * peak,
        "perturbation peak {delta_peak} vs signal peak {peak}"
    );
    let silence = cloak_offline(&vec![0.0; 48_000], rate as f32, &settings, None, 9).unwrap();
    let silent_peak = silence.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        silent_peak < 1e-6,
        "noise added to digital silence: {silent_peak}"
    );
}

/// Median microseconds per 512-sample stereo block of `process` over `x`, best of three rounds.
fn block_micros(x: &[f32], mut process: impl FnMut(&mut [&mut [f32]])) -> f64 {
    let (mut left, mut right) = (vec![0.0f32; 512], vec![0.0f32; 512]);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut times: Vec<f64> = x
            .chunks_exact(512)
            .map(|block| {
                left.copy_from_slice(block);
                right.copy_from_slice(block);
                let t = std::time::Instant::now();
                process(&mut [&mut left[..], &mut right[..]]);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        best = best.min(times[times.len() / 2]);
    }
    best
}

#[test]
fn a_signal_fading_into_denormals_costs_what_speech_costs() {
    // Real speech at 48 kHz against (a) the same speech fading by 4 dB per block to 400 dB down
    // and staying there (a digital fade without dither: normal floats whose powers, filter
    // tails, overlap-add and FFT bins fall into the subnormal range) and (b) subnormal noise,
    // clap-validator's denormal input. x86's microcode assists make such blocks several times
    // dearer unless denormals are flushed. Both plugins' processing, as `process()` runs it.
    use advox::stream::denormals::FlushDenormals;
    use advox::stream::processors::{CloakProcessor, SentinelProcessor};
    let speech: Vec<f32> = real_speech(2, 48_000)
        .into_iter()
        .flat_map(|(_, x)| x)
        .collect();
    let fading: Vec<f32> = speech
        .iter()
        .enumerate()
        .map(|(i, &v)| v * 10f32.powf((-4.0 / 20.0 * (i / 512) as f32).max(-20.0)))
        .collect();
    let mut rng = advox::rng::Rng::new(11);
    let subnormal: Vec<f32> = (0..speech.len())
        .map(|_| rng.symmetric(1.0) * f32::MIN_POSITIVE)
        .collect();
    assert!(subnormal.iter().filter(|v| v.is_subnormal()).count() > speech.len() / 2);
    let source = perturbation(48_000);
    let check = |name: &str, time: &mut dyn FnMut(&[f32]) -> f64| {
        let normal = time(&speech);
        for (what, x) in [("fading", &fading), ("subnormal", &subnormal)] {
            let t = time(x);
            eprintln!("{name}: {normal:.1} µs per block on speech, {t:.1} {what}");
            assert!(
                t <= 1.5 * normal,
                "{name}, {what}: {t:.1} against {normal:.1} µs"
            );
        }
    };
    for mode in [CloakMode::MaskedNoise, CloakMode::Universal] {
        let settings = CloakSettings {
            mode,
            ..Default::default()
        };
        check(&format!("cloak {mode:?}"), &mut |x| {
            let mut cloak = CloakProcessor::new(48_000.0, 2).unwrap();
            block_micros(x, |io| cloak.process(io, &settings, Some(&source)))
        });
    }
    let settings = SentinelSettings::default();
    check("sentinel", &mut |x| {
        let mut sentinel = SentinelProcessor::new(48_000.0, None).unwrap();
        block_micros(x, |io| sentinel.process(io, &settings, false, &mut |_| {}))
    });
    // The modes are the caller's again after each call, and no subnormal reaches the output.
    assert!(!FlushDenormals::active());
    let mut cloak = CloakProcessor::new(48_000.0, 2).unwrap();
    let (mut left, mut right) = (subnormal[..512].to_vec(), subnormal[512..1024].to_vec());
    cloak.process(
        &mut [&mut left, &mut right],
        &CloakSettings::default(),
        None,
    );
    assert!(left.iter().chain(&right).all(|v| !v.is_subnormal()));
}
