#!/usr/bin/env bash
# The second-order table of the README: every input of a manifest attacked white-box by each
# attack (default PGD, CW and trust-region Newton-CG) for one goal under one SNR floor, then a
# table per attack: successes, gradient evaluations and (Newton) iterations to success, SNR of
# the successes and wall time.
#
#   bench/second_order.sh [MANIFEST] [OUT]
#
# Environment (defaults in brackets): ADVOX [target/release/advox], ATTACKS [pgd cw newton],
# GOAL [--untargeted] (e.g. GOAL='--target "turn off the lights"'), SNR_DB [35], EXTRA [] (more
# options for every attack). Reports already in OUT are kept (a stopped run resumes).
set -euo pipefail
manifest=${1:-bench/heldout.csv}
out=${2:-$(mktemp -d -t advox-second-order-XXXX)}
advox=${ADVOX:-target/release/advox}
attacks=${ATTACKS:-pgd cw newton}
goal=${GOAL:---untargeted}
snr=${SNR_DB:-35}
extra=${EXTRA:-}
base=$(dirname "$manifest")
mkdir -p "$out"
tail -n +2 "$manifest" | cut -d, -f1 | while read -r rel; do
  name=$(basename "$rel" .wav)
  case "$rel" in /*) input=$rel ;; *) input=$base/$rel ;; esac
  for a in $attacks; do
    o="$out/$a--$name.wav"
    [ -e "${o%.wav}.json" ] && continue
    echo "== $a, $name" >&2
    # Exit code 2 is a failed attack, recorded in its report: not an error of the script.
    eval "\"$advox\" attack \"$input\" --attack $a $goal --snr-db $snr $extra -o \"$o\"" \
      </dev/null || [ $? -eq 2 ]
  done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*--*.json"))):
    a, name = os.path.basename(f)[:-5].split("--", 1)
    rows.setdefault(a, {})[name] = json.load(open(f))
med = lambda v: statistics.median(v) if v else float("nan")
common = set.intersection(*[{n for n, r in rs.items() if r["success"]} for rs in rows.values()]) if rows else set()
print("| attack | success | gradient evaluations to success (median; all) | iterations (median) "
      "| SNR of successes (median) | wall time (median) | on the inputs all succeed on: evaluations, SNR (median) |")
print("|---|---|---|---|---|---|---|")
for a, rs in sorted(rows.items()):
    ok = [r for r in rs.values() if r["success"]]
    steps = [r["steps"] for r in ok]
    iters = [r["details"]["newton"]["iterations"] for r in ok
             if isinstance(r.get("details"), dict) and "newton" in r["details"]]
    both = [rs[n] for n in sorted(common)]
    print(f"| {a} | {len(ok)}/{len(rs)} | {med(steps):.0f}; {sorted(steps)} | "
          f"{med(iters) if iters else '-'} | {med([r['snr_db'] for r in ok]):.1f} dB | "
          f"{med([r['wall_seconds'] for r in rs.values()]):.0f} s | "
          f"{med([r['steps'] for r in both]):.0f}, {med([r['snr_db'] for r in both]):.1f} dB ({len(both)} inputs) |")
PY
echo "reports in $out" >&2
