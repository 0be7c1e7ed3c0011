"""advox's adapter for PocketSphinx (CMU Sphinx with the US-English acoustic model, language
model and dictionary that the `pocketsphinx` package bundles): a recogniser that is not Whisper.

Run by `advox attack --verify pocketsphinx` with the venv advox provisions, it prints one JSON
object per file: {"file", "text"} (or {"file", "error"}). With --plain and one file it prints
the transcript alone (a command recogniser, `--asr-cmd`); with --server it reads one WAV path per
line on stdin and answers each with its transcript on one line (`--asr pocketsphinx`, an
`--asr-server`), exiting with the reason on stderr if a file cannot be read. Usable by hand:
  python pocketsphinx_adapter.py [--plain | --server] FILE.wav...
Files must be 16-bit PCM WAV, 16 kHz mono (what advox writes). --model, --beams and --language
are accepted for the verifier interface: PocketSphinx has no Whisper model and no beam setting,
and its bundled model is English only.
"""
# Not named pocketsphinx.py: the script's folder comes first on sys.path and would shadow the
# package.
import argparse
import json
import sys
import wave


def read_pcm16(path):
    with wave.open(path, "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        if (rate, channels, width) != (16000, 1, 2):
            raise ValueError(
                f"needs 16-kHz mono 16-bit PCM, got {rate} Hz, {channels} channel(s), "
                f"{8 * width}-bit"
            )
        return w.readframes(w.getnframes())


def transcribe(decoder, path):
    data = read_pcm16(path)
    decoder.start_utt()
    decoder.process_raw(data, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr.strip() if hyp is not None else ""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--plain", action="store_true", help="print one file's transcript alone")
    p.add_argument("--server", action="store_true", help="answer WAV paths read from stdin")
    p.add_argument("--model", default=None, help="ignored: PocketSphinx uses its own model")
    p.add_argument("--beams", default=None, help="ignored: no beam setting")
    p.add_argument("--language", default=None, help="en only (the bundled model)")
    p.add_argument("files", nargs="*")
    a = p.parse_args()
    if not a.server and not a.files:
        sys.exit("give WAV files, or --server")
    if a.plain and len(a.files) != 1:
        sys.exit("--plain takes exactly one file")
    english = a.language in (None, "en", "english")
    from pocketsphinx import Decoder

    # A fresh decoder per file: its cepstral mean normalisation adapts across utterances, so a
    # shared one would hear a file differently depending on the files before it.
    def fresh():
        return Decoder(samprate=16000, loglevel="FATAL")

    if a.server:
        if not english:
            sys.exit(f"PocketSphinx's bundled model is English only, not {a.language!r}")
        for line in sys.stdin:
            path = line.rstrip("\n")
            try:
                text = transcribe(fresh(), path)
            except Exception as e:
                sys.exit(f"{path}: {e}")
            print(text.replace("\n", " "), flush=True)
        return
    if a.plain:
        if not english:
            sys.exit(f"PocketSphinx's bundled model is English only, not {a.language!r}")
        print(transcribe(fresh(), a.files[0]), flush=True)
        return
    for f in a.files:
        try:
            if not english:
                raise ValueError(f"the bundled model is English only, not {a.language!r}")
            out = {"file": f, "text": transcribe(fresh(), f)}
        except Exception as e:  # reported per file, not a crash
            out = {"file": f, "error": str(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
