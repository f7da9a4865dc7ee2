#!/usr/bin/env bash
# Fetch NVIDIA's perf_analyzer (C++) for benchmarks/client_bench.py, outside the project's venv.
#
# perf_analyzer ships inside the tritonclient 2.40.0 wheel (newer wheels dropped it). We only
# unpack the binary from that wheel, so the project keeps its own tritonclient. It needs
# libb64 (Debian: libb64-0d) and the CUDA runtime library (from the nvidia-cuda-runtime-cu12
# wheel, installed into the cache folder, not the venv); no GPU is needed.
#
#   bash benchmarks/setup_perf_analyzer.sh [DEST]   # default ~/.cache/triton-packager/perf_analyzer
#
# Prints the binary's path. client_bench.py finds it there (or via --perf-analyzer / $PERF_ANALYZER).
set -euo pipefail

DEST="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/triton-packager/perf_analyzer}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST/wheels" "$DEST/bin"

if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y libb64-0d >/dev/null || { apt-get update >/dev/null && apt-get install -y libb64-0d >/dev/null; }
    else
        echo "perf_analyzer needs libb64: sudo apt-get install -y libb64-0d" >&2
        exit 1
    fi
fi

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
    tritonclient==2.40.0 -d "$DEST/wheels"
"$PYTHON" - "$DEST" <<'EOF'
import pathlib, sys, zipfile
dest = pathlib.Path(sys.argv[1])
wheel = next((dest / "wheels").glob("tritonclient-2.40.0-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("tritonclient-2.40.0.data/data/bin/perf_analyzer")
target = dest / "bin" / "perf_analyzer"
target.write_bytes(data)
target.chmod(0o755)
EOF
if ! compgen -G "$DEST/cudart/nvidia/cuda_runtime/lib/libcudart.so.*" >/dev/null; then
    "$PYTHON" -m pip install --quiet --target "$DEST/cudart" nvidia-cuda-runtime-cu12
fi
LD_LIBRARY_PATH="$DEST/cudart/nvidia/cuda_runtime/lib" "$DEST/bin/perf_analyzer" --version >/dev/null 2>&1 \
    || LD_LIBRARY_PATH="$DEST/cudart/nvidia/cuda_runtime/lib" "$DEST/bin/perf_analyzer" -h 2>&1 | grep -q Usage
echo "$DEST/bin/perf_analyzer"
