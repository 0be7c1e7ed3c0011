"""advox's adapter for faster-whisper (CTranslate2): transcribe WAV files with a CTranslate2
Whisper model directory and print one JSON object per file and setting:
{"file", "beam", "timestamps", "text"} (or {"file", "error"}).

Run by `advox attack --verify faster-whisper` with the venv advox provisions; usable by hand:
  python faster_whisper_adapter.py --model DIR [--beams 5,1] [--language en] FILE.wav...
"""
# Not named faster_whisper.py: the script's folder comes first on sys.path and would shadow
# the package.
import argparse
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="CTranslate2 Whisper model directory")
    p.add_argument("--beams", default="5,1", help="beam sizes, comma-separated (1 = greedy)")
    p.add_argument("--language", default=None)
    p.add_argument("files", nargs="+")
    a = p.parse_args()
    from faster_whisper import WhisperModel

    model = WhisperModel(a.model, device="cpu", compute_type="float32", cpu_threads=2)
    for f in a.files:
        for beam in [int(b) for b in a.beams.split(",") if b.strip()]:
            for timestamps in (False, True):
                try:
                    # faster-whisper's defaults otherwise (temperature fallback included), as a
                    # deployment runs it; no VAD, no conditioning across windows.
                    segments, _ = model.transcribe(
                        f,
                        beam_size=beam,
                        language=a.language,
                        without_timestamps=not timestamps,
                        condition_on_previous_text=False,
                        vad_filter=False,
                    )
                    text = "".join(s.text for s in segments).strip()
                    out = {"file": f, "beam": beam, "timestamps": timestamps, "text": text}
                except Exception as e:  # reported per file, not a crash
                    out = {"file": f, "beam": beam, "timestamps": timestamps, "error": str(e)}
                print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
