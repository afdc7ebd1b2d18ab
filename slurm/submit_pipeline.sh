#!/bin/bash
# Submit the whole pipeline of a `prm run` config as Slurm jobs chained with afterok dependencies:
#
#   prep (problems, split, sample, testbed) ─┬─▶ annotate mc array (N shards) ─▶ merge ─┐
#                                            └─▶ annotate judge ─────────────────────────┴─▶ consensus ─▶ train (multi-node) ─▶ eval + report
#
#   slurm/submit_pipeline.sh -c configs/quickstart.yaml [-n SHARDS] [-N TRAIN_NODES] [-g "GPU sbatch options"] \
#       [-l LOG_DIR] [-- section.key=value ...]
#
# -g options go to the jobs that run models (sample, annotate, train, eval), e.g. "--partition=gpu --gpus-per-node=8".
# Every job works in the config's run.run_dir; each stage resumes, so after a failure fix the cause and submit
# again: finished stages are skipped. Prints a summary, then a line with every job id (the eval job last).
# Environment: PRM_PYTHON (an interpreter with this package installed, default python).
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="" shards=2 nodes=1 gpu="" logs=""
while getopts "c:n:N:g:l:h" opt; do
    case $opt in
        c) config=$OPTARG ;; n) shards=$OPTARG ;; N) nodes=$OPTARG ;; g) gpu=$OPTARG ;; l) logs=$OPTARG ;;
        h) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "usage: $0 -c CONFIG [-n SHARDS] [-N NODES] [-g GPU_OPTS] [-l LOGS] [-- overrides]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if [[ -z "$config" || ! -f "$config" ]]; then
    echo "error: -c CONFIG (an existing pipeline YAML) is required" >&2
    exit 2
fi
PY=${PRM_PYTHON:-python}
export PRM_PYTHON="$PY"
config=$("$PY" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$config")
# Checks every section with the overrides before anything is submitted: a typo fails here, not in a late job.
run_dir=$("$PY" -m prm config get "$config" run.run_dir "$@")
run_dir=$(realpath -ms -- "$run_dir")
overrides=("$@" "run.run_dir=$run_dir")
# Training data: the consensus examples, plus the testbed's truth labels only where run.train_on_testbed says so.
train_files="$run_dir/train.consensus.jsonl"
if [[ $("$PY" -m prm config get "$config" run.train_on_testbed "$@") == "true" ]]; then
    train_files="$train_files,$run_dir/train.testbed.jsonl"
fi
logs=${logs:-$run_dir/logs}
mkdir -p "$logs" "$run_dir"

submit() {
    local id
    if ! id=$(sbatch --parsable "$@"); then
        echo "error: sbatch $* failed" >&2
        return 1
    fi
    echo "${id%%;*}"
}
# shellcheck disable=SC2086
prep=$(submit -o "$logs/prep_%j.log" $gpu "$here/run_stages.sbatch" "$config" \
    prep "${overrides[@]}")
# shellcheck disable=SC2086
mc=$(submit --dependency=afterok:"$prep" --array=0-$((shards - 1)) -o "$logs/mc_%A_%a.log" $gpu \
    "$here/annotate.sbatch" "$shards" "$run_dir/annotate.jsonl" "$run_dir/mc.jsonl" --config "$config" "${overrides[@]}")
merge=$(submit --dependency=afterok:"$mc" -o "$logs/merge_%j.log" \
    "$here/annotate_merge.sbatch" "$shards" "$run_dir/annotate.jsonl" "$run_dir/mc.jsonl" "$run_dir/mc.jsonl")
# shellcheck disable=SC2086
judge=$(submit --dependency=afterok:"$prep" -o "$logs/judge_%j.log" $gpu "$here/run_stages.sbatch" "$config" \
    judge "${overrides[@]}")
consensus=$(submit --dependency=afterok:"$merge":"$judge" -o "$logs/consensus_%j.log" \
    "$here/run_stages.sbatch" "$config" consensus "${overrides[@]}")
# shellcheck disable=SC2086
train=$(submit --dependency=afterok:"$consensus" -N "$nodes" --ntasks-per-node=1 -o "$logs/train_%j.log" $gpu \
    "$here/train.sbatch" "$config" "${overrides[@]}" "train.output_dir=$run_dir/train" \
    "train.data.train_files=[$train_files]" \
    "train.data.val_files=[$run_dir/val.heldout.jsonl]")
# shellcheck disable=SC2086
eval=$(submit --dependency=afterok:"$train" -o "$logs/eval_%j.log" $gpu "$here/run_stages.sbatch" "$config" \
    eval "${overrides[@]}")
echo "prep $prep, mc array $mc ($shards shards), merge $merge, judge $judge, consensus $consensus," \
     "train $train ($nodes node(s)), eval $eval; run dir $run_dir, logs in $logs"
echo "$prep $mc $merge $judge $consensus $train $eval"
