//! The frame-by-frame masking threshold allocates nothing after construction (the plugin calls
//! it on the audio thread). Counted with a global allocator that tallies the current thread's
//! allocations while a flag is set.

use advox::masking::{MaskingAnalyzer, Normalization};
mod counting_alloc;

use counting_alloc::counted;

#[test]
fn frame_threshold_does_not_allocate() {
    for (rate, n_fft) in [(16_000.0f32, 2048usize), (48_000.0, 1024), (44_100.0, 2048)] {
        let mut analyzer = MaskingAnalyzer::new(rate, n_fft).unwrap();
        let mut theta = vec![0.0f32; analyzer.bins()];
        // Tones, chords and noise give many maskers (worst case for the masker list).
        let frames: Vec<Vec<f32>> = (0..8)
            .map(|j| {
                (0..n_fft)
                    .map(|i| {
                        let t = i as f32 / rate;
                        (1..40)
                            .map(|h| {
                                ((2.0 * std::f32::consts::PI * 97.0 * (h + j) as f32 * t).sin())
                                    / h as f32
                            })
                            .sum::<f32>()
                            * 0.05
                            + ((i * 7919 + j) % 101) as f32 * 1e-4
                    })
                    .collect()
            })
            .collect();
        let (sum, allocations) = counted(|| {
            let mut sum = 0.0f32;
            for frame in &frames {
                for norm in [Normalization::Frame, Normalization::full_scale()] {
                    let psd_max = analyzer.frame_threshold(frame, norm, &mut theta).unwrap();
                    sum += psd_max + theta[theta.len() / 3];
                }
            }
            sum
        });
        assert!(sum.is_finite());
        assert_eq!(
            allocations, 0,
            "{rate} Hz / {n_fft}: frame_threshold allocated"
        );
    }
}
