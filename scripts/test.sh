#!/usr/bin/env bash
# Set up (idempotent), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check packager tests benchmarks examples
ruff format --check packager tests benchmarks examples
mypy
# Twice: with Triton's own ONNX Runtime / PyTorch backends (built by setup), then with them off
# (TRITON_PACKAGER_NATIVE=0), the fallback every machine without a compiler gets.
python -m pytest -q -p no:cacheprovider "$@"
echo "--- again with the native backends off (TRITON_PACKAGER_NATIVE=0): the fallback path"
TRITON_PACKAGER_NATIVE=0 python -m pytest -q -p no:cacheprovider "$@"
