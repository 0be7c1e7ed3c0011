//! Model weights by canonical (Hugging Face) name, loaded from either supported layout, and the
//! conversion of a CTranslate2 directory into the Hugging Face layout.

use super::config::WhisperConfig;
use super::ct2::{read_ct2, Ct2Model};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Which on-disk layout a model directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// CTranslate2 / faster-whisper: `model.bin`, `config.json`, `tokenizer.json`.
    Ct2,
    /// Hugging Face: `config.json`, `model.safetensors`, `tokenizer.json`.
    HuggingFace,
}

/// Named weight tensors (f32), keyed by Hugging Face names such as
/// `model.encoder.layers.0.self_attn.q_proj.weight`.
#[derive(Debug, Clone)]
pub struct Weights {
    /// The tensors.
    pub tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// A tensor by name, or an error naming what is missing.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::InvalidArgument(format!("model weights lack the tensor {name}")))
    }
}

/// Detect the layout of a model directory.
pub fn detect_format(dir: &Path) -> Result<ModelFormat> {
    if !dir.is_dir() {
        return Err(Error::bad_model(dir, "not a directory"));
    }
    if dir.join("model.safetensors").is_file() {
        Ok(ModelFormat::HuggingFace)
    } else if dir.join("model.bin").is_file() {
        Ok(ModelFormat::Ct2)
    } else {
        Err(Error::bad_model(
            dir,
            "neither model.safetensors (Hugging Face) nor model.bin (CTranslate2) is present",
        ))
    }
}

/// Load the configuration and weights of a model directory of either layout, as f32 on `device`.
pub fn load_weights(dir: &Path, device: &Device) -> Result<(WhisperConfig, Weights)> {
    match detect_format(dir)? {
        ModelFormat::HuggingFace => load_hf(dir, device),
        ModelFormat::Ct2 => load_ct2(dir, device),
    }
}

fn load_hf(dir: &Path, device: &Device) -> Result<(WhisperConfig, Weights)> {
    let config = WhisperConfig::from_hf_dir(dir)?;
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_model(&path, format!("not a safetensors file: {e}")))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<usize> = view.shape().to_vec();
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            safetensors::Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::bad_model(
                    &path,
                    format!("{name}: unsupported dtype {other:?}"),
                ))
            }
        };
        let name = name.strip_prefix("model.").unwrap_or(&name).to_string();
        tensors.insert(name, Tensor::from_vec(values, shape, device)?);
    }
    // Some exports name the tied output projection separately; the model uses embed_tokens.
    tensors.remove("proj_out.weight");
    Ok((config, Weights { tensors }))
}

/// Map of CTranslate2 names to Hugging Face names for one attention block.
fn attn_names(ct2: &str, hf: &str, fused_qkv: bool) -> Vec<(String, String)> {
    let mut v = vec![
        (
            format!("{ct2}/layer_norm/gamma"),
            format!("{hf}_layer_norm.weight"),
        ),
        (
            format!("{ct2}/layer_norm/beta"),
            format!("{hf}_layer_norm.bias"),
        ),
    ];
    if !fused_qkv {
        v.push((
            format!("{ct2}/linear_2/weight"),
            format!("{hf}.out_proj.weight"),
        ));
        v.push((
            format!("{ct2}/linear_2/bias"),
            format!("{hf}.out_proj.bias"),
        ));
    } else {
        v.push((
            format!("{ct2}/linear_1/weight"),
            format!("{hf}.out_proj.weight"),
        ));
        v.push((
            format!("{ct2}/linear_1/bias"),
            format!("{hf}.out_proj.bias"),
        ));
    }
    v
}

fn load_ct2(dir: &Path, device: &Device) -> Result<(WhisperConfig, Weights)> {
    let path = dir.join("model.bin");
    let model = read_ct2(&path)?;
    let config = ct2_config(dir, &model, &path)?;
    let mut tensors = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, data: Vec<f32>| -> Result<()> {
        tensors.insert(name, Tensor::from_vec(data, shape, device)?);
        Ok(())
    };
    let copy = |ct: &str,
                hf: &str,
                put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>) -> Result<()>|
     -> Result<()> {
        let (shape, data) = model.get(ct, &path)?;
        put(hf.to_string(), shape, data)
    };
    let d = config.d_model;
    // Split a fused [n*d, d] weight / [n*d] bias into n parts.
    let split = |ct: &str, parts: usize| -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let (shape, data) = model.get(ct, &path)?;
        if shape.first() != Some(&(parts * d)) {
            return Err(Error::bad_model(
                &path,
                format!("{ct}: expected {} rows, shape {shape:?}", parts * d),
            ));
        }
        let chunk = data.len() / parts;
        let mut sub_shape = shape.clone();
        sub_shape[0] = d;
        Ok(data
            .chunks(chunk)
            .map(|c| (sub_shape.clone(), c.to_vec()))
            .collect())
    };
    for (ct, hf) in [
        ("encoder/conv1/weight", "encoder.conv1.weight"),
        ("encoder/conv1/bias", "encoder.conv1.bias"),
        ("encoder/conv2/weight", "encoder.conv2.weight"),
        ("encoder/conv2/bias", "encoder.conv2.bias"),
        (
            "encoder/position_encodings/encodings",
            "encoder.embed_positions.weight",
        ),
        ("encoder/layer_norm/gamma", "encoder.layer_norm.weight"),
        ("encoder/layer_norm/beta", "encoder.layer_norm.bias"),
        ("decoder/embeddings/weight", "decoder.embed_tokens.weight"),
        (
            "decoder/position_encodings/encodings",
            "decoder.embed_positions.weight",
        ),
        ("decoder/layer_norm/gamma", "decoder.layer_norm.weight"),
        ("decoder/layer_norm/beta", "decoder.layer_norm.bias"),
    ] {
        copy(ct, hf, &mut put)?;
    }
    let ffn = |ct: &str, hf: &str| {
        vec![
            (
                format!("{ct}/ffn/layer_norm/gamma"),
                format!("{hf}.final_layer_norm.weight"),
            ),
            (
                format!("{ct}/ffn/layer_norm/beta"),
                format!("{hf}.final_layer_norm.bias"),
            ),
            (
                format!("{ct}/ffn/linear_0/weight"),
                format!("{hf}.fc1.weight"),
            ),
            (format!("{ct}/ffn/linear_0/bias"), format!("{hf}.fc1.bias")),
            (
                format!("{ct}/ffn/linear_1/weight"),
                format!("{hf}.fc2.weight"),
            ),
            (format!("{ct}/ffn/linear_1/bias"), format!("{hf}.fc2.bias")),
        ]
    };
    let fused_self = |ct: &str,
                      hf: &str,
                      put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>) -> Result<()>|
     -> Result<()> {
        let w = split(&format!("{ct}/linear_0/weight"), 3)?;
        let b = split(&format!("{ct}/linear_0/bias"), 3)?;
        for (i, p) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            put(format!("{hf}.{p}.weight"), w[i].0.clone(), w[i].1.clone())?;
            if *p != "k_proj" {
                put(format!("{hf}.{p}.bias"), b[i].0.clone(), b[i].1.clone())?;
            }
        }
        Ok(())
    };
    let stacks = [
        ("encoder", config.encoder_layers),
        ("decoder", config.decoder_layers),
    ];
    for (stack, layers) in stacks {
        for l in 0..layers {
            let ct = format!("{stack}/layer_{l}");
            let hf = format!("{stack}.layers.{l}");
            let (self_ct, self_hf) = (format!("{ct}/self_attention"), format!("{hf}.self_attn"));
            fused_self(&self_ct, &self_hf, &mut put)?;
            let mut names = attn_names(&self_ct, &self_hf, true);
            if stack == "decoder" {
                let cross = format!("{ct}/attention");
                let cross_hf = format!("{hf}.encoder_attn");
                copy(
                    &format!("{cross}/linear_0/weight"),
                    &format!("{cross_hf}.q_proj.weight"),
                    &mut put,
                )?;
                copy(
                    &format!("{cross}/linear_0/bias"),
                    &format!("{cross_hf}.q_proj.bias"),
                    &mut put,
                )?;
                let kv_w = split(&format!("{cross}/linear_1/weight"), 2)?;
                let kv_b = split(&format!("{cross}/linear_1/bias"), 2)?;
                put(
                    format!("{cross_hf}.k_proj.weight"),
                    kv_w[0].0.clone(),
                    kv_w[0].1.clone(),
                )?;
                put(
                    format!("{cross_hf}.v_proj.weight"),
                    kv_w[1].0.clone(),
                    kv_w[1].1.clone(),
                )?;
                put(
                    format!("{cross_hf}.v_proj.bias"),
                    kv_b[1].0.clone(),
                    kv_b[1].1.clone(),
                )?;
                names.extend(attn_names(&cross, &cross_hf, false));
            }
            names.extend(ffn(&ct, &hf));
            for (c, h) in names {
                copy(&c, &h, &mut put)?;
            }
        }
    }
    Ok((config, Weights { tensors }))
}

/// Derive the configuration of a CTranslate2 Whisper model from its tensors and `config.json`.
fn ct2_config(dir: &Path, model: &Ct2Model, path: &Path) -> Result<WhisperConfig> {
    if !model.spec.is_empty() && model.spec != "WhisperSpec" {
        return Err(Error::bad_model(
            path,
            format!("a {} model, not Whisper", model.spec),
        ));
    }
    let dims = |name: &str| -> Result<Vec<usize>> {
        model
            .variables
            .get(name)
            .map(|v| v.shape.clone())
            .ok_or_else(|| Error::bad_model(path, format!("missing variable {name}")))
    };
    let conv1 = dims("encoder/conv1/weight")?;
    let enc_pos = dims("encoder/position_encodings/encodings")?;
    let dec_pos = dims("decoder/position_encodings/encodings")?;
    let emb = dims("decoder/embeddings/weight")?;
    if conv1.len() != 3 || enc_pos.len() != 2 || dec_pos.len() != 2 || emb.len() != 2 {
        return Err(Error::bad_model(path, "unexpected tensor ranks"));
    }
    let d_model = conv1[0];
    let heads = |name: &str| {
        model
            .scalar(name)
            .map(|h| h as usize)
            .unwrap_or(d_model / 64)
    };
    #[derive(serde::Deserialize, Default)]
    struct Ct2Json {
        #[serde(default)]
        suppress_ids: Vec<u32>,
        #[serde(default)]
        suppress_ids_begin: Vec<u32>,
    }
    let json_path = dir.join("config.json");
    let json: Ct2Json = match std::fs::read_to_string(&json_path) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| Error::bad_model(&json_path, format!("malformed config.json: {e}")))?,
        Err(_) => Ct2Json::default(),
    };
    let cfg = WhisperConfig {
        num_mel_bins: conv1[1],
        max_source_positions: enc_pos[0],
        max_target_positions: dec_pos[0],
        d_model,
        encoder_layers: model.count_layers("encoder"),
        encoder_attention_heads: heads("encoder/num_heads"),
        decoder_layers: model.count_layers("decoder"),
        decoder_attention_heads: heads("decoder/num_heads"),
        vocab_size: emb[0],
        suppress_tokens: json.suppress_ids,
        begin_suppress_tokens: json.suppress_ids_begin,
    };
    cfg.validate(path)?;
    Ok(cfg)
}

/// Write a model in the Hugging Face layout (`config.json`, `model.safetensors` in f16,
/// `tokenizer.json` copied) into `out_dir`, from weights loaded on the CPU.
pub fn save_hf(
    out_dir: &Path,
    config: &WhisperConfig,
    weights: &Weights,
    tokenizer: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut hf_config =
        serde_json::to_value(config).map_err(|e| Error::Internal(format!("config: {e}")))?;
    if let Some(obj) = hf_config.as_object_mut() {
        obj.insert("model_type".into(), "whisper".into());
        obj.insert(
            "architectures".into(),
            serde_json::json!(["WhisperForConditionalGeneration"]),
        );
    }
    let mut names: Vec<&String> = weights.tensors.keys().collect();
    names.sort();
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let t = &weights.tensors[name];
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        buffers.push((format!("model.{name}"), t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::InvalidArgument(format!("{n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let st_path = out_dir.join("model.safetensors");
    crate::atomic_file::write_atomic(&st_path, |tmp| {
        safetensors::serialize_to_file(views, None, tmp)
            .map_err(|e| Error::io(&st_path, std::io::Error::other(e.to_string())))
    })?;
    let cfg_text = serde_json::to_string_pretty(&hf_config)
        .map_err(|e| Error::Internal(format!("config: {e}")))?;
    let cfg_path = out_dir.join("config.json");
    crate::atomic_file::write_bytes_atomic(&cfg_path, cfg_text.as_bytes())?;
    let tok_dst = out_dir.join("tokenizer.json");
    std::fs::copy(tokenizer, &tok_dst).map_err(|e| Error::io(tokenizer, e))?;
    Ok(())
}
