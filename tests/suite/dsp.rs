//! STFT/ISTFT identity and the mel filterbank against OpenAI's.

use crate::common;

use advox::dsp::{hann_periodic, Stft};
use advox::mel::mel_filterbank;

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect()
}

#[test]
fn istft_inverts_stft_for_cola_pairs() {
    let x = noise(16_123, 7);
    for (n_fft, hop) in [(400, 100), (400, 200), (512, 128), (2048, 512), (1024, 256)] {
        let stft = Stft::new(n_fft, hop, hann_periodic(n_fft)).unwrap();
        let spec = stft.stft(&x);
        assert_eq!(spec.frames, stft.frames_for(x.len()));
        let y = stft.istft(&spec, x.len()).unwrap();
        let err = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-5, "n_fft {n_fft} hop {hop}: max error {err}");
    }
}

#[test]
fn stft_rejects_bad_parameters() {
    assert!(Stft::new(400, 0, hann_periodic(400)).is_err());
    assert!(Stft::new(400, 500, hann_periodic(400)).is_err());
    assert!(Stft::new(400, 100, hann_periodic(512)).is_err());
    assert!(Stft::new(401, 100, hann_periodic(401)).is_err());
}

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn filterbank_matches_openai_80_and_128() {
    for n_mels in [80, 128] {
        let reference =
            read_f32(&common::shared().join(format!("reference/mel_filters_{n_mels}x201.f32")));
        let ours = mel_filterbank(16000, 400, n_mels);
        assert_eq!(ours.len(), reference.len());
        let err = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-6, "{n_mels} mels: max error {err}");
    }
}

#[test]
fn istft_adjoint_satisfies_the_inner_product_identity() {
    use realfft::num_complex::Complex32;
    let stft = Stft::new(512, 128, hann_periodic(512)).unwrap();
    let len = 5_000;
    let frames = stft.frames_for(len);
    let re = noise(frames * stft.bins(), 3);
    let im = noise(frames * stft.bins(), 4);
    let data: Vec<Complex32> = re
        .iter()
        .zip(&im)
        .map(|(r, i)| Complex32::new(*r, *i))
        .collect();
    let z = advox::dsp::stft::Spectrogram {
        frames,
        bins: stft.bins(),
        data,
    };
    let g = noise(len, 5);
    let x = stft.istft(&z, len).unwrap();
    let lhs: f64 = x
        .iter()
        .zip(&g)
        .map(|(a, b)| (*a as f64) * (*b as f64))
        .sum();
    let adj = stft.istft_adjoint(&g, frames);
    let rhs: f64 = z
        .data
        .iter()
        .zip(&adj.data)
        .map(|(a, b)| (a.re * b.re + a.im * b.im) as f64)
        .sum();
    assert!(
        (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn stft_adjoint_satisfies_the_inner_product_identity() {
    use realfft::num_complex::Complex32;
    for (n_fft, hop) in [(512, 128), (2048, 512), (400, 160)] {
        let stft = Stft::new(n_fft, hop, hann_periodic(n_fft)).unwrap();
        let len = 7_001;
        let frames = stft.frames_for(len);
        let re = noise(frames * stft.bins(), 6);
        let im = noise(frames * stft.bins(), 7);
        let g = advox::dsp::stft::Spectrogram {
            frames,
            bins: stft.bins(),
            data: re
                .iter()
                .zip(&im)
                .map(|(r, i)| Complex32::new(*r, *i))
                .collect(),
        };
        let x = noise(len, 8);
        let lhs: f64 = stft
            .stft(&x)
            .data
            .iter()
            .zip(&g.data)
            .map(|(a, b)| (a.re * b.re + a.im * b.im) as f64)
            .sum();
        let rhs: f64 = x
            .iter()
            .zip(stft.stft_adjoint(&g, len).unwrap())
            .map(|(a, b)| (*a as f64) * (b as f64))
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{n_fft}/{hop}: {lhs} vs {rhs}"
        );
    }
}
