//! Step rules: how a gradient becomes a step direction, in the waveform or the STFT domain.

use crate::dsp::stft::Spectrogram;
use crate::dsp::{hann_periodic, Stft};
use crate::perturb::Domain;
use crate::Result;
use realfft::num_complex::Complex32;

/// How a step direction is formed from the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The sign of the gradient (FGSM, L∞ PGD); the step's largest sample equals the step size.
    Sign,
    /// The normalised gradient (L2 PGD); the step's L2 norm equals the step size.
    L2,
    /// Adam's bias-corrected moment ratio; the step's largest sample equals the step size.
    Adam,
    /// RMSProp (Hinton's lecture 6e; PyTorch's defaults ρ = 0.99, ε = 1e-8): the gradient over
    /// the root of its running mean square; the step's largest sample equals the step size.
    RmsProp,
    /// Stochastic gradient descent with heavy-ball momentum (μ = 0.9): the running sum
    /// `m ← μ·m + g`; the step's largest sample equals the step size.
    Momentum,
}

impl Rule {
    /// Every rule's name, as `--rule` takes it.
    pub const NAMES: [&'static str; 5] = ["adam", "sign", "l2", "rmsprop", "momentum"];
}

impl std::str::FromStr for Rule {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "adam" => Rule::Adam,
            "sign" => Rule::Sign,
            "l2" => Rule::L2,
            "rmsprop" => Rule::RmsProp,
            "momentum" => Rule::Momentum,
            other => return Err(crate::error::unknown_name("rule", other, &Self::NAMES)),
        })
    }
}

/// The space steps are formed in, and the map between it and the waveform.
pub struct StepSpace {
    stft: Option<Stft>,
    len: usize,
    frames: usize,
}

impl StepSpace {
    /// The space of `domain` for signals of `len` samples.
    pub fn new(domain: Domain, len: usize) -> Result<Self> {
        match domain {
            Domain::Waveform => Ok(StepSpace {
                stft: None,
                len,
                frames: 0,
            }),
            Domain::Stft { n_fft, hop } => {
                let stft = Stft::new(n_fft, hop, hann_periodic(n_fft))?;
                let frames = stft.frames_for(len);
                Ok(StepSpace {
                    stft: Some(stft),
                    len,
                    frames,
                })
            }
            Domain::Phase { .. } => Err(crate::Error::InvalidArgument(
                "the phase domain is for FGSM and PGD (--attack fgsm|pgd) only".into(),
            )),
        }
    }

    /// Gradient w.r.t. the waveform -> gradient w.r.t. the step parameters.
    pub(crate) fn to_params(&self, grad: &[f32]) -> Vec<f32> {
        match &self.stft {
            None => grad.to_vec(),
            Some(stft) => stft
                .istft_adjoint(grad, self.frames)
                .data
                .iter()
                .flat_map(|c| [c.re, c.im])
                .collect(),
        }
    }

    /// Step parameters -> waveform.
    pub(crate) fn to_wave(&self, params: &[f32]) -> Result<Vec<f32>> {
        match &self.stft {
            None => Ok(params.to_vec()),
            Some(stft) => {
                let data = params
                    .chunks_exact(2)
                    .map(|c| Complex32::new(c[0], c[1]))
                    .collect();
                let spec = Spectrogram {
                    frames: self.frames,
                    bins: stft.bins(),
                    data,
                };
                stft.istft(&spec, self.len)
            }
        }
    }
}

/// A step rule with its state (Adam's moments, RMSProp's mean square, the momentum).
pub struct Stepper {
    rule: Rule,
    space: StepSpace,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Stepper {
    /// A fresh stepper.
    pub fn new(rule: Rule, space: StepSpace) -> Self {
        Stepper {
            rule,
            space,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// The waveform step (to subtract, times the step size) for waveform gradient `grad`,
    /// normalised to unit L∞ (sign, Adam) or unit L2 (L2). Zero gradient gives a zero step.
    pub fn direction(&mut self, grad: &[f32]) -> Result<Vec<f32>> {
        let g = self.space.to_params(grad);
        let d: Vec<f32> = match self.rule {
            Rule::Sign => g
                .iter()
                .map(|x| {
                    if *x > 0.0 {
                        1.0
                    } else if *x < 0.0 {
                        -1.0
                    } else {
                        0.0
                    }
                })
                .collect(),
            Rule::L2 => g,
            Rule::Adam => {
                const B1: f32 = 0.9;
                const B2: f32 = 0.999;
                if self.m.len() != g.len() {
                    self.m = vec![0.0; g.len()];
                    self.v = vec![0.0; g.len()];
                    self.t = 0;
                }
                self.t += 1;
                let c1 = 1.0 - B1.powi(self.t);
                let c2 = 1.0 - B2.powi(self.t);
                g.iter()
                    .zip(self.m.iter_mut().zip(self.v.iter_mut()))
                    .map(|(gi, (m, v))| {
                        *m = B1 * *m + (1.0 - B1) * gi;
                        *v = B2 * *v + (1.0 - B2) * gi * gi;
                        (*m / c1) / ((*v / c2).sqrt() + 1e-12)
                    })
                    .collect()
            }
            Rule::RmsProp => {
                const RHO: f32 = 0.99;
                if self.v.len() != g.len() {
                    self.v = vec![0.0; g.len()];
                }
                g.iter()
                    .zip(self.v.iter_mut())
                    .map(|(gi, v)| {
                        *v = RHO * *v + (1.0 - RHO) * gi * gi;
                        gi / (v.sqrt() + 1e-8)
                    })
                    .collect()
            }
            Rule::Momentum => {
                const MU: f32 = 0.9;
                if self.m.len() != g.len() {
                    self.m = vec![0.0; g.len()];
                }
                g.iter()
                    .zip(self.m.iter_mut())
                    .map(|(gi, m)| {
                        *m = MU * *m + gi;
                        *m
                    })
                    .collect()
            }
        };
        let mut wave = self.space.to_wave(&d)?;
        let norm = match self.rule {
            Rule::L2 => crate::metrics::l2(&wave),
            Rule::Sign | Rule::Adam | Rule::RmsProp | Rule::Momentum => crate::metrics::linf(&wave),
        };
        if norm > 0.0 {
            let s = (1.0 / norm) as f32;
            wave.iter_mut().for_each(|w| *w *= s);
        }
        Ok(wave)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn names_parse_to_rules_schedules_and_domains() {
        use crate::attack::Schedule;
        for name in Rule::NAMES {
            assert!(name.parse::<Rule>().is_ok(), "{name}");
        }
        assert_eq!("rmsprop".parse::<Rule>().unwrap(), Rule::RmsProp);
        assert_eq!("cosine".parse::<Schedule>().unwrap(), Schedule::Cosine);
        assert_eq!("stft".parse::<Domain>().unwrap(), Domain::default());
        assert!(matches!(
            "phase".parse::<Domain>().unwrap(),
            Domain::Phase { .. }
        ));
        let err = "newton".parse::<Rule>().unwrap_err().to_string();
        assert!(
            err.contains("unknown rule \"newton\" (one of adam, sign"),
            "{err}"
        );
    }

    use super::*;

    fn waveform(rule: Rule) -> Stepper {
        Stepper::new(rule, StepSpace::new(Domain::Waveform, 3).unwrap())
    }

    #[test]
    fn every_rule_gives_a_unit_step_that_descends() {
        for rule in [
            Rule::Sign,
            Rule::L2,
            Rule::Adam,
            Rule::RmsProp,
            Rule::Momentum,
        ] {
            let g = [0.5f32, -2.0, 0.0];
            let d = waveform(rule).direction(&g).unwrap();
            let dot: f32 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
            assert!(dot > 0.0, "{rule:?}: {d:?}");
            let norm = match rule {
                Rule::L2 => crate::metrics::l2(&d),
                _ => crate::metrics::linf(&d),
            };
            assert!((norm - 1.0).abs() < 1e-5, "{rule:?}: {d:?}");
            assert_eq!(d[2], 0.0, "{rule:?}");
        }
    }

    #[test]
    fn momentum_keeps_going_where_the_gradient_vanishes_and_rmsprop_evens_scales() {
        let mut m = waveform(Rule::Momentum);
        m.direction(&[1.0, 0.0, 0.0]).unwrap();
        let d = m.direction(&[0.0, 1.0, 0.0]).unwrap();
        // m = (0.9, 1, 0): the first coordinate still moves, at 0.9 of the second's pace.
        assert!(
            (d[0] - 0.9).abs() < 1e-6 && (d[1] - 1.0).abs() < 1e-6,
            "{d:?}"
        );
        // RMSProp's first step divides by |g|·sqrt(1 − ρ): equal steps for unequal gradients.
        let d = waveform(Rule::RmsProp)
            .direction(&[1e-3, -5.0, 0.0])
            .unwrap();
        assert!(
            (d[0] - 1.0).abs() < 1e-3 && (d[1] + 1.0).abs() < 1e-3,
            "{d:?}"
        );
    }
}
