#!/usr/bin/env bash
# The main job on the bundled example: build examples/deploy.yaml into model_repository/,
# serve it on the embedded Triton server, send one inference, print the result, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
set -x
# --force: the build is deterministic, so rebuilding the committed repository changes no byte.
triton-packager build -f examples/deploy.yaml -o model_repository --force
triton-packager validate model_repository
python examples/demo.py "$@"
