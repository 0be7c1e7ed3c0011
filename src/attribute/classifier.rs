//! The attribution classifier: multinomial logistic regression on standardised features,
//! classes weighted equally, with a rejection threshold on the winning probability (below it,
//! the example is "unknown": an algorithm the classifier was not trained on, or none it can
//! tell).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format tag of a saved classifier.
pub const FORMAT: &str = "advox-attribution";

/// Share of correctly attributed out-of-fold training examples that the rejection threshold
/// may turn away.
const REJECT_SHARE: f64 = 0.05;
/// Folds of the cross-validation that sets the threshold.
const FOLDS: usize = 5;

/// One labelled example: its features and class index; `group` (e.g. the clean clip it was
/// made from) keeps an example's siblings in the same cross-validation fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    /// Feature vector ([`super::features::names`] order).
    pub features: Vec<f32>,
    /// Class name.
    pub class: String,
    /// Group (the clean recording it was made from).
    pub group: String,
}

/// A trained classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// [`FORMAT`].
    pub format: String,
    /// 1.
    pub version: u32,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Feature names ([`super::features::names`] when trained).
    pub features: Vec<String>,
    /// Mean of each feature over the training examples.
    pub mean: Vec<f64>,
    /// Standard deviation of each (1 where constant).
    pub scale: Vec<f64>,
    /// Weights, one row per class.
    pub weights: Vec<Vec<f64>>,
    /// Intercepts per class.
    pub bias: Vec<f64>,
    /// Winning probabilities under this are "unknown".
    pub reject_below: f64,
    /// What it was trained on (free text for reports).
    #[serde(default)]
    pub trained_on: String,
}

/// Per-column mean and standard deviation (1 where a column is constant).
pub fn column_stats(rows: &[&[f64]]) -> (Vec<f64>, Vec<f64>) {
    let k = rows.first().map_or(0, |r| r.len());
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..k)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let scale = (0..k)
        .map(|j| {
            let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
            if var > 1e-24 {
                var.sqrt()
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

fn softmax(z: &mut [f64]) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    z.iter_mut().for_each(|v| *v /= s);
}

/// Fit weights and biases on standardised rows `(z, class)`, each class weighing the same.
fn fit_weights(data: &[(Vec<f64>, usize)], classes: usize, k: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut count = vec![0usize; classes];
    data.iter().for_each(|(_, c)| count[*c] += 1);
    let present = count.iter().filter(|c| **c > 0).count().max(1) as f64;
    let weight: Vec<f64> = count
        .iter()
        .map(|c| {
            if *c > 0 {
                1.0 / (present * *c as f64)
            } else {
                0.0
            }
        })
        .collect();
    let (mut w, mut b) = (vec![vec![0.0f64; k]; classes], vec![0.0f64; classes]);
    let lambda = 3e-3;
    let rate = 1.0;
    let mut p = vec![0.0f64; classes];
    for _ in 0..3_000 {
        let mut gw = vec![vec![0.0f64; k]; classes];
        let mut gb = vec![0.0f64; classes];
        for (x, y) in data {
            for c in 0..classes {
                p[c] = b[c] + w[c].iter().zip(x).map(|(a, v)| a * v).sum::<f64>();
            }
            softmax(&mut p);
            for c in 0..classes {
                let e = weight[*y] * (p[c] - if c == *y { 1.0 } else { 0.0 });
                for (g, xi) in gw[c].iter_mut().zip(x) {
                    *g += e * xi;
                }
                gb[c] += e;
            }
        }
        for c in 0..classes {
            for (wi, g) in w[c].iter_mut().zip(&gw[c]) {
                *wi -= rate * (g + lambda * *wi);
            }
            b[c] -= rate * gb[c];
        }
    }
    (w, b)
}

impl Classifier {
    /// Train on `examples` over `classes` (every example's class must be one of them; a class
    /// with no example is never predicted). The rejection threshold comes from a 5-fold
    /// cross-validation over the groups: the winning probability that keeps 95 % of the
    /// correctly attributed out-of-fold examples.
    pub fn train(
        classes: &[String],
        feature_names: &[String],
        examples: &[Labelled],
    ) -> Result<Self> {
        let k = feature_names.len();
        if classes.len() < 2 || examples.is_empty() || k == 0 {
            return Err(Error::InvalidArgument(
                "attribution needs two classes or more, features and examples".into(),
            ));
        }
        let mut rows = Vec::with_capacity(examples.len());
        for e in examples {
            if e.features.len() != k || e.features.iter().any(|v| !v.is_finite()) {
                return Err(Error::Shape(format!(
                    "an example of {} has {} finite features of {k}",
                    e.group,
                    e.features.len()
                )));
            }
            let class = classes.iter().position(|c| *c == e.class).ok_or_else(|| {
                Error::InvalidArgument(format!("example of unknown class {:?}", e.class))
            })?;
            let x: Vec<f64> = e.features.iter().map(|v| *v as f64).collect();
            rows.push((x, class, e.group.clone()));
        }
        let fit = |subset: &[&(Vec<f64>, usize, String)]| {
            let raw: Vec<&[f64]> = subset.iter().map(|r| r.0.as_slice()).collect();
            let (mean, scale) = column_stats(&raw);
            let data: Vec<(Vec<f64>, usize)> = subset
                .iter()
                .map(|r| (standardise(&r.0, &mean, &scale), r.1))
                .collect();
            let (weights, bias) = fit_weights(&data, classes.len(), k);
            Classifier {
                format: FORMAT.into(),
                version: 1,
                classes: classes.to_vec(),
                features: feature_names.to_vec(),
                mean,
                scale,
                weights,
                bias,
                reject_below: 0.0,
                trained_on: String::new(),
            }
        };
        // Out-of-fold winning probabilities of correct attributions.
        let mut groups: Vec<&String> = rows.iter().map(|r| &r.2).collect();
        groups.sort();
        groups.dedup();
        let mut kept = Vec::new();
        if groups.len() >= FOLDS {
            for fold in 0..FOLDS {
                let held =
                    |g: &String| groups.iter().position(|x| *x == g).unwrap_or(0) % FOLDS == fold;
                let train: Vec<_> = rows.iter().filter(|r| !held(&r.2)).collect();
                let model = fit(&train);
                for r in rows.iter().filter(|r| held(&r.2)) {
                    let p = model.probabilities_raw(&r.0);
                    let best = argmax(&p);
                    if best == r.1 {
                        kept.push(p[best]);
                    }
                }
            }
        }
        let all: Vec<_> = rows.iter().collect();
        let mut model = fit(&all);
        if !kept.is_empty() {
            kept.sort_by(f64::total_cmp);
            model.reject_below = kept[(kept.len() as f64 * REJECT_SHARE) as usize];
        }
        Ok(model)
    }

    fn probabilities_raw(&self, x: &[f64]) -> Vec<f64> {
        let z = standardise(x, &self.mean, &self.scale);
        let mut p: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| b + w.iter().zip(&z).map(|(a, v)| a * v).sum::<f64>())
            .collect();
        softmax(&mut p);
        p
    }

    /// Probability of each class (in [`Classifier::classes`] order) for a feature vector.
    pub fn probabilities(&self, features: &[f32]) -> Result<Vec<f64>> {
        if features.len() != self.mean.len() {
            return Err(Error::Shape(format!(
                "{} features for a classifier of {}",
                features.len(),
                self.mean.len()
            )));
        }
        let x: Vec<f64> = features.iter().map(|v| *v as f64).collect();
        Ok(self.probabilities_raw(&x))
    }

    /// The most likely class, or `None` ("unknown") when its probability is under the
    /// rejection threshold; with the probabilities.
    pub fn attribute(&self, features: &[f32]) -> Result<(Option<&str>, Vec<f64>)> {
        let p = self.probabilities(features)?;
        let best = argmax(&p);
        let class = (p[best] >= self.reject_below).then(|| self.classes[best].as_str());
        Ok((class, p))
    }

    /// Save as JSON (through a temporary file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("attribution classifier: {e}")))?;
        crate::atomic_file::write_bytes_atomic(path, text.as_bytes())
    }

    /// Read a classifier saved by [`Classifier::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|why| Error::bad_file(path, why))
    }

    /// Parse the JSON of [`Classifier::save`]; the reason when it is not a valid one.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let c: Classifier = serde_json::from_str(text)
            .map_err(|e| format!("not an advox attribution classifier: {e}"))?;
        let (k, n) = (c.features.len(), c.classes.len());
        let valid = c.format == FORMAT
            && c.version == 1
            && k > 0
            && n >= 2
            && c.mean.len() == k
            && c.scale.len() == k
            && c.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            && c.weights.len() == n
            && c.weights.iter().all(|w| w.len() == k)
            && c.bias.len() == n
            && (0.0..=1.0).contains(&c.reject_below);
        if !valid {
            return Err(format!("not a valid {FORMAT} version 1 file"));
        }
        Ok(c)
    }
}

fn standardise(x: &[f64], mean: &[f64], scale: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(mean.iter().zip(scale))
        .map(|(v, (m, s))| (v - m) / s)
        .collect()
}

/// Index of the largest probability (the first of equals: 0 for none).
pub(crate) fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Three classes around three centres in 4 dimensions, `n` examples each in `n` groups.
    fn blobs(n: usize, seed: u64, spread: f32) -> Vec<Labelled> {
        let centres = [
            [2.0f32, 0.0, 0.0, 5.0],
            [0.0, 2.0, 0.0, 5.0],
            [0.0, 0.0, 2.0, 5.0],
        ];
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for i in 0..n {
                out.push(Labelled {
                    features: centre.iter().map(|m| m + spread * rng.normal()).collect(),
                    class: format!("c{c}"),
                    group: format!("g{i}"),
                });
            }
        }
        out
    }

    fn names(n: usize, p: &str) -> Vec<String> {
        (0..n).map(|i| format!("{p}{i}")).collect()
    }

    #[test]
    fn separable_classes_are_attributed_and_far_points_rejected() {
        let classes = names(3, "c");
        let c = Classifier::train(&classes, &names(4, "f"), &blobs(20, 1, 0.3)).unwrap();
        let test = blobs(20, 2, 0.3);
        let said: Vec<(Option<&str>, Vec<f64>)> = test
            .iter()
            .map(|e| c.attribute(&e.features).unwrap())
            .collect();
        let best = |p: &[f64]| c.classes[argmax(p)].clone();
        let right = test
            .iter()
            .zip(&said)
            .filter(|(e, s)| best(&s.1) == e.class)
            .count();
        assert!(right >= 57, "{right}/60");
        // About the 5 % of correct attributions the threshold was set to turn away.
        let rejected = said.iter().filter(|s| s.0.is_none()).count();
        assert!(rejected <= 9, "{rejected}/60 rejected");
        assert!(
            c.reject_below > 0.34 && c.reject_below < 1.0,
            "{}",
            c.reject_below
        );
        // Halfway between two classes: neither wins clearly.
        let (class, p) = c.attribute(&[1.0, 1.0, 0.0, 5.0]).unwrap();
        assert_eq!(class, None, "{p:?}");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_saved_classifier_reads_back_and_bad_files_are_refused() {
        let c = Classifier::train(&names(3, "c"), &names(4, "f"), &blobs(10, 3, 0.5)).unwrap();
        let dir = std::env::temp_dir().join(format!("advox-attr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        c.save(&path).unwrap();
        assert_eq!(Classifier::load(&path).unwrap(), c);
        std::fs::write(&path, "{\"format\": \"advox-attribution\"}").unwrap();
        let e = Classifier::load(&path).unwrap_err().to_string();
        assert!(e.contains("c.json"), "{e}");
        assert!(c.probabilities(&[1.0]).is_err());
        let mut bad = blobs(3, 4, 0.5);
        bad[0].features[0] = f32::NAN;
        assert!(Classifier::train(&names(3, "c"), &names(4, "f"), &bad).is_err());
        bad[0].class = "nope".into();
        bad[0].features[0] = 0.0;
        assert!(Classifier::train(&names(3, "c"), &names(4, "f"), &bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
