#!/usr/bin/env bash
# The shipped prefix-mute segment (models/prefix-mute.wav + .json) and its held-out figures.
#
# Raina et al.'s universal segment (0.64 s at amplitude 0.02, prepended) trained through
# faster-whisper's front end (log-mel features zero-padded, as faster-whisper reads a short
# recording; OpenAI's padded audio left the two English Rhino requests heard by faster-whisper)
# for 600 steps of 4 utterances on the 43 recordings of bench/cloak-train.csv (27 LJ Speech clips, the 16
# non-English Rhino requests) and judged against timestamp decoding on the 12 held-out recordings of bench/heldout.csv (the
# LibriVox reader, the English Rhino requests, 5 LJ Speech utterances training never saw)
# next to uniform noise of the same bound. About 23 minutes on 2 CPU cores. Then faster-whisper
# judges it: `cargo test --workspace --test suite universal::the_shipped_mute_segments` (its default timestamp
# mode, beam 5 and greedy).
#
#   bench/prefix_mute.sh [OUT.wav]        (default OUT: target/prefix-mute.wav)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/prefix-mute.wav}
ADVOX=${ADVOX:-./target/release/advox}
"$ADVOX" universal --mode prefix-mute \
  --train bench/cloak-train.csv --eval bench/heldout.csv \
  --steps 600 --batch 4 --seed 1 --front-ends faster-whisper -o "$OUT"
echo "to ship: cp $OUT models/prefix-mute.wav && cp ${OUT%.wav}.json models/prefix-mute.json"
