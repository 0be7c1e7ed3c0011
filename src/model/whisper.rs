//! The Whisper encoder/decoder in candle, with a hand-written backward pass to the input.
//!
//! Forward uses candle's layer-norm and the fused kernels of [`super::ops`] (products,
//! attention, exact-erf GELU, convolutions); when a [`ForwardTape`] is recorded,
//! [`Whisper::backward`] propagates a gradient from the decoder logits back to the log-mel
//! input through each block's own backward ([`super::blocks`]): the decoder's tape gives the
//! gradient of the audio features, the encoder's that of the log-mel. Weights are frozen: no
//! weight gradient is ever computed, and only the activations the input gradient needs are
//! kept. OpenAI's `Whisper` (model.py#L221 at f572f216).

use super::blocks::{DecoderLayer, DecoderLayerTape, EncoderLayer, EncoderLayerTape, LayerNorm};
use super::config::WhisperConfig;
use super::ops::{self, Save};
use super::weights::Weights;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Most memory a recorded encoder pass spends on keeping attention probabilities.
pub const PROBABILITY_MEMORY_BYTES: usize = 512 << 20;

/// What a recorded encoder pass saved for [`Whisper::backward`].
#[derive(Debug)]
struct EncoderTape {
    conv1_gelu_grad: Tensor,
    conv2_gelu_grad: Tensor,
    layers: Vec<EncoderLayerTape>,
    ln_in: Tensor,
}

/// What a recorded decoder pass saved for [`Whisper::backward`].
#[derive(Debug)]
struct DecoderTape {
    layers: Vec<DecoderLayerTape>,
    ln_in: Tensor,
}

/// Activations saved by a recorded forward pass, consumed by [`Whisper::backward`].
#[derive(Debug)]
pub struct ForwardTape {
    encoder: EncoderTape,
    decoder: DecoderTape,
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
            return Err(Error::Shape(format!(
                "conv1 weight has shape {:?}, config says ({}, {}, 3)",
                conv1_w.dims(),
                config.d_model,
                config.num_mel_bins
            )));
        }
        let conv2_w = w.get("encoder.conv2.weight")?.clone();
        let enc_layers = (0..config.encoder_layers)
            .map(|l| EncoderLayer::load(w, l, config.encoder_attention_heads))
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..config.decoder_layers)
            .map(|l| DecoderLayer::load(w, l, config.decoder_attention_heads))
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
            return Err(Error::Shape(format!(
                "log-mel input must be (batch, {}, {}), got {:?}",
                self.config.num_mel_bins,
                crate::mel::N_FRAMES,
                mel.dims()
            )));
        }
        Ok(())
    }

    /// OpenAI's `AudioEncoder.forward` (model.py#L143 at f572f216).
    fn encode_impl(&self, mel: &Tensor, record: bool) -> Result<(Tensor, Option<EncoderTape>)> {
        self.encode_tapped(mel, record, None)
    }

    /// [`Whisper::encode_impl`] that also pushes the residual stream after every layer onto
    /// `taps`.
    fn encode_tapped(
        &self,
        mel: &Tensor,
        record: bool,
        mut taps: Option<&mut Vec<Tensor>>,
    ) -> Result<(Tensor, Option<EncoderTape>)> {
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
        let save = match record {
            false => Save::Nothing,
            true if self.keeps_encoder_probabilities(mel.dim(0)?) => Save::Probabilities,
            true => Save::Statistics,
        };
        let mut layers = Vec::new();
        for layer in &self.enc_layers {
            let (x_out, tape) = layer.forward(x, save)?;
            layers.extend(tape);
            x = x_out;
            if let Some(t) = taps.as_deref_mut() {
                t.push(x.clone());
            }
        }
        let out = self.enc_ln.forward(&x)?;
        let tape = record.then_some(EncoderTape {
            conv1_gelu_grad: g1,
            conv2_gelu_grad: g2,
            layers,
            ln_in: x,
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

    /// The encoder's residual stream after each of its layers, `(B, 1500, D)` each (the
    /// activations an anomaly detector watches), and its output features.
    pub fn encode_layers(&self, mel: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut taps = Vec::with_capacity(self.enc_layers.len());
        let (out, _) = self.encode_tapped(mel, false, Some(&mut taps))?;
        Ok((out, taps))
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
        Ok(self.decode_full(xa, tokens, false)?.0)
    }

    /// OpenAI's `TextDecoder.forward` (model.py#L176 at f572f216) over a whole token
    /// prefix; the tape when `record`.
    fn decode_full(
        &self,
        xa: &Tensor,
        tokens: &Tensor,
        record: bool,
    ) -> Result<(Tensor, Option<DecoderTape>)> {
        let mut x = self.embed_tokens(tokens, 0)?;
        let mut layers = Vec::new();
        for layer in &self.dec_layers {
            let (x_out, tape) = layer.forward(x, xa, record)?;
            layers.extend(tape);
            x = x_out;
        }
        let out = self.dec_ln.forward(&x)?;
        let logits = self.logits_of(&out)?;
        Ok((logits, record.then_some(DecoderTape { layers, ln_in: x })))
    }

    /// Recorded forward pass: log-mel `(B, n_mels, 3000)` and decoder input tokens `(B, L)` ->
    /// logits `(B, L, vocab)` and the tape for [`Whisper::backward`].
    pub fn forward_recorded(&self, mel: &Tensor, tokens: &Tensor) -> Result<(Tensor, ForwardTape)> {
        let (xa, encoder) = self.encode_impl(mel, true)?;
        let (logits, decoder) = self.decode_full(&xa, tokens, true)?;
        match (encoder, decoder) {
            (Some(encoder), Some(decoder)) => Ok((logits, ForwardTape { encoder, decoder })),
            _ => Err(Error::Internal("a recorded pass kept no tape".into())),
        }
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
        let d_xa = self.decoder_backward(&tape.decoder, d_logits)?;
        self.encoder_backward(&tape.encoder, &d_xa, varying_frames)
    }

    /// The gradient of the audio features, given that of the logits.
    fn decoder_backward(&self, tape: &DecoderTape, d_logits: &Tensor) -> Result<Tensor> {
        let (b, l, v) = d_logits.dims3()?;
        let d = self.config.d_model;
        let d_out = d_logits
            .reshape((b * l, v))?
            .matmul(&self.embed)?
            .reshape((b, l, d))?;
        let mut dx = self.dec_ln.backward(&tape.ln_in, &d_out)?;
        let mut d_xa: Option<Tensor> = None;
        for (layer, t) in self.dec_layers.iter().zip(&tape.layers).rev() {
            let (d_x, d_feat) = layer.backward(t, &dx)?;
            dx = d_x;
            d_xa = Some(match d_xa {
                Some(acc) => (acc + d_feat)?,
                None => d_feat,
            });
        }
        d_xa.ok_or_else(|| Error::Internal("the decoder has no layers".into()))
    }

    /// The gradient of the log-mel's first `varying_frames` frames (the rest zero), given
    /// that of the audio features.
    fn encoder_backward(
        &self,
        tape: &EncoderTape,
        d_xa: &Tensor,
        varying_frames: usize,
    ) -> Result<Tensor> {
        let t_in = tape.conv1_gelu_grad.dim(2)?;
        let t_enc = tape.conv2_gelu_grad.dim(2)?;
        let frames = varying_frames.min(t_in);
        // Encoder positions whose convolution inputs reach a varying frame: conv1 output j
        // reads frames j-1..=j+1, conv2 output r reads conv1 outputs 2r-1..=2r+1.
        let positions = (frames.div_ceil(2) + 1).min(t_enc);
        let mut dx = self.enc_ln.backward(&tape.ln_in, d_xa)?;
        for (i, (layer, t)) in self.enc_layers.iter().zip(&tape.layers).enumerate().rev() {
            let rows = (i == 0 && positions < t_enc).then_some(positions);
            dx = layer.backward(t, &dx, rows)?;
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
            .map(|layer| layer.cross_keys_values(xa))
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
        let l = tokens.dim(1)?;
        let offset = cache.len;
        let mut x = self.embed_tokens(tokens, offset)?;
        for ((layer, slot), cross) in self
            .dec_layers
            .iter()
            .zip(cache.layers.iter_mut())
            .zip(&cross.layers)
        {
            x = layer.step(&x, slot, offset, cross)?;
        }
        cache.len += l;
        let last = x.narrow(1, l - 1, 1)?;
        let out = self.dec_ln.forward(&last)?;
        Ok(self.logits_of(&out)?.squeeze(1)?)
    }
}
