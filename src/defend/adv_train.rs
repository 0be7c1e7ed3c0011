//! Adversarial fine-tuning of the decoder: teach the model to transcribe adversarial examples
//! (made against it beforehand, e.g. by PGD) as their clean transcripts, mixed with clean
//! examples so clean accuracy is kept.
//!
//! The encoder stays frozen (its features of every example are computed once); the decoder
//! blocks and its final layer norm are trained with candle's autograd on a teacher-forced
//! decoder written from primitive operations (layer norm, softmax and cross-entropy from
//! reductions and element-wise ops, exact-erf GELU), since candle-nn's fused layer norm and
//! softmax have no backward. Token and position embeddings (the tied output projection) stay
//! frozen. The tuned weights are written back by their Hugging Face names and saved as a model
//! directory that every command loads with `--model DIR`.

use crate::gradient::TargetSequence;
use crate::mel::log_mel;
use crate::model::{LoadedModel, Weights, WhisperConfig};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var, D};
use candle_nn::Optimizer;
use std::collections::BTreeMap;

const LN_EPS: f64 = 1e-5;

/// One training example: frozen encoder features and the teacher-forced clean transcript.
pub struct FeatureExample {
    /// Encoder output `(1, 1500, d_model)`.
    pub features: Tensor,
    /// Decoder input tokens (prompt + clean transcript).
    pub input: Vec<u32>,
    /// Tokens predicted at the last `targets.len()` positions (clean transcript + end).
    pub targets: Vec<u32>,
}

impl FeatureExample {
    /// Features of `samples` under `model` with the clean transcript's tokens as the target.
    pub fn new(model: &LoadedModel, samples: &[f32], clean_tokens: &[u32]) -> Result<Self> {
        let n_mels = model.whisper.config().num_mel_bins;
        let mel = Tensor::from_vec(
            log_mel(samples, n_mels),
            (1, n_mels, crate::mel::N_FRAMES),
            model.whisper.device(),
        )?;
        let features = model.whisper.encode(&mel)?;
        let tok = &model.tokenizer;
        let language = if tok.is_multilingual() {
            Some(tok.language_token("en")?)
        } else {
            None
        };
        let seq = TargetSequence::from_tokens(tok, clean_tokens, language);
        Ok(FeatureExample {
            features,
            input: seq.input,
            targets: seq.targets,
        })
    }
}

/// Settings of the fine-tuning.
#[derive(Debug, Clone)]
pub struct AdvTrainConfig {
    /// AdamW steps (one clean and one adversarial example each).
    pub steps: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// Weight of the adversarial example's loss (the clean one gets 1 − this).
    pub adversarial_weight: f64,
    /// Seed of the example order.
    pub seed: u64,
}

impl Default for AdvTrainConfig {
    fn default() -> Self {
        AdvTrainConfig {
            steps: 40,
            learning_rate: 2e-5,
            adversarial_weight: 0.5,
            seed: 0,
        }
    }
}

/// The decoder with trainable block weights.
pub struct TrainableDecoder {
    config: WhisperConfig,
    vars: BTreeMap<String, Var>,
    embed: Tensor,
    positions: Tensor,
}

fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let mu = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xhat = xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
    Ok(xhat.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

impl TrainableDecoder {
    /// Take the decoder weights (`decoder.layers.*`, `decoder.layer_norm.*` trainable; the
    /// embeddings frozen) from loaded weights.
    pub fn from_weights(config: &WhisperConfig, weights: &Weights) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (name, t) in &weights.tensors {
            if name.starts_with("decoder.layers.") || name.starts_with("decoder.layer_norm.") {
                vars.insert(name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?);
            }
        }
        if vars.is_empty() {
            return Err(Error::InvalidArgument(
                "the weights have no decoder blocks".into(),
            ));
        }
        Ok(TrainableDecoder {
            config: config.clone(),
            vars,
            embed: weights.get("decoder.embed_tokens.weight")?.clone(),
            positions: weights.get("decoder.embed_positions.weight")?.clone(),
        })
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor())
            .ok_or_else(|| Error::InvalidArgument(format!("the decoder lacks {name}")))
    }

    fn linear(&self, x: &Tensor, name: &str, bias: bool) -> Result<Tensor> {
        let y = x.broadcast_matmul(&self.w(&format!("{name}.weight"))?.t()?)?;
        Ok(if bias {
            y.broadcast_add(self.w(&format!("{name}.bias"))?)?
        } else {
            y
        })
    }

    fn ln(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        layer_norm(
            x,
            self.w(&format!("{name}.weight"))?,
            self.w(&format!("{name}.bias"))?,
        )
    }

    /// Multi-head attention of queries from `x` over keys/values from `kv` (`(L, D)` each).
    fn attention(&self, x: &Tensor, kv: &Tensor, name: &str, causal: bool) -> Result<Tensor> {
        let heads = self.config.decoder_attention_heads;
        let d = self.config.d_model;
        let dh = d / heads;
        let split = |t: Tensor| -> Result<Tensor> {
            let l = t.dim(0)?;
            Ok(t.reshape((l, heads, dh))?.transpose(0, 1)?.contiguous()?)
        };
        let q = split(self.linear(x, &format!("{name}.q_proj"), true)?)?;
        let k = split(self.linear(kv, &format!("{name}.k_proj"), false)?)?;
        let v = split(self.linear(kv, &format!("{name}.v_proj"), true)?)?;
        let mut scores = (q.matmul(&k.t()?)? / (dh as f64).sqrt())?;
        let (lq, lk) = (x.dim(0)?, kv.dim(0)?);
        if causal {
            let mask: Vec<f32> = (0..lq)
                .flat_map(|i| (0..lk).map(move |j| if j > i { -1e9 } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (lq, lk), x.device())?;
            scores = scores.broadcast_add(&mask)?;
        }
        let merged = softmax_last(&scores)?
            .matmul(&v)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((lq, d))?;
        self.linear(&merged, &format!("{name}.out_proj"), true)
    }

    /// Teacher-forced logits `(L, vocab)` for features `(1, 1500, D)` and input tokens.
    pub fn logits(&self, features: &Tensor, tokens: &[u32]) -> Result<Tensor> {
        let l = tokens.len();
        if l == 0 || l > self.config.max_target_positions {
            return Err(Error::InvalidArgument(format!(
                "{l} decoder tokens (1..={} allowed)",
                self.config.max_target_positions
            )));
        }
        let ids = Tensor::from_vec(tokens.to_vec(), l, self.embed.device())?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .add(&self.positions.narrow(0, 0, l)?)?;
        let xa = features.squeeze(0)?;
        for layer in 0..self.config.decoder_layers {
            let p = format!("decoder.layers.{layer}");
            let h = self.ln(&x, &format!("{p}.self_attn_layer_norm"))?;
            x = (&x + self.attention(&h, &h, &format!("{p}.self_attn"), true)?)?;
            let h = self.ln(&x, &format!("{p}.encoder_attn_layer_norm"))?;
            x = (&x + self.attention(&h, &xa, &format!("{p}.encoder_attn"), false)?)?;
            let h = self.ln(&x, &format!("{p}.final_layer_norm"))?;
            let h = self.linear(&h, &format!("{p}.fc1"), true)?.gelu_erf()?;
            x = (&x + self.linear(&h, &format!("{p}.fc2"), true)?)?;
        }
        let out = self.ln(&x, "decoder.layer_norm")?;
        Ok(out.matmul(&self.embed.t()?)?)
    }

    /// Mean cross-entropy of an example's targets.
    pub fn loss(&self, ex: &FeatureExample) -> Result<Tensor> {
        let logits = self.logits(&ex.features, &ex.input)?;
        let (l, v) = logits.dims2()?;
        let t = ex.targets.len();
        if t == 0 || t > l {
            return Err(Error::InvalidArgument("no targets to score".into()));
        }
        let rows = logits.narrow(0, l - t, t)?;
        let max = rows.max_keepdim(D::Minus1)?.detach();
        let shifted = rows.broadcast_sub(&max)?;
        let log_z = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let logp = shifted.broadcast_sub(&log_z)?;
        let mut onehot = vec![0.0f32; t * v];
        for (i, &tok) in ex.targets.iter().enumerate() {
            if tok as usize >= v {
                return Err(Error::InvalidArgument(format!(
                    "target token {tok} outside the vocabulary"
                )));
            }
            onehot[i * v + tok as usize] = 1.0;
        }
        let onehot = Tensor::from_vec(onehot, (t, v), logits.device())?;
        Ok(((logp * onehot)?.sum_all()? / -(t as f64))?)
    }

    /// Fine-tune on clean and adversarial examples (each step: one of each, weighted).
    /// `on_step` sees (step, clean loss, adversarial loss).
    pub fn train(
        &mut self,
        clean: &[FeatureExample],
        adversarial: &[FeatureExample],
        cfg: &AdvTrainConfig,
        on_step: &mut dyn FnMut(usize, f32, f32),
    ) -> Result<()> {
        if clean.is_empty() || adversarial.is_empty() || cfg.steps == 0 {
            return Err(Error::InvalidArgument(
                "adversarial training needs clean and adversarial examples and steps".into(),
            ));
        }
        let valid = (0.0..=1.0).contains(&cfg.adversarial_weight)
            && cfg.learning_rate.is_finite()
            && cfg.learning_rate > 0.0;
        if !valid {
            return Err(Error::InvalidArgument(
                "the adversarial weight must be in [0, 1] and the learning rate positive".into(),
            ));
        }
        let mut opt = candle_nn::AdamW::new(
            self.vars.values().cloned().collect(),
            candle_nn::ParamsAdamW {
                lr: cfg.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut rng = Rng::new(cfg.seed);
        for step in 1..=cfg.steps {
            let c = &clean[rng.below(clean.len())];
            let a = &adversarial[rng.below(adversarial.len())];
            let lc = self.loss(c)?;
            let la = self.loss(a)?;
            let total =
                ((&lc * (1.0 - cfg.adversarial_weight))? + (&la * cfg.adversarial_weight)?)?;
            opt.backward_step(&total)?;
            on_step(step, lc.to_scalar::<f32>()?, la.to_scalar::<f32>()?);
        }
        Ok(())
    }

    /// Gradient of an example's loss w.r.t. one trainable weight (flattened).
    pub fn gradient_of(&self, ex: &FeatureExample, name: &str) -> Result<Vec<f32>> {
        let grads = self.loss(ex)?.backward()?;
        let w = self.w(name)?;
        let g = grads
            .get(w)
            .ok_or_else(|| Error::InvalidArgument(format!("no gradient reaches {name}")))?;
        Ok(g.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Add `delta` to element `index` (flattened) of a trainable weight.
    pub fn nudge(&self, name: &str, index: usize, delta: f32) -> Result<()> {
        let var = self
            .vars
            .get(name)
            .ok_or_else(|| Error::InvalidArgument(format!("the decoder lacks {name}")))?;
        let dims = var.dims().to_vec();
        let mut values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let v = values
            .get_mut(index)
            .ok_or_else(|| Error::InvalidArgument(format!("{name} has no element {index}")))?;
        *v += delta;
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
        Ok(())
    }

    /// Write the tuned weights back into `weights` (same names).
    pub fn write_into(&self, weights: &mut Weights) -> Result<()> {
        for (name, v) in &self.vars {
            weights.tensors.insert(name.clone(), v.as_tensor().detach());
        }
        Ok(())
    }
}
