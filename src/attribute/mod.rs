//! Attack attribution (Nicholson & Emanuele 2023, "reverse-engineering the optimization
//! algorithm responsible for generating the adversarial example"): which algorithm most likely
//! made a recording, from features of the perturbation it left and of the model's loss
//! landscape around it ([`features`]), by a classifier ([`classifier`]) trained on examples
//! advox makes itself ([`examples`]). A default classifier ships in `models/attribution.json`
//! (trained by `advox attribute train`, see the README).

pub mod classifier;
pub mod dataset;
pub mod examples;
pub mod features;

use crate::model::{DecodeOptions, LoadedModel};
use crate::{Error, Result};
use classifier::Classifier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shipped classifier's JSON.
const BUILTIN: &str = include_str!("../../models/attribution.json");

/// What made an example: an algorithm, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// No attack.
    Clean,
    /// FGSM.
    Fgsm,
    /// PGD.
    Pgd,
    /// Carlini–Wagner L2.
    Cw,
    /// DeepFool.
    Deepfool,
    /// JSMA.
    Jsma,
    /// The imperceptible (masking) attack.
    Imperceptible,
    /// An additive universal perturbation.
    Universal,
    /// The genetic algorithm (black box).
    Ga,
    /// NES (black box).
    Nes,
}

impl Class {
    /// Every class, in the order classifiers list them.
    pub const ALL: [Class; 10] = [
        Class::Clean,
        Class::Fgsm,
        Class::Pgd,
        Class::Cw,
        Class::Deepfool,
        Class::Jsma,
        Class::Imperceptible,
        Class::Universal,
        Class::Ga,
        Class::Nes,
    ];

    /// Its name (`clean`, `fgsm`, …).
    pub fn name(self) -> &'static str {
        match self {
            Class::Clean => "clean",
            Class::Fgsm => "fgsm",
            Class::Pgd => "pgd",
            Class::Cw => "cw",
            Class::Deepfool => "deepfool",
            Class::Jsma => "jsma",
            Class::Imperceptible => "imperceptible",
            Class::Universal => "universal",
            Class::Ga => "ga",
            Class::Nes => "nes",
        }
    }
}

impl std::str::FromStr for Class {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Class::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
                Error::InvalidArgument(format!(
                    "unknown attribution class {s:?} (one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// The verdict on one recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The most likely class, or `unknown` when no class is likely enough.
    pub attack: String,
    /// Probability of each class the classifier knows.
    pub probabilities: BTreeMap<String, f64>,
}

impl Classifier {
    /// The classifier that ships with advox (`models/attribution.json`).
    pub fn builtin() -> Result<Self> {
        Classifier::parse(BUILTIN)
            .map_err(|why| Error::Internal(format!("the shipped attribution classifier: {why}")))
    }
}

/// Attribute 16-kHz samples `x` (0.1 to 30 s) with `classifier`, the model transcribing them
/// greedily.
pub fn attribute(model: &LoadedModel, classifier: &Classifier, x: &[f32]) -> Result<Attribution> {
    if classifier.features != features::names() {
        return Err(Error::InvalidArgument(
            "the classifier was trained on other features than this advox computes".into(),
        ));
    }
    let f = features::features(model, x, &DecodeOptions::default())?;
    let (class, p) = classifier.attribute(&f)?;
    Ok(Attribution {
        attack: class.unwrap_or("unknown").to_string(),
        probabilities: classifier.classes.iter().cloned().zip(p).collect(),
    })
}
