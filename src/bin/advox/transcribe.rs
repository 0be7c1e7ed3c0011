//! `advox transcribe`.

use crate::common;
use advox::audio::read_audio_16k_mono;
use advox::mel::FrontEnd;
use advox::model::{BeamStop, DecodeOptions};
use advox::transcribe::transcribe;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;

/// Transcribe audio files (WAV, FLAC, MP3, OGG…; any rate and channel count).
#[derive(clap::Args)]
pub struct Args {
    /// Audio files to transcribe.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Model directory (Hugging Face or CTranslate2 layout) or known name (tiny.en, base).
    /// Default: $ADVOX_MODEL, else tiny.en (fetched on first use).
    #[arg(long)]
    model: Option<String>,
    /// Beam size; 1 is greedy search.
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Language code for multilingual models (default: detect).
    #[arg(long)]
    language: Option<String>,
    /// Decode with timestamps (as OpenAI's `transcribe` and faster-whisper do by default) and
    /// print the segments.
    #[arg(long)]
    timestamps: bool,
    /// How the 30-s window past a short recording is filled: `openai` (padded audio, as
    /// OpenAI's whisper and transformers) or `faster-whisper` (zero-padded features).
    #[arg(long, value_parser = common::front_end_parser(), default_value = "openai")]
    front_end: FrontEnd,
    /// When beam search stops: `openai` (once `--beam` hypotheses have ended, as OpenAI's
    /// whisper and faster-whisper) or `hugging-face` (on while a running hypothesis could still
    /// outrank an ended one, as transformers' `generate`).
    #[arg(long, value_enum, default_value = "openai")]
    beam_stop: BeamStopArg,
    /// Print one JSON object per file: file, text, tokens, seconds (and segments).
    #[arg(long)]
    json: bool,
}

/// `--beam-stop`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BeamStopArg {
    /// OpenAI's whisper and faster-whisper.
    Openai,
    /// Hugging Face transformers.
    HuggingFace,
}

impl From<BeamStopArg> for BeamStop {
    fn from(a: BeamStopArg) -> Self {
        match a {
            BeamStopArg::Openai => BeamStop::FirstFinished,
            BeamStopArg::HuggingFace => BeamStop::HUGGING_FACE,
        }
    }
}

pub fn run(args: Args, device: &str) -> Result<()> {
    if args.beam == 0 {
        bail!("--beam must be at least 1");
    }
    let device = common::device(device)?;
    let model = common::load_model(args.model.as_deref(), &device)?;
    let opts = DecodeOptions {
        beam_size: args.beam,
        language: args.language.clone(),
        timestamps: args.timestamps,
        front_end: args.front_end,
        beam_stop: args.beam_stop.into(),
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(args.files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut failures = 0;
    for file in &args.files {
        bar.set_message(file.display().to_string());
        let start = Instant::now();
        let result = read_audio_16k_mono(file)
            .map_err(anyhow::Error::from)
            .and_then(|samples| {
                transcribe(&model, &samples, &opts)
                    .with_context(|| format!("transcribing {}", file.display()))
            });
        bar.inc(1);
        match result {
            Ok(t) => {
                let seconds = start.elapsed().as_secs_f64();
                bar.suspend(|| {
                    if args.json {
                        let line = serde_json::json!({
                            "file": file.display().to_string(),
                            "text": t.text,
                            "tokens": t.tokens,
                            "seconds": (seconds * 1000.0).round() / 1000.0,
                            "language": t.language,
                            "segments": t.segments,
                        });
                        println!("{line}");
                    } else if args.timestamps {
                        if args.files.len() > 1 {
                            println!("{}:", file.display());
                        }
                        for s in &t.segments {
                            println!("[{:6.2} → {:6.2}] {}", s.start, s.end, s.text);
                        }
                    } else if args.files.len() > 1 {
                        println!("{}: {}", file.display(), t.text);
                    } else {
                        println!("{}", t.text);
                    }
                });
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("error: {}", common::error_text(&e)));
            }
        }
    }
    bar.finish_and_clear();
    if failures > 0 {
        bail!("{failures} of {} files failed", args.files.len());
    }
    Ok(())
}
