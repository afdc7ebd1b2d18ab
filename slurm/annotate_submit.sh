#!/bin/bash
# Submit `prm annotate mc` as an N-task Slurm array plus a merge job that runs once every task succeeded.
#
#   slurm/annotate_submit.sh -n 8 -i solutions.jsonl -o out/mc.jsonl [-m out/mc.merged.jsonl] \
#       [-l out/logs] [-s "--partition=gpu --gres=gpu:1 --time=04:00:00"] -- --config configs/annotate.yaml k=8
#
# -n shards (array tasks), -i input solutions, -o output (each task writes OUTPUT.shard-0000I-of-0000N.jsonl),
# -m merged file (default OUTPUT with .merged before the suffix), -l log folder (default OUTPUT's folder/logs),
# -s extra sbatch options for the array tasks; everything after -- goes to `prm annotate mc`.
# Paths are made absolute. Prints the two job ids. To resume after a failure or preemption, run the same
# command again: finished shards return at once, unfinished ones continue where they stopped.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
n="" input="" output="" merged="" logs="" extra=""
while getopts "n:i:o:m:l:s:h" opt; do
    case $opt in
        n) n=$OPTARG ;; i) input=$OPTARG ;; o) output=$OPTARG ;; m) merged=$OPTARG ;;
        l) logs=$OPTARG ;; s) extra=$OPTARG ;;
        h) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "usage: $0 -n N -i INPUT -o OUTPUT [-m MERGED] [-l LOGDIR] [-s SBATCH_OPTS] [-- prm args]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$n" || -z "$input" || -z "$output" ]]; then
    echo "error: -n, -i and -o are required" >&2
    exit 2
fi
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: -n must be a positive integer, got '$n'" >&2
    exit 2
fi
if [[ ! -f "$input" ]]; then
    echo "error: no such input file: $input" >&2
    exit 2
fi
abspath() { python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$1"; }
input=$(abspath "$input")
output=$(abspath "$output")
if [[ -z "$merged" ]]; then
    merged="${output%.jsonl}.merged.jsonl"
fi
merged=$(abspath "$merged")
logs=$(abspath "${logs:-$(dirname "$output")/logs}")
mkdir -p "$logs" "$(dirname "$output")" "$(dirname "$merged")"

# Make a --config path absolute too, so the tasks find it from any working directory.
args=()
while [[ $# -gt 0 ]]; do
    if [[ "$1" == "--config" && $# -ge 2 ]]; then
        args+=("--config" "$(abspath "$2")"); shift 2
    else
        args+=("$1"); shift
    fi
done

# shellcheck disable=SC2086
array_id=$(sbatch --parsable --array=0-$((n - 1)) -o "$logs/mc_%A_%a.log" $extra \
    "$here/annotate.sbatch" "$n" "$input" "$output" "${args[@]}")
array_id=${array_id%%;*}
merge_id=$(sbatch --parsable --dependency=afterok:"$array_id" -o "$logs/merge_%j.log" \
    "$here/annotate_merge.sbatch" "$n" "$input" "$output" "$merged")
merge_id=${merge_id%%;*}
echo "array job $array_id ($n shard(s) of $output), merge job $merge_id -> $merged; logs in $logs"
