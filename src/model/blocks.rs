//! The blocks of the Whisper network, each with its own forward pass and the backward pass of
//! its input gradient (weights are frozen: no weight gradient is ever computed). The doc
//! comments name the part of OpenAI's `whisper/model.py` each block ports (line anchors at
//! commit f572f2161ba831bae131364c3bffdead7af6d210, as candle-transformers cites them).

use super::ops::{self, AttentionSaved, Save};
use super::weights::Weights;
use crate::{Error, Result};
use candle_core::Tensor;

const LN_EPS: f64 = 1e-5;

/// A frozen linear layer `y = x Wᵀ + b` (OpenAI's `Linear`, model.py#L36).
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// `(out, in)`.
    pub(crate) weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn load(w: &Weights, name: &str, bias: bool) -> Result<Self> {
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
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_add(x, None)
    }
    /// `residual + forward(x)` in one pass (`residual` shaped as the output).
    pub(crate) fn forward_add(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
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
    pub(crate) fn backward(&self, dy: &Tensor) -> Result<Tensor> {
        input_grad(&[(self, dy)])
    }
}

/// Summed input gradient `Σ dyᵢ Wᵢ` of linear layers sharing one input, `dyᵢ` `(..., outᵢ)`.
fn input_grad(terms: &[(&Linear, &Tensor)]) -> Result<Tensor> {
    let (_, first) = terms
        .first()
        .ok_or_else(|| Error::Internal("no linear layer".into()))?;
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

/// Layer normalisation over the last axis (OpenAI's `LayerNorm`, model.py#L31).
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    pub(crate) fn load(w: &Weights, name: &str) -> Result<Self> {
        Ok(LayerNorm {
            gamma: w.get(&format!("{name}.weight"))?.clone(),
            beta: w.get(&format!("{name}.bias"))?.clone(),
        })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.gamma,
            &self.beta,
            LN_EPS as f32,
        )?)
    }
    /// `dx = r (g - mean(g) - x̂ mean(g x̂))` with `g = dy γ`, recomputing `x̂` and `r` from `x`.
    pub(crate) fn backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        ops::layer_norm_backward(x, &self.gamma, dy, LN_EPS, None)
    }
    /// `residual +` [`LayerNorm::backward`], in one pass: the gradient of a pre-norm block's
    /// input `x + f(ln(x))`, given `residual` = the block output's gradient.
    pub(crate) fn backward_residual(
        &self,
        x: &Tensor,
        dy: &Tensor,
        residual: &Tensor,
    ) -> Result<Tensor> {
        ops::layer_norm_backward(x, &self.gamma, dy, LN_EPS, Some(residual))
    }
}

/// Multi-head attention: projections, fused scaled-dot-product attention and the output
/// projection (OpenAI's `MultiHeadAttention`, model.py#L62; its `qkv_attention` scales q and k
/// by `dh^-1/4` each, here q·k by `1/√dh` once).
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

/// The feed-forward block with its pre-norm and residual: `x + fc2(gelu(fc1(ln(x))))`
/// (the last line of OpenAI's `ResidualAttentionBlock.forward`, model.py#L111).
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

/// What an [`Mlp`] saved for its backward pass.
#[derive(Debug)]
struct MlpTape {
    ln_in: Tensor,
    /// GELU derivative at the fc1 output.
    gelu_grad: Tensor,
}

/// A pre-norm self-attention block with its residual, `x + attn(ln(x))` (the first line of
/// OpenAI's `ResidualAttentionBlock.forward`, model.py#L111).
#[derive(Debug, Clone)]
struct SelfAttention {
    ln: LayerNorm,
    attn: Attention,
}

/// What a [`SelfAttention`] or [`CrossAttention`] block saved for its backward pass.
#[derive(Debug)]
struct AttentionTape {
    ln_in: Tensor,
    saved: AttentionSaved,
}

impl SelfAttention {
    fn load(w: &Weights, layer: &str, heads: usize) -> Result<Self> {
        Ok(SelfAttention {
            ln: LayerNorm::load(w, &format!("{layer}.self_attn_layer_norm"))?,
            attn: Attention::load(w, &format!("{layer}.self_attn"), heads)?,
        })
    }

    /// `x + attn(ln(x))`, causal from `causal_offset` if given; the tape when `save` keeps
    /// anything.
    fn forward(
        &self,
        x: Tensor,
        causal_offset: Option<usize>,
        save: Save,
    ) -> Result<(Tensor, Option<AttentionTape>)> {
        let h = self.ln.forward(&x)?;
        let q = split_heads(&self.attn.q.forward(&h)?, self.attn.heads)?;
        let (k, v) = self.attn.keys_values(&h)?;
        let (merged, saved) = self.attn.attend(&q, &k, &v, causal_offset, save)?;
        let out = self.attn.out.forward_add(&merged, Some(&x))?;
        Ok((out, saved.map(|saved| AttentionTape { ln_in: x, saved })))
    }

    /// One incremental decoding step: `x` `(B, l, D)` after `offset` cached positions, whose
    /// keys and values `slot` holds (and gets this step's appended).
    fn step(
        &self,
        x: &Tensor,
        slot: &mut Option<(Tensor, Tensor)>,
        offset: usize,
    ) -> Result<Tensor> {
        let h = self.ln.forward(x)?;
        let q = split_heads(&self.attn.q.forward(&h)?, self.attn.heads)?;
        let (k_new, v_new) = self.attn.keys_values(&h)?;
        let (k, v) = match slot.take() {
            Some((k0, v0)) => (
                Tensor::cat(&[&k0, &k_new], 2)?,
                Tensor::cat(&[&v0, &v_new], 2)?,
            ),
            None => (k_new, v_new),
        };
        let (merged, _) = self.attn.attend(&q, &k, &v, Some(offset), Save::Nothing)?;
        *slot = Some((k, v));
        Ok((x + self.attn.out.forward(&merged)?)?)
    }

    /// The input gradient, given the output's `dx`.
    fn backward(&self, t: &AttentionTape, dx: &Tensor) -> Result<Tensor> {
        let (dq, dk, dv) = self.attn.backward(&t.saved, dx)?;
        let (dq, dk, dv) = (merge_heads(&dq)?, merge_heads(&dk)?, merge_heads(&dv)?);
        let a = &self.attn;
        let d_h = input_grad(&[(&a.q, &dq), (&a.k, &dk), (&a.v, &dv)])?;
        self.ln.backward_residual(&t.ln_in, &d_h, dx)
    }

    /// [`SelfAttention::backward`] for the first `rows` positions only, when only those
    /// positions' inputs can change: `(B, rows, D)`. The output projection's backward still
    /// runs over every position, since every query attends to the leading keys.
    fn backward_prefix(&self, t: &AttentionTape, dx: &Tensor, rows: usize) -> Result<Tensor> {
        let a = &self.attn;
        let d_o = split_heads(&a.out.backward(dx)?, a.heads)?;
        let (dq, dk, dv) = ops::attention_backward_prefix(&t.saved, &d_o, rows)?;
        let (dq, dk, dv) = (merge_heads(&dq)?, merge_heads(&dk)?, merge_heads(&dv)?);
        let d_h = input_grad(&[(&a.q, &dq), (&a.k, &dk), (&a.v, &dv)])?;
        let lead = |t: &Tensor| t.narrow(1, 0, rows);
        self.ln
            .backward_residual(&lead(&t.ln_in)?, &d_h, &lead(dx)?)
    }
}

/// A pre-norm cross-attention block with its residual, `x + cross_attn(ln(x), xa)` (the second
/// line of OpenAI's `ResidualAttentionBlock.forward`, model.py#L111).
#[derive(Debug, Clone)]
struct CrossAttention {
    ln: LayerNorm,
    attn: Attention,
}

impl CrossAttention {
    fn load(w: &Weights, layer: &str, heads: usize) -> Result<Self> {
        Ok(CrossAttention {
            ln: LayerNorm::load(w, &format!("{layer}.encoder_attn_layer_norm"))?,
            attn: Attention::load(w, &format!("{layer}.encoder_attn"), heads)?,
        })
    }

    /// `x + attn(ln(x), xa)`; the tape when `save` keeps anything.
    fn forward(
        &self,
        x: Tensor,
        xa: &Tensor,
        save: Save,
    ) -> Result<(Tensor, Option<AttentionTape>)> {
        let h = self.ln.forward(&x)?;
        let q = split_heads(&self.attn.q.forward(&h)?, self.attn.heads)?;
        let (k, v) = self.attn.keys_values(xa)?;
        let (merged, saved) = self.attn.attend(&q, &k, &v, None, save)?;
        let out = self.attn.out.forward_add(&merged, Some(&x))?;
        Ok((out, saved.map(|saved| AttentionTape { ln_in: x, saved })))
    }

    /// One incremental decoding step of `x` `(B, l, D)`, every row attending to the same
    /// audio, whose keys and values are `(ck, cv)`: the batch is folded into the query axis
    /// (no mask needed).
    fn step(&self, x: &Tensor, ck: &Tensor, cv: &Tensor) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let h = self.ln.forward(x)?.reshape((1, b * l, d))?;
        let q = split_heads(&self.attn.q.forward(&h)?, self.attn.heads)?;
        let (merged, _) = self.attn.attend(&q, ck, cv, None, Save::Nothing)?;
        Ok((x + self.attn.out.forward(&merged.reshape((b, l, d))?)?)?)
    }

    /// The gradients of the input and of the audio features, given the output's `dx`.
    fn backward(&self, t: &AttentionTape, dx: &Tensor) -> Result<(Tensor, Tensor)> {
        // Queries from the decoder, keys/values from the audio features.
        let (dq, dk, dv) = self.attn.backward(&t.saved, dx)?;
        let d_h = self.attn.q.backward(&merge_heads(&dq)?)?;
        let d_x = self.ln.backward_residual(&t.ln_in, &d_h, dx)?;
        let (dk, dv) = (merge_heads(&dk)?, merge_heads(&dv)?);
        let d_feat = input_grad(&[(&self.attn.k, &dk), (&self.attn.v, &dv)])?;
        Ok((d_x, d_feat))
    }
}

/// One encoder layer: self-attention, then the MLP (OpenAI's `ResidualAttentionBlock`
/// without cross-attention, model.py#L111).
#[derive(Debug, Clone)]
pub(crate) struct EncoderLayer {
    attn: SelfAttention,
    mlp: Mlp,
}

/// What an [`EncoderLayer`] saved for its backward pass.
#[derive(Debug)]
pub(crate) struct EncoderLayerTape {
    attn: AttentionTape,
    mlp: MlpTape,
}

impl EncoderLayer {
    /// Encoder layer `index` of the weights.
    pub(crate) fn load(w: &Weights, index: usize, heads: usize) -> Result<Self> {
        let p = format!("encoder.layers.{index}");
        Ok(EncoderLayer {
            attn: SelfAttention::load(w, &p, heads)?,
            mlp: Mlp::load(w, &p)?,
        })
    }

    /// The layer on `x` `(B, T, D)`; the tape when `save` keeps anything.
    pub(crate) fn forward(
        &self,
        x: Tensor,
        save: Save,
    ) -> Result<(Tensor, Option<EncoderLayerTape>)> {
        let (x, attn) = self.attn.forward(x, None, save)?;
        let (x, mlp) = self.mlp.forward(x, attn.is_some())?;
        Ok((
            x,
            attn.zip(mlp)
                .map(|(attn, mlp)| EncoderLayerTape { attn, mlp }),
        ))
    }

    /// The input gradient, given the output's `dx`; with `rows`, only the first `rows`
    /// positions' (see [`SelfAttention::backward_prefix`]).
    pub(crate) fn backward(
        &self,
        t: &EncoderLayerTape,
        dx: &Tensor,
        rows: Option<usize>,
    ) -> Result<Tensor> {
        let dx = self.mlp.backward(&t.mlp, dx)?;
        match rows {
            Some(rows) => self.attn.backward_prefix(&t.attn, &dx, rows),
            None => self.attn.backward(&t.attn, &dx),
        }
    }
}

/// One decoder layer: causal self-attention, cross-attention to the audio, then the MLP
/// (OpenAI's `ResidualAttentionBlock` with cross-attention, model.py#L111).
#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    attn: SelfAttention,
    cross: CrossAttention,
    mlp: Mlp,
}

/// What a [`DecoderLayer`] saved for its backward pass.
#[derive(Debug)]
pub(crate) struct DecoderLayerTape {
    attn: AttentionTape,
    cross: AttentionTape,
    mlp: MlpTape,
}

impl DecoderLayer {
    /// Decoder layer `index` of the weights.
    pub(crate) fn load(w: &Weights, index: usize, heads: usize) -> Result<Self> {
        let p = format!("decoder.layers.{index}");
        Ok(DecoderLayer {
            attn: SelfAttention::load(w, &p, heads)?,
            cross: CrossAttention::load(w, &p, heads)?,
            mlp: Mlp::load(w, &p)?,
        })
    }

    /// The layer on token states `x` `(B, L, D)` attending to audio features `xa`, causal
    /// from position 0; the tape when `record`.
    pub(crate) fn forward(
        &self,
        x: Tensor,
        xa: &Tensor,
        record: bool,
    ) -> Result<(Tensor, Option<DecoderLayerTape>)> {
        let save = if record {
            Save::Probabilities
        } else {
            Save::Nothing
        };
        let (x, attn) = self.attn.forward(x, Some(0), save)?;
        let (x, cross) = self.cross.forward(x, xa, save)?;
        let (x, mlp) = self.mlp.forward(x, record)?;
        let tape = match (attn, cross, mlp) {
            (Some(attn), Some(cross), Some(mlp)) => Some(DecoderLayerTape { attn, cross, mlp }),
            _ => None,
        };
        Ok((x, tape))
    }

    /// Cross-attention keys and values of audio features `xa`, for [`DecoderLayer::step`].
    pub(crate) fn cross_keys_values(&self, xa: &Tensor) -> Result<(Tensor, Tensor)> {
        self.cross.attn.keys_values(xa)
    }

    /// One incremental decoding step (see [`SelfAttention::step`], [`CrossAttention::step`]).
    pub(crate) fn step(
        &self,
        x: &Tensor,
        slot: &mut Option<(Tensor, Tensor)>,
        offset: usize,
        cross: &(Tensor, Tensor),
    ) -> Result<Tensor> {
        let x = self.attn.step(x, slot, offset)?;
        let x = self.cross.step(&x, &cross.0, &cross.1)?;
        Ok(self.mlp.forward(x, false)?.0)
    }

    /// The gradients of the input and of the audio features, given the output's `dx`.
    pub(crate) fn backward(&self, t: &DecoderLayerTape, dx: &Tensor) -> Result<(Tensor, Tensor)> {
        let dx = self.mlp.backward(&t.mlp, dx)?;
        let (dx, d_feat) = self.cross.backward(&t.cross, &dx)?;
        // Causal self-attention: only the audio gradient is wanted, but it flows through the
        // cross-attention queries of earlier layers, so the token path must be kept.
        Ok((self.attn.backward(&t.attn, &dx)?, d_feat))
    }
}
