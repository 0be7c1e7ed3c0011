//! Cloak, Sentinel and the monitor feed allocate nothing while processing (they run on the
//! audio thread). Counted with a global allocator that tallies the current thread's
//! allocations while a flag is set.

use advox::stream::cloak::{CloakChannel, CloakMode, CloakSettings};
use advox::stream::frame_size_for;
use advox::stream::sentinel::{SentinelAnalyzer, SentinelSettings};

mod counting_alloc;

use counting_alloc::counted;

#[test]
fn processing_does_not_allocate() {
    for rate in [44_100.0f32, 48_000.0, 96_000.0] {
        let n = frame_size_for(rate);
        let mut signal: Vec<f32> = (0..rate as usize / 2)
            .map(|i| {
                let t = i as f32 / rate;
                (1..30)
                    .map(|h| (std::f32::consts::TAU * 131.0 * h as f32 * t).sin() / h as f32)
                    .sum::<f32>()
                    * 0.1
                    + ((i * 7919) % 101) as f32 * 1e-4
            })
            .collect();
        signal[1000] = f32::NAN;
        let source: Vec<f32> = (0..20_000).map(|i| ((i * 31) % 17) as f32 * 1e-3).collect();
        let mut cloak = CloakChannel::new(rate, n, 1).unwrap();
        let meter = std::sync::Arc::new(advox::stream::band_meter::BandMeter::default());
        cloak.set_meter(Some(meter.clone()));
        let mut sentinel = SentinelAnalyzer::new(rate, n).unwrap();
        let sentinel_settings = SentinelSettings::default();
        let mut buffer = signal.clone();
        let (_, allocations) = counted(|| {
            for mode in [CloakMode::Universal, CloakMode::MaskedNoise] {
                let settings = CloakSettings {
                    mode,
                    ..Default::default()
                };
                for chunk in buffer.chunks_mut(333) {
                    cloak.process(chunk, &settings, Some(&source));
                    for &x in chunk.iter() {
                        sentinel.push(x, &sentinel_settings);
                    }
                }
                cloak.reset();
                sentinel.reset();
            }
        });
        assert_eq!(allocations, 0, "{rate} Hz: {allocations} allocations");
        assert!(meter.snapshot().frames > 0, "the meter was fed");
        assert!(sentinel.frames() == 0 && buffer.iter().all(|v| v.is_finite()));
    }
}
