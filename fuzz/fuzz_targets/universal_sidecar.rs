//! The universal-perturbation sidecar check on arbitrary text and sample counts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let samples = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let Ok(text) = std::str::from_utf8(&data[4..]) else {
        return;
    };
    if let Ok(sidecar) = advox::formats::UniversalSidecar::parse(text, samples) {
        assert_eq!(sidecar.length, samples);
        if let Some(l) = sidecar.linf {
            assert!(l.is_finite() && l >= 0.0, "linf {l}");
        }
    }
});
