"""Release facts that must agree with each other, kept in one place.

The embedded server (the ``nvidia-pytriton`` wheel) and the Docker/Kubernetes assets must run the
same Triton release, so a repository that serves locally behaves the same on a GPU host.
``tests/unit/test_docker.py`` asks the embedded binary for its version and compares.
"""

from __future__ import annotations

# Triton Inference Server release of the tritonserver binary inside nvidia-pytriton==0.7.0.
TRITON_VERSION = "2.51.0"
PYTRITON_VERSION = "0.7.0"
# Branch of Triton's backend repositories for that release (third_party/ holds its sources).
TRITON_SOURCE_BRANCH = "r24.10"
# NGC container release that ships Triton 2.51.0 (NGC tags are YY.MM; 24.10 <-> 2.51.0).
NGC_RELEASE = "24.10"
NGC_REPOSITORY = "nvcr.io/nvidia/tritonserver"
NGC_IMAGE = f"{NGC_REPOSITORY}:{NGC_RELEASE}-py3"
# The same release with Triton's vLLM backend (vLLM 0.5.5): what --backend vllm models run on.
NGC_VLLM_IMAGE = f"{NGC_REPOSITORY}:{NGC_RELEASE}-vllm-python-py3"
VLLM_VERSION = "0.5.5"
# uid/gid of the ``triton-server`` user that the NGC image ships (never run the server as root).
NGC_USER_ID = 1000

# The image's Python (Ubuntu 22.04's python3 in every 24.10 image) and the wheel platform pip
# installs for there: every pin below is chosen for them, not for the Python running us.
NGC_PYTHON = "3.10"
NGC_GLIBC = (2, 35)
# The wheel platforms that install there. pip expands no manylinux_2_X tag to older ones, so
# each is named (manylinux2014 brings the older legacy tags: 2010, manylinux1).
NGC_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(NGC_GLIBC[1], 16, -1)),
    "manylinux2014_x86_64",
)

# Python packages that Python-backend models need inside the NGC image (CUDA 12.6, cuDNN 9),
# pinned exactly, so that an image rebuilt next year installs the same thing. The whole set
# resolves together for NGC_PYTHON / NGC_PLATFORMS with pip's resolver
# (tests/unit/test_pins.py re-checks it against the registry).
# numpy 1.x: Triton 2.51's Python backend mis-sizes output tensors built from numpy 2 arrays.
PYTHON_BACKEND_BASE = ("numpy==1.26.4",)
PYTHON_BACKEND_RUNTIMES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime-gpu==1.19.2",),  # first release whose PyPI wheel targets CUDA 12
    "torch": ("torch==2.5.1",),  # PyPI wheel bundles CUDA 12.4 libraries; runs on the 12.6 image
}
# What --task text-generation models (generate/triton_model.py, engine.py) import besides torch:
# the newest transformers of the major version we test with that still supports Python 3.10
# (5.21 and later need 3.11), and the tokenizers it resolves with.
GENERATION_PACKAGES = ("transformers==5.20.2", "tokenizers==0.23.3")
