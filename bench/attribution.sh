#!/usr/bin/env bash
# Attack attribution: the shipped classifier (models/attribution.json) and its held-out figures.
#
# Every algorithm's example of 20 recordings (bench/attribution-train.csv: 12 LJ Speech clips and
# the German, Spanish, French and Italian Rhino requests) trains the classifier; 15 recordings of
# other speakers (bench/attribution-heldout.csv: the LibriVox reader and the English, Japanese,
# Korean, Portuguese and Chinese Rhino requests) score it. Then each class is left out of
# training in turn (the examples are made once and reused) to measure how often an algorithm the
# classifier never saw is rejected as unknown. About an hour on 2 CPU cores, nearly all of it
# making the 350 examples.
#
#   bench/attribution.sh [OUT]        (default OUT: target/attribution)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/attribution}
ADVOX=${ADVOX:-./target/release/advox}
train() {
  "$ADVOX" attribute train --train bench/attribution-train.csv \
    --held-out bench/attribution-heldout.csv --out "$OUT" "$@"
}
for class in clean fgsm pgd cw deepfool jsma imperceptible universal ga nes; do
  train --leave-out "$class" | tee "$OUT/leave-out-$class.txt"
done
# Last, with every class: OUT/classifier.json is the one to ship.
train | tee "$OUT/all-classes.txt"
cp "$OUT/classifier.json" models/attribution.json
