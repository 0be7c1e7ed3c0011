//! The Whisper encoder/decoder in candle, with a hand-written backward pass to the input.
//!
//! Forward uses candle's matmul and layer-norm and the fused kernels of [`super::ops`]
//! (attention, exact-erf GELU, convolutions); when a [`ForwardTape`] is recorded, [`Whisper::backward`] propagates a gradient from the
//! decoder logits back to the log-mel input with the analytic derivatives of every block
//! (attention softmax, layer-norm, GELU, convolutions). Weights are frozen: no weight gradient is
//! ever computed, and only the activations the input gradient needs are kept.

use super::config::WhisperConfig;
use super::ops::{self, AttentionSaved, Save};
use super::weights::Weights;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

const LN_EPS: f64 = 1e-5;

/// Most memory a recorded encoder pass spends on keeping attention probabilities.
pub const PROBABILITY_MEMORY_BYTES: usize = 512 << 20;

/// A frozen linear layer `y = x Wᵀ + b`.
#[derive(Debug, Clone)]
struct Linear {
    /// `(out, in)`.
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn load(w: &Weights, name: &str, bias: bool) -> Result<Self> {
        Ok(Linear {
            weight: w.get(&format!("{name}.weight"))?.clone(),
            bias: if bias {
                Some(w.get(&format!("{name}.bias"))?.clone())
            } else {
                None
            },
        })
    }
    /// `x`: `(..., in)` -> `(..., out)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_add(x, None)
    }
    /// `residual + forward(x)` in one pass (`residual` shaped as the output).
    fn forward_add(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let inner = dims[dims.len() - 1];
        let rows = x.elem_count() / inner;
        let residual = match residual {
            Some(r) => Some(r.reshape((rows, self.weight.dim(0)?))?),
            None => None,
        };
        let x2 = x.reshape((rows, inner))?;
        let y = ops::linear(&x2, &self.weight, self.bias.as_ref(), residual.as_ref())?;
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }
    /// Gradient w.r.t. the input: `dy W`.
    fn backward(&self, dy: &Tensor) -> Result<Tensor> {
        input_grad(&[(self, dy)])
    }
}

/// Summed input gradient `Σ dyᵢ Wᵢ` of linear layers sharing one input, `dyᵢ` `(..., outᵢ)`.
fn input_grad(terms: &[(&Linear, &Tensor)]) -> Result<Tensor> {
    let (_, first) = terms
        .first()
        .ok_or_else(|| Error::InvalidArgument("no linear layer".into()))?;
    let mut dims = first.dims().to_vec();
    let rows = first.elem_count() / dims[dims.len() - 1].max(1);
    let flat = terms
        .iter()
        .map(|(l, dy)| Ok((dy.reshape((rows, l.weight.dim(0)?))?, &l.weight)))
        .collect::<Result<Vec<_>>>()?;
    let pairs: Vec<(&Tensor, &Tensor)> = flat.iter().map(|(dy, w)| (dy, *w)).collect();
    let dx = ops::linear_input_grad(&pairs)?;
    let last = dims.len() - 1;
    dims[last] = dx.dim(1)?;
    Ok(dx.reshape(dims)?)
}

#[derive(Debug, Clone)]
struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    fn load(w: &Weights, name: &str) -> Result<Self> {
        Ok(LayerNorm {
            gamma: w.get(&format!("{name}.weight"))?.clone(),
            beta: w.get(&format!("{name}.bias"))?.clone(),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.gamma,
            &self.beta,
            LN_EPS as f32,
        )?)
    }
    /// `dx = r (g - mean(g) - x̂ mean(g x̂))` with `g = dy γ`, recomputing `x̂` and `r` from `x`.
    fn backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        ops::layer_norm_backward(x, &self.gamma, dy, LN_EPS, None)
    }
    /// `residual +` [`LayerNorm::backward`], in one pass: the gradient of a pre-norm block's
    /// input `x + f(ln(x))`, given `residual` = the block output's gradient.
    fn backward_residual(&self, x: &Tensor, dy: &Tensor, residual: &Tensor) -> Result<Tensor> {
        ops::layer_norm_backward(x, &self.gamma, dy, LN_EPS, Some(residual))
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, dh) = x.dims4()?;
    Ok(x.transpose(1, 2)?.contiguous()?.reshape((b, t, h * dh))?)
}

impl Attention {
    fn load(w: &Weights, name: &str, heads: usize) -> Result<Self> {
        Ok(Attention {
            q: Linear::load(w, &format!("{name}.q_proj"), true)?,
            k: Linear::load(w, &format!("{name}.k_proj"), false)?,
            v: Linear::load(w, &format!("{name}.v_proj"), true)?,
            out: Linear::load(w, &format!("{name}.out_proj"), true)?,
            heads,
        })
    }

    fn scale(&self) -> f64 {
        let dh = self.q.weight.dim(0).unwrap_or(64) / self.heads;
        1.0 / (dh as f64).sqrt()
    }

    /// Keys and values of `xa` `(B, T, D)`, head-split.
    fn keys_values(&self, xa: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            split_heads(&self.k.forward(xa)?, self.heads)?,
            split_heads(&self.v.forward(xa)?, self.heads)?,
        ))
    }

    /// Core attention on head-split tensors (fused on the CPU); returns the merged output
    /// before the output projection and, if asked, what the backward pass needs.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        causal_offset: Option<usize>,
        save: Save,
    ) -> Result<(Tensor, Option<AttentionSaved>)> {
        let (o, saved) = ops::attention(q, k, v, self.scale(), causal_offset, save)?;
        Ok((merge_heads(&o)?, saved))
    }

    /// Backward of [`Attention::attend`] + output projection: from `d_out` `(B, Tq, D)` to the
    /// head-split gradients of q, k, v.
    fn backward(&self, t: &AttentionSaved, d_out: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let d_merged = self.out.backward(d_out)?;
        let d_o = split_heads(&d_merged, self.heads)?;
        ops::attention_backward(t, &d_o)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    attn_ln: LayerNorm,
    attn: Attention,
    mlp: Mlp,
}

/// The feed-forward block with its pre-norm and residual: `x + fc2(gelu(fc1(ln(x))))`.
#[derive(Debug, Clone)]
struct Mlp {
    ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(w: &Weights, layer: &str) -> Result<Self> {
        Ok(Mlp {
            ln: LayerNorm::load(w, &format!("{layer}.final_layer_norm"))?,
            fc1: Linear::load(w, &format!("{layer}.fc1"), true)?,
            fc2: Linear::load(w, &format!("{layer}.fc2"), true)?,
        })
    }

    fn forward(&self, x: Tensor, record: bool) -> Result<(Tensor, Option<MlpTape>)> {
        let h = self.ln.forward(&x)?;
        let pre = self.fc1.forward(&h)?;
        if !record {
            let act = ops::gelu(&pre)?;
            return Ok((self.fc2.forward_add(&act, Some(&x))?, None));
        }
        let (act, gelu_grad) = ops::gelu_with_derivative(&pre)?;
        let out = self.fc2.forward_add(&act, Some(&x))?;
        Ok((
            out,
            Some(MlpTape {
                ln_in: x,
                gelu_grad,
            }),
        ))
    }

    fn backward(&self, t: &MlpTape, dx: &Tensor) -> Result<Tensor> {
        let d_act = self.fc2.backward(dx)?;
        let d_h = self.fc1.backward(&(d_act * &t.gelu_grad)?)?;
        self.ln.backward_residual(&t.ln_in, &d_h, dx)
    }
}

/// Gradient through a pre-norm self-attention block `x + attn(ln(x))`.
fn self_attention_backward(
    attn: &Attention,
    ln: &LayerNorm,
    saved: &AttentionSaved,
    ln_in: &Tensor,
    dx: &Tensor,
) -> Result<Tensor> {
    let (dq, dk, dv) = attn.backward(saved, dx)?;
    let (dq, dk, dv) = (merge_heads(&dq)?, merge_heads(&dk)?, merge_heads(&dv)?);
    let d_h = input_grad(&[(&attn.q, &dq), (&attn.k, &dk), (&attn.v, &dv)])?;
    ln.backward_residual(ln_in, &d_h, dx)
}

/// [`self_attention_backward`] for the first `rows` positions only, when only those
/// positions' inputs can change: `(B, rows, D)`. The output projection's backward still runs
/// over every position, since every query attends to the leading keys.
fn self_attention_backward_prefix(
    attn: &Attention,
    ln: &LayerNorm,
    saved: &AttentionSaved,
    ln_in: &Tensor,
    dx: &Tensor,
    rows: usize,
) -> Result<Tensor> {
    let d_o = split_heads(&attn.out.backward(dx)?, attn.heads)?;
    let (dq, dk, dv) = ops::attention_backward_prefix(saved, &d_o, rows)?;
    let (dq, dk, dv) = (merge_heads(&dq)?, merge_heads(&dk)?, merge_heads(&dv)?);
    let d_h = input_grad(&[(&attn.q, &dq), (&attn.k, &dk), (&attn.v, &dv)])?;
    let lead = |t: &Tensor| t.narrow(1, 0, rows);
    ln.backward_residual(&lead(ln_in)?, &d_h, &lead(dx)?)
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    attn_ln: LayerNorm,
    attn: Attention,
    cross_ln: LayerNorm,
    cross: Attention,
    mlp: Mlp,
}

#[derive(Debug)]
struct MlpTape {
    ln_in: Tensor,
    /// GELU derivative at the fc1 output.
    gelu_grad: Tensor,
}

#[derive(Debug)]
struct EncoderLayerTape {
    attn_ln_in: Tensor,
    attn: AttentionSaved,
    mlp: MlpTape,
}

#[derive(Debug)]
struct DecoderLayerTape {
    attn_ln_in: Tensor,
    attn: AttentionSaved,
    cross_ln_in: Tensor,
    cross: AttentionSaved,
    mlp: MlpTape,
}

/// Activations saved by a recorded forward pass, consumed by [`Whisper::backward`].
#[derive(Debug)]
pub struct ForwardTape {
    conv1_gelu_grad: Tensor,
    conv2_gelu_grad: Tensor,
    enc_layers: Vec<EncoderLayerTape>,
    enc_ln_in: Tensor,
    dec_layers: Vec<DecoderLayerTape>,
    dec_ln_in: Tensor,
}

/// Self-attention key/value cache of the decoder, one entry per layer, `(B, H, L, dh)`.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Tokens already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Keep only the batch rows in `index` (beam reordering).
    pub fn select(&mut self, index: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(index, 0)?;
            *v = v.index_select(index, 0)?;
        }
        Ok(())
    }
}

/// Cross-attention keys/values of one encoded audio, per decoder layer, `(1, H, 1500, dh)`.
#[derive(Debug, Clone)]
pub struct CrossKv {
    layers: Vec<(Tensor, Tensor)>,
}

/// A Whisper model on a device.
#[derive(Debug, Clone)]
pub struct Whisper {
    config: WhisperConfig,
    device: Device,
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    enc_pos: Tensor,
    enc_layers: Vec<EncoderLayer>,
    enc_ln: LayerNorm,
    embed: Tensor,
    dec_pos: Tensor,
    dec_layers: Vec<DecoderLayer>,
    dec_ln: LayerNorm,
}

impl Whisper {
    /// Build the model from loaded weights (checked against the configuration).
    pub fn new(config: WhisperConfig, w: &Weights) -> Result<Self> {
        let conv1_w = w.get("encoder.conv1.weight")?.clone();
        let device = conv1_w.device().clone();
        if conv1_w.dims() != [config.d_model, config.num_mel_bins, 3] {
            return Err(Error::InvalidArgument(format!(
                "conv1 weight has shape {:?}, config says ({}, {}, 3)",
                conv1_w.dims(),
                config.d_model,
                config.num_mel_bins
            )));
        }
        let conv2_w = w.get("encoder.conv2.weight")?.clone();
        let enc_layers = (0..config.encoder_layers)
            .map(|l| {
                let p = format!("encoder.layers.{l}");
                Ok(EncoderLayer {
                    attn_ln: LayerNorm::load(w, &format!("{p}.self_attn_layer_norm"))?,
                    attn: Attention::load(
                        w,
                        &format!("{p}.self_attn"),
                        config.encoder_attention_heads,
                    )?,
                    mlp: Mlp::load(w, &p)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..config.decoder_layers)
            .map(|l| {
                let p = format!("decoder.layers.{l}");
                let h = config.decoder_attention_heads;
                Ok(DecoderLayer {
                    attn_ln: LayerNorm::load(w, &format!("{p}.self_attn_layer_norm"))?,
                    attn: Attention::load(w, &format!("{p}.self_attn"), h)?,
                    cross_ln: LayerNorm::load(w, &format!("{p}.encoder_attn_layer_norm"))?,
                    cross: Attention::load(w, &format!("{p}.encoder_attn"), h)?,
                    mlp: Mlp::load(w, &p)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Whisper {
            conv1_b: w.get("encoder.conv1.bias")?.clone(),
            conv2_b: w.get("encoder.conv2.bias")?.clone(),
            conv1_w,
            conv2_w,
            enc_pos: w.get("encoder.embed_positions.weight")?.clone(),
            enc_layers,
            enc_ln: LayerNorm::load(w, "encoder.layer_norm")?,
            embed: w.get("decoder.embed_tokens.weight")?.clone(),
            dec_pos: w.get("decoder.embed_positions.weight")?.clone(),
            dec_layers,
            dec_ln: LayerNorm::load(w, "decoder.layer_norm")?,
            config,
            device,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }
    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check_mel(&self, mel: &Tensor) -> Result<()> {
        let (_, m, t) = mel.dims3()?;
        if m != self.config.num_mel_bins || t != crate::mel::N_FRAMES {
            return Err(Error::InvalidArgument(format!(
                "log-mel input must be (batch, {}, {}), got {:?}",
                self.config.num_mel_bins,
                crate::mel::N_FRAMES,
                mel.dims()
            )));
        }
        Ok(())
    }

    fn encode_impl(&self, mel: &Tensor, record: bool) -> Result<(Tensor, Option<ForwardTape>)> {
        self.check_mel(mel)?;
        let mel = mel.to_dtype(DType::F32)?.to_device(&self.device)?;
        let c1 = ops::conv1d_k3(&mel, &self.conv1_w, &self.conv1_b, 1)?;
        let (a1, g1) = ops::gelu_with_derivative(&c1)?;
        let c2 = ops::conv1d_k3(&a1, &self.conv2_w, &self.conv2_b, 2)?;
        let (a2, g2) = ops::gelu_with_derivative(&c2)?;
        let mut x = a2
            .transpose(1, 2)?
            .broadcast_add(&self.enc_pos)?
            .contiguous()?;
        let enc_save = match record {
            false => Save::Nothing,
            true if self.keeps_encoder_probabilities(mel.dim(0)?) => Save::Probabilities,
            true => Save::Statistics,
        };
        let mut layers = Vec::new();
        for layer in &self.enc_layers {
            let h = layer.attn_ln.forward(&x)?;
            let q = split_heads(&layer.attn.q.forward(&h)?, layer.attn.heads)?;
            let (k, v) = layer.attn.keys_values(&h)?;
            let (merged, attn_tape) = layer.attn.attend(&q, &k, &v, None, enc_save)?;
            let x_mid = layer.attn.out.forward_add(&merged, Some(&x))?;
            let (x_out, mlp_tape) = layer.mlp.forward(x_mid, record)?;
            if let (Some(attn), Some(mlp)) = (attn_tape, mlp_tape) {
                layers.push(EncoderLayerTape {
                    attn_ln_in: x,
                    attn,
                    mlp,
                });
            }
            x = x_out;
        }
        let out = self.enc_ln.forward(&x)?;
        let tape = record.then(|| ForwardTape {
            conv1_gelu_grad: g1,
            conv2_gelu_grad: g2,
            enc_layers: layers,
            enc_ln_in: x,
            dec_layers: Vec::new(),
            dec_ln_in: out.zeros_like().unwrap_or_else(|_| out.clone()),
        });
        Ok((out, tape))
    }

    /// Whether a recorded encoder pass keeps its attention probabilities (faster backward) for
    /// a batch of `batch`: only while they fit in [`PROBABILITY_MEMORY_BYTES`]; otherwise the
    /// backward recomputes them tile by tile.
    pub fn keeps_encoder_probabilities(&self, batch: usize) -> bool {
        let t = self.config.max_source_positions;
        let bytes =
            batch * self.config.encoder_layers * self.config.encoder_attention_heads * t * t * 4;
        bytes <= PROBABILITY_MEMORY_BYTES
    }

    /// Encoder forward: log-mel `(B, n_mels, 3000)` -> audio features `(B, 1500, D)`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        Ok(self.encode_impl(mel, false)?.0)
    }

    fn embed_tokens(&self, tokens: &Tensor, offset: usize) -> Result<Tensor> {
        let (b, l) = tokens.dims2()?;
        if offset + l > self.config.max_target_positions {
            return Err(Error::InvalidArgument(format!(
                "{} tokens exceed the decoder's {} positions",
                offset + l,
                self.config.max_target_positions
            )));
        }
        let flat = tokens.flatten_all()?.to_dtype(DType::U32)?;
        let e = self
            .embed
            .index_select(&flat, 0)?
            .reshape((b, l, self.config.d_model))?;
        Ok(e.broadcast_add(&self.dec_pos.narrow(0, offset, l)?)?)
    }

    fn logits_of(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let logits = ops::linear(&x.reshape((b * l, d))?, &self.embed, None, None)?;
        Ok(logits.reshape((b, l, self.config.vocab_size))?)
    }

    /// Teacher-forced decoder logits for a full token prefix: features `(B, 1500, D)`,
    /// tokens `(B, L)` -> `(B, L, vocab)`.
    pub fn decoder_logits(&self, xa: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        self.decode_full(xa, tokens, None)
    }

    fn decode_full(
        &self,
        xa: &Tensor,
        tokens: &Tensor,
        mut tape: Option<&mut ForwardTape>,
    ) -> Result<Tensor> {
        let mut x = self.embed_tokens(tokens, 0)?;
        let dec_save = if tape.is_some() {
            Save::Probabilities
        } else {
            Save::Nothing
        };
        for layer in &self.dec_layers {
            let h = layer.attn_ln.forward(&x)?;
            let q = split_heads(&layer.attn.q.forward(&h)?, layer.attn.heads)?;
            let (k, v) = layer.attn.keys_values(&h)?;
            let (merged, self_tape) = layer.attn.attend(&q, &k, &v, Some(0), dec_save)?;
            let x_a = layer.attn.out.forward_add(&merged, Some(&x))?;
            let h = layer.cross_ln.forward(&x_a)?;
            let q = split_heads(&layer.cross.q.forward(&h)?, layer.cross.heads)?;
            let (k, v) = layer.cross.keys_values(xa)?;
            let (merged, cross_tape) = layer.cross.attend(&q, &k, &v, None, dec_save)?;
            let x_b = layer.cross.out.forward_add(&merged, Some(&x_a))?;
            let (x_out, mlp_tape) = layer.mlp.forward(x_b, tape.is_some())?;
            if let (Some(t), Some(attn), Some(cross), Some(mlp)) =
                (tape.as_deref_mut(), self_tape, cross_tape, mlp_tape)
            {
                t.dec_layers.push(DecoderLayerTape {
                    attn_ln_in: x,
                    attn,
                    cross_ln_in: x_a,
                    cross,
                    mlp,
                });
            }
            x = x_out;
        }
        let out = self.dec_ln.forward(&x)?;
        if let Some(t) = tape {
            t.dec_ln_in = x;
        }
        self.logits_of(&out)
    }

    /// Recorded forward pass: log-mel `(B, n_mels, 3000)` and decoder input tokens `(B, L)` ->
    /// logits `(B, L, vocab)` and the tape for [`Whisper::backward`].
    pub fn forward_recorded(&self, mel: &Tensor, tokens: &Tensor) -> Result<(Tensor, ForwardTape)> {
        let (xa, tape) = self.encode_impl(mel, true)?;
        let mut tape = tape.ok_or_else(|| Error::InvalidArgument("no tape recorded".into()))?;
        let logits = self.decode_full(&xa, tokens, Some(&mut tape))?;
        Ok((logits, tape))
    }

    /// Gradient of a loss w.r.t. the log-mel input, given its gradient w.r.t. the logits of a
    /// recorded forward pass. Returns `(B, n_mels, 3000)`.
    pub fn backward(&self, tape: &ForwardTape, d_logits: &Tensor) -> Result<Tensor> {
        self.backward_prefix(tape, d_logits, crate::mel::N_FRAMES)
    }

    /// [`Whisper::backward`] when only the first `varying_frames` log-mel frames are to be
    /// differentiated (a signal shorter than the 30-s window: the frames after it are treated
    /// as constants). Their gradient is exact; the other frames' is not computed and is
    /// returned as zero. This skips most of the first encoder layer's attention backward and of the
    /// convolutions' backward, whose cost then follows the signal's length.
    pub fn backward_prefix(
        &self,
        tape: &ForwardTape,
        d_logits: &Tensor,
        varying_frames: usize,
    ) -> Result<Tensor> {
        let (b, l, v) = d_logits.dims3()?;
        let d = self.config.d_model;
        let d_out = d_logits
            .reshape((b * l, v))?
            .matmul(&self.embed)?
            .reshape((b, l, d))?;
        let mut dx = self.dec_ln.backward(&tape.dec_ln_in, &d_out)?;
        let mut d_xa: Option<Tensor> = None;
        for (layer, t) in self.dec_layers.iter().zip(&tape.dec_layers).rev() {
            dx = layer.mlp.backward(&t.mlp, &dx)?;
            // Cross-attention: queries from the decoder, keys/values from the audio features.
            let (dq, dk, dv) = layer.cross.backward(&t.cross, &dx)?;
            let d_h = layer.cross.q.backward(&merge_heads(&dq)?)?;
            dx = layer
                .cross_ln
                .backward_residual(&t.cross_ln_in, &d_h, &dx)?;
            let (dk, dv) = (merge_heads(&dk)?, merge_heads(&dv)?);
            let d_feat = input_grad(&[(&layer.cross.k, &dk), (&layer.cross.v, &dv)])?;
            d_xa = Some(match d_xa {
                Some(acc) => (acc + d_feat)?,
                None => d_feat,
            });
            // Causal self-attention (only the audio gradient is wanted, but it flows through
            // the cross-attention queries of earlier layers, so the token path must be kept).
            dx = self_attention_backward(&layer.attn, &layer.attn_ln, &t.attn, &t.attn_ln_in, &dx)?;
        }
        let d_xa =
            d_xa.ok_or_else(|| Error::InvalidArgument("the decoder has no layers".into()))?;
        let t_in = tape.conv1_gelu_grad.dim(2)?;
        let t_enc = tape.conv2_gelu_grad.dim(2)?;
        let frames = varying_frames.min(t_in);
        // Encoder positions whose convolution inputs reach a varying frame: conv1 output j
        // reads frames j-1..=j+1, conv2 output r reads conv1 outputs 2r-1..=2r+1.
        let positions = (frames.div_ceil(2) + 1).min(t_enc);
        let mut dx = self.enc_ln.backward(&tape.enc_ln_in, &d_xa)?;
        for (i, (layer, t)) in self
            .enc_layers
            .iter()
            .zip(&tape.enc_layers)
            .enumerate()
            .rev()
        {
            dx = layer.mlp.backward(&t.mlp, &dx)?;
            dx = if i == 0 && positions < t_enc {
                self_attention_backward_prefix(
                    &layer.attn,
                    &layer.attn_ln,
                    &t.attn,
                    &t.attn_ln_in,
                    &dx,
                    positions,
                )?
            } else {
                self_attention_backward(&layer.attn, &layer.attn_ln, &t.attn, &t.attn_ln_in, &dx)?
            };
        }
        // Positional embedding add is the identity for the gradient; undo the transpose.
        let rows = dx.dim(1)?;
        let d_a2 = dx.transpose(1, 2)?.contiguous()?;
        let d_c2 = (d_a2 * tape.conv2_gelu_grad.narrow(2, 0, rows)?)?;
        let d_a1 = ops::conv1d_k3_input_grad(&d_c2, &self.conv2_w, 2, t_in)?;
        let needed = (frames + 1).min(t_in);
        let d_c1 = (d_a1.narrow(2, 0, needed)? * tape.conv1_gelu_grad.narrow(2, 0, needed)?)?;
        let d_mel = ops::conv1d_k3_input_grad(&d_c1, &self.conv1_w, 1, t_in)?;
        if frames < t_in {
            Ok(d_mel
                .narrow(2, 0, frames)?
                .pad_with_zeros(2, 0, t_in - frames)?)
        } else {
            Ok(d_mel)
        }
    }

    /// Cross-attention keys/values of encoded audio `(1, 1500, D)`, for incremental decoding.
    pub fn cross_kv(&self, xa: &Tensor) -> Result<CrossKv> {
        let layers = self
            .dec_layers
            .iter()
            .map(|layer| layer.cross.keys_values(xa))
            .collect::<Result<Vec<_>>>()?;
        Ok(CrossKv { layers })
    }

    /// An empty self-attention cache.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![None; self.dec_layers.len()],
            len: 0,
        }
    }

    /// Incremental decoder step: new tokens `(B, l)` after `cache.len()` cached ones, all rows
    /// attending to the same audio. Returns the logits of the last new position `(B, vocab)`.
    pub fn decode_step(
        &self,
        tokens: &Tensor,
        cache: &mut KvCache,
        cross: &CrossKv,
    ) -> Result<Tensor> {
        let (b, l) = tokens.dims2()?;
        let offset = cache.len;
        let mut x = self.embed_tokens(tokens, offset)?;
        let d = self.config.d_model;
        for ((layer, slot), (ck, cv)) in self
            .dec_layers
            .iter()
            .zip(cache.layers.iter_mut())
            .zip(&cross.layers)
        {
            let h = layer.attn_ln.forward(&x)?;
            let q = split_heads(&layer.attn.q.forward(&h)?, layer.attn.heads)?;
            let (k_new, v_new) = layer.attn.keys_values(&h)?;
            let (k, v) = match slot.take() {
                Some((k0, v0)) => (
                    Tensor::cat(&[&k0, &k_new], 2)?,
                    Tensor::cat(&[&v0, &v_new], 2)?,
                ),
                None => (k_new, v_new),
            };
            let (merged, _) = layer.attn.attend(&q, &k, &v, Some(offset), Save::Nothing)?;
            *slot = Some((k, v));
            x = (&x + layer.attn.out.forward(&merged)?)?;
            // All rows share the audio: fold the batch into the query axis (no mask needed).
            let h = layer.cross_ln.forward(&x)?.reshape((1, b * l, d))?;
            let q = split_heads(&layer.cross.q.forward(&h)?, layer.cross.heads)?;
            let (merged, _) = layer.cross.attend(&q, ck, cv, None, Save::Nothing)?;
            x = (&x + layer.cross.out.forward(&merged.reshape((b, l, d))?)?)?;
            x = layer.mlp.forward(x, false)?.0;
        }
        cache.len += l;
        let last = x.narrow(1, l - 1, 1)?;
        let out = self.dec_ln.forward(&last)?;
        Ok(self.logits_of(&out)?.squeeze(1)?)
    }
}
