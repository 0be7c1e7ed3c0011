//! Adversarial fine-tuning: teach the model to transcribe adversarial examples (made against it
//! beforehand, e.g. by PGD) as their clean transcripts, mixed with clean examples so clean
//! accuracy is kept.
//!
//! Two scopes ([`Scope`]): the decoder only (the encoder stays frozen and its features of every
//! example are computed once: fast), or the whole model (every weight but the encoder's fixed
//! sinusoidal positions; each step runs the encoder on the example's log-mel). The model is
//! rebuilt for training with candle's autograd from the primitive operations of
//! [`crate::autodiff`] (layer norm, softmax and cross-entropy from reductions, convolutions as
//! shifted copies and one product, exact-erf GELU), since candle-nn's fused layer norm and
//! softmax have no backward and candle's `conv1d` kernel gradient is wrong. The tuned weights
//! are written back by their Hugging Face names and saved as a model directory that every
//! command loads with `--model DIR`.

use crate::autodiff::{
    conv1d_columns, layer_norm, log_softmax_last, softmax_last, tap_major, ConvShape,
};
use crate::gradient::TargetSequence;
use crate::mel::log_mel;
use crate::model::{LoadedModel, Weights, WhisperConfig};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use std::collections::BTreeMap;

const LN_EPS: f64 = 1e-5;

/// One training example: its log-mel, its features under the base model's encoder, and the
/// teacher-forced clean transcript.
pub struct TrainingExample {
    /// Log-mel `(1, mels, 3000)` (what the encoder reads when it is trained).
    pub mel: Tensor,
    /// The base model's encoder output `(1, 1500, d_model)` (used while the encoder is frozen).
    pub features: Tensor,
    /// Decoder input tokens (prompt + clean transcript).
    pub input: Vec<u32>,
    /// Tokens predicted at the last `targets.len()` positions (clean transcript + end).
    pub targets: Vec<u32>,
}

impl TrainingExample {
    /// The example of `samples` under `model` with the clean transcript's tokens as the target.
    pub fn new(model: &LoadedModel, samples: &[f32], clean_tokens: &[u32]) -> Result<Self> {
        let n_mels = model.whisper.config().num_mel_bins;
        let mel = Tensor::from_vec(
            log_mel(samples, n_mels),
            (1, n_mels, crate::mel::N_FRAMES),
            &Device::Cpu,
        )?;
        let features = model
            .whisper
            .encode(&mel.to_device(model.whisper.device())?)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?;
        let tok = &model.tokenizer;
        let language = tok.english()?;
        let seq = TargetSequence::from_tokens(tok, clean_tokens, language);
        Ok(TrainingExample {
            mel,
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

/// Which weights adversarial fine-tuning changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The decoder blocks and its final layer norm (embeddings and encoder frozen).
    Decoder,
    /// Every weight except the encoder's fixed sinusoidal positions.
    All,
}

impl Scope {
    /// `decoder` or `all`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "decoder" => Ok(Scope::Decoder),
            "all" => Ok(Scope::All),
            other => Err(Error::InvalidArgument(format!(
                "unknown scope {other:?}: `decoder` or `all`"
            ))),
        }
    }

    /// The name [`Scope::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Decoder => "decoder",
            Scope::All => "all",
        }
    }

    /// Whether the weight of this (Hugging Face) name is trained.
    pub fn trains(self, weight: &str) -> bool {
        match self {
            Scope::Decoder => {
                weight.starts_with("decoder.layers.") || weight.starts_with("decoder.layer_norm.")
            }
            Scope::All => weight != "encoder.embed_positions.weight",
        }
    }
}

/// Whisper rebuilt from primitive operations, with the weights of a [`Scope`] trainable.
pub struct TrainableWhisper {
    config: WhisperConfig,
    scope: Scope,
    vars: BTreeMap<String, Var>,
    frozen: BTreeMap<String, Tensor>,
}

impl TrainableWhisper {
    /// Take every weight from loaded weights (as f32 on the CPU); those of `scope` become
    /// trainable.
    pub fn from_weights(config: &WhisperConfig, weights: &Weights, scope: Scope) -> Result<Self> {
        let mut vars = BTreeMap::new();
        let mut frozen = BTreeMap::new();
        for (name, t) in &weights.tensors {
            let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            if scope.trains(name) {
                vars.insert(name.clone(), Var::from_tensor(&t)?);
            } else {
                frozen.insert(name.clone(), t);
            }
        }
        if !vars.keys().any(|n| n.starts_with("decoder.layers.")) {
            return Err(Error::InvalidArgument(
                "the weights have no decoder blocks".into(),
            ));
        }
        Ok(TrainableWhisper {
            config: config.clone(),
            scope,
            vars,
            frozen,
        })
    }

    /// What this model trains.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Number of trainable parameters.
    pub fn trainable_parameters(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .map(|v| v.as_tensor())
            .or_else(|| self.frozen.get(name))
            .ok_or_else(|| Error::InvalidArgument(format!("the model lacks {name}")))
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
            LN_EPS,
        )
    }

    /// Multi-head attention of queries from `x` over keys/values from `kv` (`(L, D)` each).
    fn attention(
        &self,
        x: &Tensor,
        kv: &Tensor,
        name: &str,
        heads: usize,
        causal: bool,
    ) -> Result<Tensor> {
        let d = self.config.d_model;
        let dh = d / heads;
        let split = |t: Tensor| -> Result<Tensor> {
            let l = t.dim(0)?;
            Ok(t.reshape((l, heads, dh))?.transpose(0, 1)?.contiguous()?)
        };
        // The 1/√dh scale on the (small) queries rather than the (L × L) scores.
        let q = split((self.linear(x, &format!("{name}.q_proj"), true)? / (dh as f64).sqrt())?)?;
        let k = split(self.linear(kv, &format!("{name}.k_proj"), false)?)?;
        let v = split(self.linear(kv, &format!("{name}.v_proj"), true)?)?;
        let mut scores = q.matmul(&k.t()?)?;
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

    /// The pre-norm MLP half of a block (residual included).
    fn mlp(&self, x: &Tensor, p: &str) -> Result<Tensor> {
        let h = self.ln(x, &format!("{p}.final_layer_norm"))?;
        let h = self.linear(&h, &format!("{p}.fc1"), true)?.gelu_erf()?;
        Ok((x + self.linear(&h, &format!("{p}.fc2"), true)?)?)
    }

    /// Whisper's kernel-3, padding-1 convolution with stride 1 or 2.
    fn conv(&self, x: &Tensor, name: &str, stride: usize) -> Result<Tensor> {
        let shape = ConvShape {
            kernel: 3,
            stride,
            pad_left: 1,
            pad_right: 1,
        };
        let w = tap_major(self.w(&format!("{name}.weight"))?)?;
        let b = self.w(&format!("{name}.bias"))?.unsqueeze(1)?;
        conv1d_columns(x, &w, &b, shape)
    }

    /// Encoder features `(1, 1500, D)` of a log-mel `(1, mels, 3000)`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let x = self.conv(mel, "encoder.conv1", 1)?.gelu_erf()?;
        let x = self.conv(&x, "encoder.conv2", 2)?.gelu_erf()?;
        let mut x = x
            .squeeze(0)?
            .t()?
            .broadcast_add(self.w("encoder.embed_positions.weight")?)?;
        let heads = self.config.encoder_attention_heads;
        for layer in 0..self.config.encoder_layers {
            let p = format!("encoder.layers.{layer}");
            let h = self.ln(&x, &format!("{p}.self_attn_layer_norm"))?;
            x = (&x + self.attention(&h, &h, &format!("{p}.self_attn"), heads, false)?)?;
            x = self.mlp(&x, &p)?;
        }
        Ok(self.ln(&x, "encoder.layer_norm")?.unsqueeze(0)?)
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
        let embed = self.w("decoder.embed_tokens.weight")?;
        let ids = Tensor::from_vec(tokens.to_vec(), l, embed.device())?;
        let mut x = embed
            .index_select(&ids, 0)?
            .add(&self.w("decoder.embed_positions.weight")?.narrow(0, 0, l)?)?;
        let xa = features.squeeze(0)?;
        let heads = self.config.decoder_attention_heads;
        for layer in 0..self.config.decoder_layers {
            let p = format!("decoder.layers.{layer}");
            let h = self.ln(&x, &format!("{p}.self_attn_layer_norm"))?;
            x = (&x + self.attention(&h, &h, &format!("{p}.self_attn"), heads, true)?)?;
            let h = self.ln(&x, &format!("{p}.encoder_attn_layer_norm"))?;
            x = (&x + self.attention(&h, &xa, &format!("{p}.encoder_attn"), heads, false)?)?;
            x = self.mlp(&x, &p)?;
        }
        let out = self.ln(&x, "decoder.layer_norm")?;
        Ok(out.matmul(&embed.t()?)?)
    }

    /// Teacher-forced logits `(L, vocab)` of an example (through the encoder when it is
    /// trained, else from the base model's features).
    pub fn logits_of(&self, ex: &TrainingExample) -> Result<Tensor> {
        let features = match self.scope {
            Scope::Decoder => ex.features.clone(),
            Scope::All => self.encode(&ex.mel)?,
        };
        self.logits(&features, &ex.input)
    }

    /// The trainable weights, for an optimiser.
    pub(crate) fn trainable_vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    /// Mean cross-entropy of an example's targets (through the encoder when it is trained).
    pub fn loss(&self, ex: &TrainingExample) -> Result<Tensor> {
        let logits = self.logits_of(ex)?;
        let (l, v) = logits.dims2()?;
        let t = ex.targets.len();
        if t == 0 || t > l {
            return Err(Error::InvalidArgument("no targets to score".into()));
        }
        let logp = log_softmax_last(&logits.narrow(0, l - t, t)?)?;
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
        clean: &[TrainingExample],
        adversarial: &[TrainingExample],
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
        let mut opt = crate::autodiff::adam(self.trainable_vars(), cfg.learning_rate)?;
        let mut rng = Rng::new(cfg.seed);
        for step in 1..=cfg.steps {
            let c = &clean[rng.below(clean.len())];
            let a = &adversarial[rng.below(adversarial.len())];
            // One backward per example, so only one example's graph (with the encoder's
            // 1500 × 1500 attention maps when it is trained) is alive at a time.
            let lc = self.loss(c)?;
            let mut grads = (lc.clone() * (1.0 - cfg.adversarial_weight))?.backward()?;
            let lc = lc.detach().to_scalar::<f32>()?;
            let la = self.loss(a)?;
            let adv_grads = (la.clone() * cfg.adversarial_weight)?.backward()?;
            let la = la.detach().to_scalar::<f32>()?;
            for var in self.vars.values() {
                let w = var.as_tensor();
                let sum = match (grads.get(w), adv_grads.get(w)) {
                    (Some(g), Some(h)) => (g + h)?,
                    (None, Some(h)) => h.clone(),
                    _ => continue,
                };
                grads.insert(w, sum);
            }
            opt.step(&grads)?;
            on_step(step, lc, la);
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).ok_or_else(|| {
            Error::Internal(format!(
                "{name} is not trained under scope `{}`",
                self.scope.name()
            ))
        })
    }

    /// Gradients of an example's loss w.r.t. trainable weights (each flattened), from one
    /// backward pass.
    pub fn gradients_of(&self, ex: &TrainingExample, names: &[&str]) -> Result<Vec<Vec<f32>>> {
        let grads = self.loss(ex)?.backward()?;
        names
            .iter()
            .map(|name| {
                let g = grads
                    .get(self.var(name)?.as_tensor())
                    .ok_or_else(|| Error::Internal(format!("no gradient reaches {name}")))?;
                Ok(g.flatten_all()?.to_vec1::<f32>()?)
            })
            .collect()
    }

    /// Add `delta` to element `index` (flattened) of a trainable weight.
    pub fn nudge(&self, name: &str, index: usize, delta: f32) -> Result<()> {
        let var = self.var(name)?;
        let dims = var.dims().to_vec();
        let mut values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let v = values
            .get_mut(index)
            .ok_or_else(|| Error::Internal(format!("{name} has no element {index}")))?;
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
