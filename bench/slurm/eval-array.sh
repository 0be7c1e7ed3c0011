#!/usr/bin/env bash
# `advox eval` scaled out on Slurm: an array job of N tasks, task i running
# `advox eval --shard i/N` (entries i-1, i-1+N, … of the manifest) into OUT/shard-i, and a merge
# job that starts once every task has succeeded (`--dependency=afterok`) and writes the one
# report into OUT/merged — the same report.json and report.html as a single run. Job logs go
# to OUT/logs.
#
#   bench/slurm/eval-array.sh MANIFEST OUT N [advox eval options...]
#
# Prints the two job ids ("ARRAY MERGE"). ADVOX [advox on PATH] is the binary the jobs run;
# SBATCH_OPTIONS (e.g. "--partition=cpu --cpus-per-task=2 --time=2:00:00") go to both jobs.
set -euo pipefail
manifest=$(realpath "${1:?manifest}")
out=${2:?output directory}
n=${3:?number of shards}
shift 3
advox=${ADVOX:-$(command -v advox || true)}
[ -x "$advox" ] || { echo "set ADVOX to the advox binary" >&2; exit 1; }
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
# Quoted once here; the jobs run these lines with bash.
opts=$(printf ' %q' "$@")
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_OPTIONS:-} --job-name=advox-eval --array="1-$n" \
  --output="$out/logs/shard-%a.log" --wrap \
  "exec $(printf %q "$advox") eval --manifest $(printf %q "$manifest") \
     --shard \"\$SLURM_ARRAY_TASK_ID/\$SLURM_ARRAY_TASK_COUNT\" \
     -o $(printf %q "$out")/shard-\$SLURM_ARRAY_TASK_ID$opts")
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_OPTIONS:-} --job-name=advox-eval-merge \
  --dependency="afterok:$array" --output="$out/logs/merge.log" --wrap \
  "exec $(printf %q "$advox") eval merge $(printf %q "$out")/shard-* -o $(printf %q "$out")/merged")
echo "$array $merge"
