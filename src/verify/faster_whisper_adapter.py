"""advox's adapter for faster-whisper (CTranslate2): transcribe WAV files with a CTranslate2
Whisper model directory and print one JSON object per file and setting:
{"file", "beam", "timestamps", "text"} (or {"file", "error"}).

Run by `advox attack --verify faster-whisper` with the venv advox provisions; usable by hand:
  python faster_whisper_adapter.py --model DIR [--beams 5,1] [--language en] FILE.wav...
With `--server` (`--asr faster-whisper`) it reads WAV paths from stdin and prints one transcript
line each.
With `--time N` (`advox bench --compare`) it instead times N transcriptions of each file per beam
after one warm-up, plain decoding at temperature 0 as advox's `transcribe` decodes, and prints
{"file", "beam", "threads", "seconds": [...], "text"}.
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
    p.add_argument("--time", type=int, default=0, help="time N transcriptions instead")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2's CPU threads")
    p.add_argument(
        "--server",
        action="store_true",
        help="answer WAV paths read from stdin, one transcript line each (first beam, plain)",
    )
    p.add_argument("files", nargs="*")
    a = p.parse_args()
    if not a.server and not a.files:
        sys.exit("give WAV files, or --server")
    from faster_whisper import WhisperModel

    model = WhisperModel(a.model, device="cpu", compute_type="float32", cpu_threads=a.threads)
    if a.server:
        return serve(model, a)
    if a.time > 0:
        return time_transcriptions(model, a)
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


def serve(model, a):
    """`--asr faster-whisper` (an `--asr-server`): the model loads once; each line on stdin is a
    WAV path, answered by its transcript on one line (plain decoding, the first of --beams);
    a file that cannot be transcribed ends the server with the reason on stderr."""
    beam = int(a.beams.split(",")[0])
    for line in sys.stdin:
        path = line.rstrip("\n")
        try:
            segments, _ = model.transcribe(
                path,
                beam_size=beam,
                language=a.language,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            text = "".join(s.text for s in segments).strip()
        except Exception as e:
            sys.exit(f"{path}: {e}")
        print(text.replace("\n", " "), flush=True)


def time_transcriptions(model, a):
    import time

    for f in a.files:
        for beam in [int(b) for b in a.beams.split(",") if b.strip()]:

            def once():
                segments, _ = model.transcribe(
                    f,
                    beam_size=beam,
                    language=a.language,
                    temperature=0.0,
                    without_timestamps=True,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                return "".join(s.text for s in segments).strip()

            text = once()  # warm-up
            seconds = []
            for _ in range(a.time):
                t = time.perf_counter()
                once()
                seconds.append(time.perf_counter() - t)
            out = {"file": f, "beam": beam, "threads": a.threads, "seconds": seconds, "text": text}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
