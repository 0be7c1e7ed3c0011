#!/usr/bin/env bash
# Cloak's built-in mute segment (models/mute-segment.wav + .json): the prefix-mute segment of
# bench/prefix_mute.sh (trained against timestamp decoding) trained on against both of
# Whisper's decodings, draw by draw: timestamps (an empty window) and plain (" ." and
# end-of-text: plain decoding may not start with end-of-text). 1000 steps of 4 utterances,
# steps of 0.002, through faster-whisper's front end, on the 43 recordings of
# bench/cloak-train.csv; judged (advox's decoder) on the 12 held-out recordings of
# bench/heldout.csv in both decodings next to uniform noise of the same bound. About 40 minutes
# on 2 CPU cores after bench/prefix_mute.sh's 23. Then faster-whisper judges it:
# `cargo test --workspace --test suite universal::the_shipped_mute_segments`.
#
#   bench/mute_segment.sh [START.wav] [OUT.wav]
#     START: the prefix-mute segment to start from (default models/prefix-mute.wav;
#            bench/prefix_mute.sh makes it anew)
#     OUT:   default target/mute-segment.wav
set -euo pipefail
cd "$(dirname "$0")/.."
START=${1:-models/prefix-mute.wav}
OUT=${2:-target/mute-segment.wav}
ADVOX=${ADVOX:-./target/release/advox}
"$ADVOX" universal --mode prefix-mute --init "$START" --decodings timestamps,plain \
  --train bench/cloak-train.csv --eval bench/heldout.csv \
  --steps 1000 --batch 4 --step-size 0.002 --seed 2 --front-ends faster-whisper -o "$OUT"
echo "to ship: cp $OUT models/mute-segment.wav && cp ${OUT%.wav}.json models/mute-segment.json"
