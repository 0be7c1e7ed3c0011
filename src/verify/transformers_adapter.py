"""advox's adapter for Hugging Face transformers (PyTorch): transcribe WAV files with a Whisper
model directory in the Hugging Face layout (config.json, model.safetensors, tokenizer.json:
what `advox model fetch` keeps) and print one JSON object per file and setting:
{"file", "beam", "timestamps", "text"} (or {"file", "beam", "timestamps", "error"}).

Run by `advox attack --verify transformers` with the venv advox provisions; usable by hand:
  python transformers_adapter.py --model DIR [--beams 5,1] [--language en] FILE.wav...
"""
# Not named transformers.py: the script's folder comes first on sys.path and would shadow
# the package.
import argparse
import json
import os
import re
import sys
import wave

SAMPLE_RATE = 16000
# Whisper's language codes in token order (OpenAI whisper/tokenizer.py LANGUAGES).
LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su yue"
).split()


def read_wav(path):
    """16-bit (or 32-bit float) PCM WAV at 16 kHz as float32 samples in [-1, 1], channels mixed."""
    import numpy as np

    with wave.open(path, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz; the adapter reads 16 kHz WAV (advox writes it)")
    if width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples; the adapter reads 16- or 32-bit PCM")
    return x.reshape(-1, channels).mean(axis=1)


def load(model_dir, threads):
    """The model, feature extractor and tokenizer, with the generation settings Whisper's
    checkpoints on the Hub carry (advox's directories hold only config.json)."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    from transformers.utils import logging

    # Errors only on stderr: advox reports the last line of a failing adapter.
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.set_num_threads(threads)
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    # Whisper's feed-forward layers are 4 x d_model wide; advox's config leaves that implicit.
    raw.setdefault("encoder_ffn_dim", 4 * raw["d_model"])
    raw.setdefault("decoder_ffn_dim", 4 * raw["d_model"])
    tokenizer = WhisperTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    tid = tokenizer.convert_tokens_to_ids
    eot = tid("<|endoftext|>")
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        raw.setdefault(key, eot)
    raw.setdefault("decoder_start_token_id", tid("<|startoftranscript|>"))
    # Generation settings go to the generation config only (transformers warns otherwise).
    suppress = raw.pop("suppress_tokens", None) or []
    begin_suppress = raw.pop("begin_suppress_tokens", None)
    config = WhisperConfig(**raw)
    model = WhisperForConditionalGeneration.from_pretrained(
        model_dir, config=config, dtype=torch.float32
    ).eval()
    g = model.generation_config
    g.decoder_start_token_id = tid("<|startoftranscript|>")
    g.eos_token_id = g.pad_token_id = g.bos_token_id = eot
    g.no_timestamps_token_id = tid("<|notimestamps|>")
    g.prev_sot_token_id = tid("<|startofprev|>")
    g.max_initial_timestamp_index = 50
    g.max_length = config.max_target_positions
    g.suppress_tokens = suppress
    space = tokenizer.encode(" ", add_special_tokens=False)
    g.begin_suppress_tokens = begin_suppress or [*space, eot]
    g.is_multilingual = config.vocab_size >= 51865
    if g.is_multilingual:
        g.lang_to_id = {
            f"<|{c}|>": tid(f"<|{c}|>")
            for c in LANGUAGE_CODES
            if tid(f"<|{c}|>") != tokenizer.unk_token_id
        }
        g.task_to_id = {"transcribe": tid("<|transcribe|>"), "translate": tid("<|translate|>")}
    g.forced_decoder_ids = None
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return model, features, tokenizer


def transcribe(model, features, tokenizer, x, beam, timestamps, language):
    """Whisper's `generate` as a pipeline runs it: temperature 0, no conditioning across
    windows; recordings over 30 s go through transformers' long-form (sequential) decoding."""
    import torch

    long_form = len(x) > 30 * SAMPLE_RATE
    inputs = features(
        x,
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
        return_attention_mask=True,
        **({"truncation": False, "padding": "longest"} if long_form else {}),
    )
    kwargs = dict(num_beams=beam, do_sample=False, return_timestamps=timestamps or long_form)
    if model.generation_config.is_multilingual:
        kwargs["task"] = "transcribe"
        if language:
            kwargs["language"] = language
    if long_form:
        kwargs["attention_mask"] = inputs.attention_mask
    with torch.inference_mode():
        out = model.generate(inputs.input_features, **kwargs)
    ids = out["sequences"] if isinstance(out, dict) else out
    text = tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    # Timestamp tokens are not "special" to every tokenizer version: drop what is left.
    return re.sub(r"<\|[^|]*\|>", "", text).strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="Hugging Face Whisper model directory")
    p.add_argument("--beams", default="5,1", help="beam sizes, comma-separated (1 = greedy)")
    p.add_argument("--language", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    model, features, tokenizer = load(a.model, a.threads)
    for f in a.files:
        for beam in [int(b) for b in a.beams.split(",") if b.strip()]:
            for timestamps in (False, True):
                out = {"file": f, "beam": beam, "timestamps": timestamps}
                try:
                    x = read_wav(f)
                    out["text"] = transcribe(
                        model, features, tokenizer, x, beam, timestamps, a.language
                    )
                except Exception as e:  # reported per file and setting, not a crash
                    out["error"] = f"{type(e).__name__}: {e}"
                print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
