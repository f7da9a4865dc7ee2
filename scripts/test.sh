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
python -m pytest -q -p no:cacheprovider "$@"
