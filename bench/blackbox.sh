#!/usr/bin/env bash
# The black-box table of the README: every input of a manifest attacked through an external
# recogniser (`advox attack --blackbox`), with each prior and without, then one table of
# successes, queries (to the first success and in all), wall time and SNR per recogniser.
#
#   bench/blackbox.sh [MANIFEST] [OUT]
#
# Environment (defaults in brackets): ADVOX [target/release/advox], RECOGNISERS
# [faster-whisper pocketsphinx], SEARCH [nes], GOAL [--untargeted], SNR_DB [25],
# QUERIES [500], PRIORS ["surrogate none"]: each of none, surrogate (--surrogate), quiet
# (--quiet-prior) or surrogate+quiet; SEED [1]. Reports already in OUT are kept (a stopped run
# resumes).
set -euo pipefail
manifest=${1:-bench/heldout.csv}
out=${2:-$(mktemp -d -t advox-blackbox-XXXX)}
advox=${ADVOX:-target/release/advox}
recognisers=${RECOGNISERS:-faster-whisper pocketsphinx}
search=${SEARCH:-nes}
goal=${GOAL:---untargeted}
snr=${SNR_DB:-25}
queries=${QUERIES:-500}
priors=${PRIORS:-surrogate none}
seed=${SEED:-1}
base=$(dirname "$manifest")
mkdir -p "$out"
tail -n +2 "$manifest" | cut -d, -f1 | while read -r rel; do
  name=$(basename "$rel" .wav)
  case "$rel" in /*) input=$rel ;; *) input=$base/$rel ;; esac
  for r in $recognisers; do
    for s in $priors; do
      flag=""
      case "$s" in
        none) ;;
        surrogate) flag="--surrogate" ;;
        quiet) flag="--quiet-prior" ;;
        surrogate+quiet) flag="--surrogate --quiet-prior" ;;
        *) echo "unknown prior $s (none, surrogate, quiet, surrogate+quiet)" >&2; exit 1 ;;
      esac
      o="$out/$r--$s--$name.wav"
      [ -e "${o%.wav}.json" ] && continue
      echo "== $r, prior $s, $name" >&2
      # Exit code 2 is a failed attack, recorded in its report: not an error of the script.
      # shellcheck disable=SC2086
      "$advox" attack "$input" --blackbox "$search" --asr "$r" $goal --snr-db "$snr" \
        --queries "$queries" --seed "$seed" $flag -o "$o" </dev/null || [ $? -eq 2 ]
    done
  done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*--*--*.json"))):
    rec, s, _ = os.path.basename(f).split("--")
    rows.setdefault((rec, s), []).append(json.load(open(f)))
med = lambda v: statistics.median(v) if v else float("nan")
print("| recogniser | prior | success | queries to success (median) | queries (median) "
      "| wall time (median) | SNR of successes (median) |")
print("|---|---|---|---|---|---|---|")
for (rec, s), rs in sorted(rows.items()):
    ok = [r for r in rs if r["success"]]
    first = [r["black_box"]["first_success_queries"] for r in ok]
    print(f"| {rec} | {s} | {len(ok)}/{len(rs)} | {med(first):.0f} "
          f"| {med([r['black_box']['queries'] for r in rs]):.0f} "
          f"| {med([r['wall_seconds'] for r in rs]):.1f} s | {med([r['snr_db'] for r in ok]):.1f} dB |")
PY
echo "reports in $out" >&2
