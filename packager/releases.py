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

# Python packages that Python-backend models need inside the NGC image (Python 3.10, CUDA 12.6,
# cuDNN 9). numpy<2: Triton 2.51's Python backend mis-sizes output tensors built from numpy 2
# arrays. The runtimes are pinned so that an image rebuilt next year installs the same thing.
PYTHON_BACKEND_BASE = ("numpy<2",)
PYTHON_BACKEND_RUNTIMES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime-gpu==1.19.2",),  # first release whose PyPI wheel targets CUDA 12
    "torch": ("torch==2.5.1",),  # PyPI wheel bundles CUDA 12.4 libraries; runs on the 12.6 image
}

# The distribution name of this tool (pip, build records, generated files say which release).
PACKAGE = "triton-packager"


def package_version() -> str:
    """This install's version of triton-packager; ``0+source`` in a source tree without one."""
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "0+source"
