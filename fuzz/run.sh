#!/usr/bin/env bash
# Run every fuzz target (cargo fuzz on stable: no sanitizer, libFuzzer with coverage).
#
#   fuzz/run.sh [RUNS] [TARGET...]     (default: 1000000 runs of each target)
#   FUZZ_SECONDS=600 fuzz/run.sh 0     (time-boxed instead: 0 runs = unlimited, stop after 600 s)
#
# Needs `cargo install cargo-fuzz` (done here when missing). Seeds come from the repository
# (samples, test audio, the cached tiny.en config and the start of its model.bin, a manifest,
# a sidecar, the plugins' saved states) into fuzz/corpus/<target>/ (not committed). Crashes land
# in fuzz/artifacts/<target>/ and make the script fail; reproduce one with
#   cargo fuzz run -s none -O <target> fuzz/artifacts/<target>/<file>
# and turn it into a regression test. Two targets run at a time (this machine has two cores).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(audio_reader ct2_model model_dir manifest universal_sidecar plugin_state)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
root=$(cd .. && pwd)

seed() { # seed TARGET NAME PICK-BYTE FILE|-
    local dir="corpus/$1"
    mkdir -p "$dir"
    { printf "\\x$(printf %02x "$3")"; if [ "$4" = - ]; then cat; else cat "$4"; fi; } >"$dir/$2"
}
# Short WAVs of every encoding the reader handles (the bundled samples are too long to mutate
# quickly), and the small FLAC/OGG/MP3 test files.
python3 - <<'PY'
import math, os, struct
os.makedirs("corpus/audio_reader", exist_ok=True)
def wav(name, fmt, channels, rate, bits, frames):
    data = bytearray()
    for i in range(frames):
        for c in range(channels):
            v = 0.5 * math.sin(2 * math.pi * 440 * i / rate + c)
            if fmt == 3:
                data += struct.pack("<f", v)
            elif bits == 8:
                data += struct.pack("<B", int(128 + 127 * v))
            elif bits == 16:
                data += struct.pack("<h", int(32767 * v))
            elif bits == 24:
                data += int(8388607 * v).to_bytes(3, "little", signed=True)
            else:
                data += struct.pack("<i", int(2147483647 * v))
    block = channels * bits // 8
    body = b"WAVEfmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block, block, bits)
    body += b"data" + struct.pack("<I", len(data)) + bytes(data)
    with open(f"corpus/audio_reader/{name}", "wb") as f:
        f.write(b"\x00" + b"RIFF" + struct.pack("<I", len(body)) + body)
wav("pcm8", 1, 1, 8000, 8, 200)
wav("pcm16", 1, 1, 16000, 16, 300)
wav("pcm16_stereo", 1, 2, 44100, 16, 200)
wav("pcm24", 1, 1, 48000, 24, 200)
wav("pcm32", 1, 2, 22050, 32, 100)
wav("float32", 3, 1, 16000, 32, 300)
PY
seed audio_reader flac 1 "$root/tests/data/tone_1k_stereo_44k.flac"
seed audio_reader ogg 2 "$root/tests/data/tone_1k_22k.ogg"
seed audio_reader mp3 3 "$root/tests/data/tone_1k_44k.mp3"
for t in "${targets[@]}"; do mkdir -p "corpus/$t"; done
# The cached model (CTranslate2 and converted layouts), when `advox model fetch` has run.
cache=${ADVOX_MODEL_DIR:-$HOME/.cache/advox/models}
for dir in "$cache"/*; do
    [ -f "$dir/config.json" ] || continue
    name=$(basename "$dir")
    weights=$(ls "$dir"/model.bin "$dir"/model.safetensors 2>/dev/null | head -1 || true)
    [ -n "$weights" ] || continue
    mkdir -p corpus/ct2_model corpus/model_dir
    [ "${weights##*.}" = bin ] && head -c 65536 "$weights" >"corpus/ct2_model/$name"
    python3 - "$dir/config.json" "$weights" "corpus/model_dir/$name" <<'PY'
import struct, sys
cfg = open(sys.argv[1], "rb").read()
weights = open(sys.argv[2], "rb").read(65536)
kind = b"\x01" if sys.argv[2].endswith(".bin") else b"\x00"
open(sys.argv[3], "wb").write(struct.pack("<H", len(cfg)) + kind + cfg + weights)
PY
done
printf 'input,target,goal,transcript\na.wav,turn off the lights,,open the door\nb.wav,,mute,\n' |
    seed manifest csv 0 -
printf '{"input": "a.wav", "target": "x"}\n{"input": "b.wav", "goal": "untargeted"}\n' |
    seed manifest jsonl 1 -
printf '\x10\x00\x00\x00{"format":"advox-universal","version":1,"length":16,"mode":"additive","linf":0.01}' |
    seed universal_sidecar additive 0 -
python3 - <<'PY'
import json, os, struct
os.makedirs("corpus/plugin_state", exist_ok=True)
for pick, params, fields in [
    (0, {"mode": "universal", "depth": 0.5, "margin": 6.0, "band_low": 100.0, "band_high": 8000.0, "bypass": False},
        {"perturbation-path": json.dumps("/nonexistent/u.wav"), "perturbation-status": json.dumps("x")}),
    (1, {"threshold": 0.5, "smoothing": 0.5, "gate": True, "model_check": False}, {}),
]:
    body = json.dumps({"version": "0.1.0", "params": params, "fields": fields}).encode()
    with open(f"corpus/plugin_state/seed{pick}", "wb") as f:
        f.write(bytes([pick]) + struct.pack("<Q", len(body)) + body)
PY

status=0
run_one() {
    local t=$1 log="logs/$1.log"
    mkdir -p "artifacts/$t" logs
    local max_len=65536
    [ "$t" = audio_reader ] && max_len=16384
    local args=(-runs="$runs" -timeout=20 -rss_limit_mb=4096 -max_len="$max_len" -print_final_stats=1)
    [ -n "${FUZZ_SECONDS:-}" ] && args+=(-max_total_time="$FUZZ_SECONDS")
    if cargo fuzz run -s none -O "$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
        echo "$t: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs, no crash"
    else
        echo "$t: FAILED (see fuzz/$log and fuzz/artifacts/$t/)"
        return 1
    fi
}
cargo fuzz build -s none -O
running=0
for t in "${targets[@]}"; do
    if [ $running -ge 2 ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
while [ $running -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit $status
