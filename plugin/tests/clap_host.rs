//! Both plugins in a real CLAP host (clack-host loading the built .clap by absolute path).

mod host;

use host::*;

#[test]
fn both_plugins_load_report_ports_and_params_and_process_speech() {
    let entry = entry();
    let ids = plugin_ids(&entry);
    assert!(
        ids.contains(&CLOAK.to_string()) && ids.contains(&SENTINEL.to_string()),
        "{ids:?}"
    );
    for (id, expected_params) in [(CLOAK, 7), (SENTINEL, 4)] {
        let mut plugin = instance(&entry, id);
        assert_eq!(audio_ports(&mut plugin), (1, 1, 2), "{id}");
        let names: Vec<String> = params(&mut plugin).into_iter().map(|p| p.1).collect();
        assert_eq!(names.len(), expected_params, "{id}: {names:?}");
        for rate in [44_100u32, 48_000] {
            let x = speech("open_the_front_door.wav", rate);
            let mut run = start(&mut plugin, rate as f64, 512, 2);
            let out = run.process(&[x.clone(), x.clone()], &[512], &[]);
            assert!(out.iter().flatten().all(|v| v.is_finite()));
            let energy: f32 = out[0].iter().map(|v| v * v).sum();
            assert!(
                energy > 0.1 * x.iter().map(|v| v * v).sum::<f32>(),
                "{id} at {rate}"
            );
            run.stop(&mut plugin);
        }
    }
}

/// A universal perturbation file (WAV + sidecar) as `advox universal` writes it.
fn universal_file(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("universal.wav");
    let mut rng = advox::rng::Rng::new(11);
    let delta: Vec<f32> = (0..12_345).map(|_| rng.symmetric(0.05)).collect();
    advox::audio::write_wav(&path, &delta, 16_000, advox::audio::WavFormat::Float32, &[]).unwrap();
    let sidecar = serde_json::json!({
        "format": "advox-universal", "version": 1, "sample_rate": 16000,
        "length": delta.len(), "mode": "additive", "linf": 0.05
    });
    std::fs::write(path.with_extension("json"), sidecar.to_string()).unwrap();
    path
}

/// nice-plug's CLAP state: a little-endian u64 length, then the JSON.
fn state_json(state: &[u8]) -> serde_json::Value {
    assert!(state.len() >= 8, "state too short");
    let len = u64::from_le_bytes(state[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&state[8..8 + len]).expect("nice-plug state is JSON")
}

fn json_state(v: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(v).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out
}

/// The state with Cloak's perturbation path replaced.
fn with_path(state: &[u8], path: &str) -> Vec<u8> {
    let mut v = state_json(state);
    v["fields"]["perturbation-path"] =
        serde_json::Value::String(serde_json::to_string(path).unwrap());
    json_state(&v)
}

/// Cloak's persisted status string.
fn status(plugin: &mut clack_host::prelude::PluginInstance<TestHost>) -> String {
    let v = state_json(&save_state(plugin));
    serde_json::from_str(v["fields"]["perturbation-status"].as_str().unwrap()).unwrap()
}

fn wait_for_status(
    plugin: &mut clack_host::prelude::PluginInstance<TestHost>,
    want: &str,
) -> String {
    for _ in 0..500 {
        let s = status(plugin);
        if s.contains(want) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("status never said {want:?}: {}", status(plugin));
}

/// Per-frame noise-to-mask ratio (dB) of `delta` against the whole-file threshold of `x`.
fn worst_frame_nmr_db(x: &[f32], delta: &[f32], rate: f32) -> f32 {
    use advox::masking::{MaskingConfig, MaskingThreshold, Normalization};
    let n = advox::stream::frame_size_for(rate);
    let m = MaskingThreshold::compute(
        x,
        MaskingConfig {
            sample_rate: rate,
            n_fft: n,
            hop: n / 2,
            normalization: Normalization::full_scale(),
        },
    )
    .unwrap();
    let p = m.perturbation_power(delta).unwrap();
    let bins = m.bins();
    let bin_hz = rate / n as f32;
    (0..m.frames())
        .map(|t| {
            let ks: Vec<usize> = (1..bins - 1)
                .filter(|&k| (100.0..=8_000.0).contains(&(k as f32 * bin_hz)))
                .collect();
            let r: f64 = ks
                .iter()
                .map(|&k| {
                    (p[t * bins + k] / advox::masking::db_to_power(m.theta_db()[t * bins + k]))
                        as f64
                })
                .sum::<f64>()
                / ks.len() as f64;
            10.0 * r.log10() as f32
        })
        .fold(f32::NEG_INFINITY, f32::max)
}

#[test]
fn cloak_universal_mode_adds_the_shaped_perturbation_under_the_threshold() {
    let entry = entry();
    let mut plugin = instance(&entry, CLOAK);
    let dir = std::env::temp_dir().join(format!("advox-cloak-universal-{}", std::process::id()));
    let file = universal_file(&dir);
    let state = with_path(&save_state(&mut plugin), file.to_str().unwrap());
    load_state(&mut plugin, &state).unwrap();
    let (mode, margin) = (
        param_id(&mut plugin, "Mode"),
        param_id(&mut plugin, "Margin"),
    );
    let rate = 48_000u32;
    let x = speech("open_the_front_door.wav", rate);
    let lat = 1536;
    let mut input = x.clone();
    input.extend(std::iter::repeat_n(0.0, lat));
    let mut run = start(&mut plugin, rate as f64, 8192, 2);
    assert_eq!(latency(&mut plugin), lat as u32);
    wait_for_status(&mut plugin, "samples at 48000 Hz");
    // Mode 0 = universal; margin 10 dB of 0..40.
    let out = run.process(
        &[input.clone(), input.clone()],
        &[256, 1000, 37],
        &[(mode, 0.0), (margin, 0.25)],
    );
    run.stop(&mut plugin);
    // What the core computes offline with the same file and settings.
    let source = advox_plugin::source_loader::load_source(&file, rate as f32).unwrap();
    let settings = advox::stream::cloak::CloakSettings {
        mode: advox::stream::cloak::CloakMode::Universal,
        margin_db: 10.0,
        ..Default::default()
    };
    let offline =
        advox::stream::cloak::cloak_offline(&input, rate as f32, &settings, Some(&source), 0)
            .unwrap();
    for ch in &out {
        let diff = ch
            .iter()
            .zip(&offline)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "plugin and offline differ by {diff}");
    }
    let delta: Vec<f32> = (0..x.len()).map(|i| out[0][i + lat] - x[i]).collect();
    assert!(
        delta.iter().map(|d| d.abs()).fold(0.0, f32::max) > 1e-4,
        "nothing was added"
    );
    let worst = worst_frame_nmr_db(&x, &delta, rate as f32);
    assert!(
        worst <= -9.0,
        "a frame is {worst:.1} dB against the threshold (margin 10)"
    );
    // A missing file: pass-through, and the state says why.
    let state = with_path(
        &save_state(&mut plugin),
        dir.join("missing.wav").to_str().unwrap(),
    );
    load_state(&mut plugin, &state).unwrap();
    let mut run = start(&mut plugin, rate as f64, 512, 2);
    let why = wait_for_status(&mut plugin, "missing.wav");
    assert!(
        why.contains("No such file") || why.contains("not found"),
        "{why}"
    );
    let out = run.process(&[input.clone(), input.clone()], &[512], &[(mode, 0.0)]);
    run.stop(&mut plugin);
    for i in 0..x.len() {
        assert_eq!(out[0][i + lat], x[i]);
    }
    // A corrupt sidecar is refused the same way.
    std::fs::write(file.with_extension("json"), b"{\"format\":\"other\"}").unwrap();
    let state = with_path(&save_state(&mut plugin), file.to_str().unwrap());
    load_state(&mut plugin, &state).unwrap();
    let run = start(&mut plugin, rate as f64, 512, 2);
    let why = wait_for_status(&mut plugin, "sidecar");
    assert!(why.contains("universal.json"), "{why}");
    run.stop(&mut plugin);
}

#[test]
fn cloak_by_default_adds_the_builtin_mute_segment_at_every_window_start() {
    let entry = entry();
    let mut plugin = instance(&entry, CLOAK);
    let depth = param_id(&mut plugin, "Depth");
    let rate = 44_100u32;
    // 31 s: speech, then quiet noise, so the second window's start is in the recording.
    let mut x = speech("open_the_front_door.wav", rate);
    let mut rng = advox::rng::Rng::new(3);
    x.extend((x.len()..31 * rate as usize).map(|_| rng.symmetric(1e-3)));
    let mut run = start(&mut plugin, rate as f64, 8192, 2);
    let lat = latency(&mut plugin) as usize;
    // The default mode (the mute segment; no Mode sent), depth 100 %.
    let out = run.process(&[x.clone(), x.clone()], &[8192, 517], &[(depth, 1.0)]);
    run.stop(&mut plugin);
    let segment = advox::stream::mute_segment::builtin_at_rate(rate).unwrap();
    let window = 30 * rate as usize;
    for ch in &out {
        let added = |i: usize| ch[i + lat] - x[i];
        for start in [0, window] {
            for (k, s) in segment.iter().enumerate() {
                assert!((added(start + k) - s).abs() < 1e-6, "sample {}", start + k);
            }
        }
        // Nothing between the windows' starts, and the delayed input bit for bit there.
        for i in segment.len()..window {
            assert_eq!(ch[i + lat].to_bits(), x[i].to_bits(), "sample {i}");
        }
    }
    // What the core computes offline with the same settings.
    let settings = advox::stream::cloak::CloakSettings {
        mode: advox::stream::cloak::CloakMode::MuteSegment,
        ..Default::default()
    };
    let offline =
        advox::stream::cloak::cloak_offline(&x, rate as f32, &settings, Some(&segment), 0).unwrap();
    assert_eq!(out[0], offline);
}

#[test]
fn cloak_bypass_and_depth_zero_are_bit_exact_and_latency_matches_an_impulse() {
    let entry = entry();
    let mut plugin = instance(&entry, CLOAK);
    let (depth, bypass) = (
        param_id(&mut plugin, "Depth"),
        param_id(&mut plugin, "Bypass"),
    );
    for rate in [44_100u32, 48_000, 88_200, 96_000] {
        let x = speech("play_some_music.wav", rate);
        for params in [vec![(depth, 0.0)], vec![(bypass, 1.0)]] {
            let mut run = start(&mut plugin, rate as f64, 4096, 2);
            let lat = latency(&mut plugin) as usize;
            assert_eq!(lat, advox::stream::frame_size_for(rate as f32) * 3 / 2);
            let out = run.process(&[x.clone(), x.clone()], &[4096, 1, 333], &params);
            run.stop(&mut plugin);
            for ch in &out {
                assert!(ch[..lat].iter().all(|v| *v == 0.0));
                for i in 0..x.len() - lat {
                    assert_eq!(
                        ch[i + lat].to_bits(),
                        x[i].to_bits(),
                        "{rate} Hz {params:?} sample {i}"
                    );
                }
            }
        }
        // An impulse comes out exactly `latency` samples later.
        let mut impulse = vec![0.0f32; 8192];
        impulse[100] = 0.9;
        let mut run = start(&mut plugin, rate as f64, 512, 2);
        let lat = latency(&mut plugin) as usize;
        let out = run.process(&[impulse.clone(), impulse.clone()], &[512], &[(depth, 0.0)]);
        run.stop(&mut plugin);
        let peak = (0..out[0].len()).max_by(|&a, &b| out[0][a].abs().total_cmp(&out[0][b].abs()));
        assert_eq!(peak, Some(100 + lat));
    }
}

#[test]
fn odd_block_sizes_nan_bursts_and_state_round_trips() {
    let entry = entry();
    let mut plugin = instance(&entry, CLOAK);
    let ids = params(&mut plugin);
    let margin = param_id(&mut plugin, "Margin");
    let rate = 44_100u32;
    let mut x = speech("call_my_mother.wav", rate);
    for v in &mut x[20_000..20_500] {
        *v = f32::NAN;
    }
    x[30_000] = f32::INFINITY;
    for blocks in [
        vec![1usize],
        vec![17],
        vec![512],
        vec![8192],
        vec![1, 8192, 17, 512],
    ] {
        let mut run = start(&mut plugin, rate as f64, 8192, 2);
        let out = run.process(&[x.clone(), x.clone()], &blocks, &[]);
        run.stop(&mut plugin);
        assert!(out.iter().flatten().all(|v| v.is_finite()), "{blocks:?}");
        // After the burst the output is speech again (not silence, not stuck).
        assert!(out[0][40_000..].iter().any(|v| v.abs() > 1e-3));
    }
    // State: set values, save, load into a fresh instance, same values and file path.
    let dir = std::env::temp_dir().join(format!("advox-cloak-state-{}", std::process::id()));
    let file = universal_file(&dir);
    let mut run = start(&mut plugin, rate as f64, 512, 2);
    run.process(&[vec![0.0; 512], vec![0.0; 512]], &[512], &[(margin, 0.5)]);
    run.stop(&mut plugin);
    let state = with_path(&save_state(&mut plugin), file.to_str().unwrap());
    let mut other = instance(&entry, CLOAK);
    load_state(&mut other, &state).unwrap();
    for (id, name) in &ids {
        assert_eq!(
            param_value(&mut other, *id),
            param_value(&mut plugin, *id),
            "{name}"
        );
    }
    // CLAP values are normalised: 20 dB of 0..40.
    assert!((param_value(&mut other, margin) - 0.5).abs() < 1e-6);
    let saved = state_json(&save_state(&mut other));
    assert_eq!(
        saved["fields"]["perturbation-path"].as_str().unwrap(),
        serde_json::to_string(file.to_str().unwrap()).unwrap()
    );
    let run = start(&mut other, rate as f64, 512, 2);
    wait_for_status(&mut other, "samples at 44100 Hz");
    run.stop(&mut other);
    // Random bytes are refused without a crash, and the plugin keeps working.
    let mut rng = advox::rng::Rng::new(3);
    for len in [0usize, 1, 7, 100, 4096] {
        let junk: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let _ = load_state(&mut other, &junk);
    }
    let mut run = start(&mut other, rate as f64, 512, 2);
    let out = run.process(&[x[..4096].to_vec(), x[..4096].to_vec()], &[512], &[]);
    run.stop(&mut other);
    assert!(out.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn cloak_changes_the_transcript_and_sentinel_flags_cloaked_speech_only() {
    let entry = entry();
    let rate = 48_000u32;
    let x = speech("lock_the_back_door.wav", rate);
    let mut cloak = instance(&entry, CLOAK);
    let (mode, depth, margin) = (
        param_id(&mut cloak, "Mode"),
        param_id(&mut cloak, "Depth"),
        param_id(&mut cloak, "Margin"),
    );
    let mut run = start(&mut cloak, rate as f64, 512, 2);
    let lat = latency(&mut cloak) as usize;
    let mut padded = x.clone();
    padded.extend(std::iter::repeat_n(0.0, lat));
    // Masked noise (Mode 1; the default is the mute segment) 6 dB under the threshold.
    let cloaked = run.process(
        &[padded.clone(), padded.clone()],
        &[512],
        &[(mode, 1.0), (margin, 6.0 / 40.0)],
    );
    run.stop(&mut cloak);
    // The same samples as the core's processing (and so as `advox live`).
    let mut expected = vec![padded.clone(), padded.clone()];
    let mut core = advox::stream::processors::CloakProcessor::new(rate as f32, 2).unwrap();
    let settings = advox::stream::cloak::CloakSettings {
        mode: advox::stream::cloak::CloakMode::MaskedNoise,
        margin_db: 6.0,
        ..Default::default()
    };
    let (l, r) = expected.split_at_mut(1);
    core.process(&mut [&mut l[0][..], &mut r[0][..]], &settings, None);
    for (a, b) in cloaked.iter().zip(&expected) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-6, "plugin and core differ by {diff}");
    }
    let mut run = start(&mut cloak, rate as f64, 512, 2);
    let dry = run.process(&[padded.clone(), padded.clone()], &[512], &[(depth, 0.0)]);
    run.stop(&mut cloak);
    let model = advox::model::LoadedModel::load(
        &advox::model::provision::model_dir("tiny.en"),
        &candle_core::Device::Cpu,
    )
    .expect("tiny.en (run `advox model fetch`)");
    let decode = advox::model::DecodeOptions {
        beam_size: 1,
        ..Default::default()
    };
    let hear = |y: &[f32]| {
        let y16 = advox::audio::resample(&y[lat..], rate, 16_000).unwrap();
        advox::transcribe::transcribe(&model, &y16, &decode)
            .unwrap()
            .text
    };
    let (clean, attacked) = (hear(&dry[0]), hear(&cloaked[0]));
    let wer = advox::metrics::wer(&clean, &attacked);
    assert!(
        wer > 0.0,
        "the transcript did not change: {clean:?} vs {attacked:?}"
    );
    // Sentinel: a detection note for the cloaked audio, none for the clean audio.
    let mut sentinel = instance(&entry, SENTINEL);
    let model_check = param_id(&mut sentinel, "Model check");
    let mut notes = Vec::new();
    for signal in [&dry[0], &cloaked[0]] {
        let mut run = start(&mut sentinel, rate as f64, 512, 2);
        let out = run.process(
            &[signal.clone(), signal.clone()],
            &[512],
            &[(model_check, 0.0)],
        );
        assert_eq!(&out[0], signal, "Sentinel passes audio through unchanged");
        notes.push(run.notes.clone());
        run.stop(&mut sentinel);
    }
    assert!(
        notes[0].iter().all(|n| !n.on),
        "clean speech flagged: {:?}",
        notes[0]
    );
    assert!(notes[1].iter().any(|n| n.on), "cloaked speech not flagged");
    // With the gate on, the output is silent from the detection on (until it ends).
    let gate = param_id(&mut sentinel, "Gate");
    let mut run = start(&mut sentinel, rate as f64, 512, 2);
    let signal = &cloaked[0];
    let out = run.process(
        &[signal.clone(), signal.clone()],
        &[512],
        &[(model_check, 0.0), (gate, 1.0)],
    );
    let on = run.notes.iter().find(|n| n.on).expect("a detection").time as usize;
    let off = run
        .notes
        .iter()
        .find(|n| !n.on && n.time as usize > on)
        .map_or(signal.len(), |n| n.time as usize);
    run.stop(&mut sentinel);
    assert!(
        out[0][on..off].iter().all(|v| *v == 0.0),
        "gate open while detected"
    );
    assert_eq!(
        out[0][..on],
        signal[..on],
        "gate closed before the detection"
    );
}

/// Cloak's model mode in a host's offline render (CLAP render extension), as a user bounces a
/// voice track: choosing the mode asks for a restart; activated in it, Cloak reports two windows
/// of latency and waits for its worker, and the bounce keeps faster-whisper from the words of a
/// held-out voice-assistant request while staying quiet. About 30 s on two cores.
#[test]
fn cloak_model_mode_in_an_offline_render_keeps_faster_whisper_from_the_words() {
    let entry = entry();
    let rate = 48_000u32;
    let x = corpus("rhino/test_within_context.wav", rate);
    let mut cloak = instance(&entry, CLOAK);
    render_offline(&mut cloak);
    let (mode, window, margin) = (
        param_id(&mut cloak, "Mode"),
        param_id(&mut cloak, "Model window"),
        param_id(&mut cloak, "Margin"),
    );
    // The default mode's latency (the mute segment's, the STFT's) until the host restarts in
    // the model mode (10-s windows).
    let mut run = start(&mut cloak, rate as f64, 512, 2);
    let short = latency(&mut cloak);
    let block = vec![vec![0.0f32; 512]; 2];
    run.process(
        &block,
        &[512],
        // A stepped parameter's CLAP value is its step (Mode: 2 = Model).
        &[
            (mode, 2.0),
            (window, normalised(10.0, 5.0, 30.0)),
            (margin, 0.0),
        ],
    );
    run.stop(&mut cloak);
    let mut run = start(&mut cloak, rate as f64, 512, 2);
    let lat = latency(&mut cloak) as usize;
    assert_eq!(lat, 960_000, "was {short}");
    let mut padded = x.clone();
    padded.extend(std::iter::repeat_n(0.0, lat));
    let out = run.process(&[padded.clone(), padded.clone()], &[512], &[]);
    run.stop(&mut cloak);
    assert_eq!(out[0], out[1]);
    let cloaked = &out[0][lat..];
    let delta: Vec<f32> = cloaked.iter().zip(&x).map(|(a, b)| a - b).collect();
    let snr = advox::metrics::snr_db(&x, &delta);
    assert!(snr > 20.0 && snr.is_finite(), "SNR {snr} dB");
    let dir = std::env::temp_dir().join(format!("advox-plugin-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (clean, bounced) = (dir.join("clean.wav"), dir.join("bounced.wav"));
    for (path, s) in [(&clean, &x[..]), (&bounced, cloaked)] {
        advox::audio::write_wav(path, s, rate, advox::audio::WavFormat::Pcm16, &[]).unwrap();
    }
    let heard = advox::verify::Verifier::FasterWhisper
        .transcribe_files(
            &advox::model::provision::model_dir("tiny.en"),
            &[clean, bounced],
            None,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(heard[1].len(), 4);
    for (c, k) in heard[0].iter().zip(&heard[1]) {
        let (c, k) = (c.text.as_ref().unwrap(), k.text.as_ref().unwrap());
        let wer = advox::metrics::wer(c, k);
        assert!(wer >= 0.5, "{c:?} -> {k:?} (WER {wer})");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Sentinel's persisted model-check fields set to `detector` and `calibration` (empty: none).
fn with_model_check(state: &[u8], detector: &str, calibration: &str) -> Vec<u8> {
    let mut v = state_json(state);
    for (field, value) in [
        ("model-check-detector", detector),
        ("model-check-calibration", calibration),
    ] {
        v["fields"][field] = serde_json::Value::String(serde_json::to_string(value).unwrap());
    }
    json_state(&v)
}

fn model_check_status(plugin: &mut clack_host::prelude::PluginInstance<TestHost>) -> String {
    let v = state_json(&save_state(plugin));
    serde_json::from_str(v["fields"]["model-check-status"].as_str().unwrap()).unwrap()
}

#[test]
fn sentinel_model_check_runs_the_detector_and_calibration_its_state_names() {
    use advox::formats::calibration::{Calibration, DetectorThreshold};
    let dir = std::env::temp_dir().join(format!("advox-sentinel-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An entropy calibration whose threshold any speech passes many times over.
    let cal = dir.join("entropy.json");
    let calibration = Calibration::new(
        0.05,
        std::path::Path::new("clean.csv"),
        2,
        Some("tiny.en".into()),
        1,
        vec![DetectorThreshold {
            name: "entropy".into(),
            threshold: 1e-9,
            clean_min: 0.0,
            clean_max: 1e-9,
        }],
    );
    std::fs::write(&cal, serde_json::to_string(&calibration).unwrap()).unwrap();

    let entry = entry();
    let mut plugin = instance(&entry, SENTINEL);
    let rate = 48_000u32;
    // The default: transform consistency.
    let run = start(&mut plugin, rate as f64, 4_800, 2);
    assert_eq!(
        model_check_status(&mut plugin),
        "model check: consistency:lowpass-4000"
    );
    run.stop(&mut plugin);
    // Entropy is not scored on 0..1: without a calibration the check stays off, and says why.
    let state = with_model_check(&save_state(&mut plugin), "entropy", "");
    load_state(&mut plugin, &state).unwrap();
    let run = start(&mut plugin, rate as f64, 4_800, 2);
    let status = model_check_status(&mut plugin);
    assert!(
        status.starts_with("model check off:") && status.contains("calibration"),
        "{status}"
    );
    run.stop(&mut plugin);
    // With the calibration, entropy scaled by its threshold flags real speech by itself (the
    // frame score alone does not: the first seconds pass unflagged).
    let state = with_model_check(&save_state(&mut plugin), "entropy", cal.to_str().unwrap());
    load_state(&mut plugin, &state).unwrap();
    let mut run = start(&mut plugin, rate as f64, 4_800, 2);
    let status = model_check_status(&mut plugin);
    assert!(
        status.contains("entropy") && status.contains("threshold"),
        "{status}"
    );
    let x = corpus("ljspeech/LJ001-0008.wav", rate);
    let input = vec![x.clone(), x.clone()];
    run.process(&input, &[4_800], &[]);
    assert!(
        run.notes.iter().all(|n| !n.on),
        "flagged before any model check"
    );
    let block: Vec<Vec<f32>> = vec![x[..4_800].to_vec(), x[..4_800].to_vec()];
    for _ in 0..600 {
        if run.notes.iter().any(|n| n.on) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        run.process(&block, &[4_800], &[]);
    }
    assert!(
        run.notes.iter().any(|n| n.on),
        "the entropy check never flagged"
    );
    run.stop(&mut plugin);
    std::fs::remove_dir_all(&dir).unwrap();
}
