//! Bounds for query-based attacks. A black-box search proposes candidates in its own space
//! (tiles, mutations); [`Bounded`] projects every candidate onto the user's constraints
//! relative to the clean input (SNR, L2, L∞, masking threshold, band, speech-only) before the
//! recogniser hears it, so what was queried is always what [`Bounded::apply`] writes: a
//! success found under the bound is a success of the written example.

use super::quantized_sum_within;
use crate::perturb::{BandLimiter, Constraints};
use crate::recognizer::Recognizer;
use crate::Result;

/// A recogniser behind the constraints: every query hears `x + P(signal − x)`, quantised.
pub struct Bounded<'a> {
    inner: &'a mut dyn Recognizer,
    x: &'a [f32],
    constraints: Constraints,
    band: Option<BandLimiter>,
}

impl<'a> Bounded<'a> {
    /// Wrap `inner` for the clean input `x` (16 kHz) under `constraints`.
    pub fn new(
        inner: &'a mut dyn Recognizer,
        x: &'a [f32],
        constraints: Constraints,
    ) -> Result<Self> {
        constraints.validate(x.len())?;
        let band = match constraints.band_hz {
            Some((lo, hi)) => Some(BandLimiter::new(lo, hi, crate::audio::SAMPLE_RATE)?),
            None => None,
        };
        Ok(Bounded {
            inner,
            x,
            constraints,
            band,
        })
    }

    /// The signal the recogniser hears for a proposed `signal`: its change from the clean
    /// input projected onto the constraints, clipped and quantised as a 16-bit WAV stores it
    /// (idempotent up to the projection's own tolerance).
    pub fn apply(&self, signal: &[f32]) -> Result<Vec<f32>> {
        let mut delta: Vec<f32> = signal.iter().zip(self.x).map(|(s, x)| s - x).collect();
        self.constraints
            .project(&mut delta, self.x, self.band.as_ref())?;
        Ok(quantized_sum_within(self.x, &delta, self.constraints.linf))
    }

    /// `x + α·δ` under the constraints (the shrinking search's candidates).
    pub fn scaled(&self, delta: &[f32], alpha: f32) -> Result<Vec<f32>> {
        let scaled: Vec<f32> = self
            .x
            .iter()
            .zip(delta)
            .map(|(x, d)| x + alpha * d)
            .collect();
        self.apply(&scaled)
    }

    /// Query the recogniser with a signal [`Bounded::apply`] already made (no second
    /// projection, so what is heard is exactly what will be written).
    pub fn hear(&mut self, heard: &[f32]) -> Result<String> {
        self.inner.transcribe(heard)
    }

    /// The clean input.
    pub fn clean(&self) -> &[f32] {
        self.x
    }
}

impl Recognizer for Bounded<'_> {
    fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
        let heard = self.apply(samples)?;
        self.inner.transcribe(&heard)
    }

    fn queries(&self) -> usize {
        self.inner.queries()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn score(&mut self, samples: &[f32]) -> Option<Result<f32>> {
        let heard = match self.apply(samples) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        self.inner.score(&heard)
    }

    fn has_scores(&self) -> bool {
        self.inner.has_scores()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo {
        heard: Vec<Vec<f32>>,
    }

    impl Recognizer for Echo {
        fn transcribe(&mut self, samples: &[f32]) -> Result<String> {
            self.heard.push(samples.to_vec());
            Ok(String::new())
        }
        fn queries(&self) -> usize {
            self.heard.len()
        }
        fn describe(&self) -> String {
            "echo".into()
        }
    }

    #[test]
    fn every_query_is_heard_inside_the_snr_bound_and_matches_apply() {
        let x: Vec<f32> = (0..4000).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        let loud: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        let mut echo = Echo { heard: Vec::new() };
        let constraints = Constraints {
            snr_db: Some(30.0),
            ..Default::default()
        };
        let mut bounded = Bounded::new(&mut echo, &x, constraints).unwrap();
        bounded.transcribe(&loud).unwrap();
        let written = bounded.apply(&loud).unwrap();
        drop(bounded);
        assert_eq!(echo.heard[0], written);
        let delta: Vec<f32> = written.iter().zip(&x).map(|(a, b)| a - b).collect();
        let snr = crate::metrics::snr_db(&x, &delta);
        assert!((29.9..31.0).contains(&snr), "SNR {snr}");
        // Already inside: unchanged but for quantisation.
        let mut echo = Echo { heard: Vec::new() };
        let bounded = Bounded::new(
            &mut echo,
            &x,
            Constraints {
                snr_db: Some(30.0),
                ..Default::default()
            },
        )
        .unwrap();
        let again = bounded.apply(&written).unwrap();
        assert_eq!(again, written);
    }
}
