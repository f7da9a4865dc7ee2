"""The target: what NVIDIA's Triton container of one release runs, kept once in one table.

Every check of "will this load in the container" and every deployment asset reads
:data:`TARGET`, the profile of the release the embedded server also runs (the ``nvidia-pytriton``
wheel's tritonserver; ``tests/unit/test_docker.py`` asks that binary for its version). A later
release is one more :class:`TargetProfile` in :data:`TARGETS` and a new :data:`TARGET`.

Sources of the 24.10 facts (cited per field below):

- [RN] NVIDIA, "Triton Inference Server Release 24.10" (container contents, CUDA, driver):
  https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-24-10.html
- [CM] NVIDIA, Triton "Release Compatibility Matrix" (Python 3.10.12 and the PyTorch build of
  the 24.10/24.11 containers):
  https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/compatibility.html
- [ORT] ONNX Runtime, "Compatibility" (ONNX Runtime 1.19 = ONNX 1.16: opset 21, ML opset 4,
  IR version 10): https://onnxruntime.ai/docs/reference/compatibility.html
- [SRC] the vendored r24.10 sources, ``third_party/triton-r24.10`` (``onnxruntime_c_api.h``:
  ``ORT_API_VERSION 19``; ``onnxruntime_backend`` and ``pytorch_backend`` of the release).
- [PT] PyTorch ``caffe2/serialize/versions.h``: ``kMaxSupportedFileFormatVersion = 0xA`` since
  PyTorch 1.13, so libtorch 2.5 reads TorchScript archives of version <= 10.
- [VLLM] Triton's vllm_backend r24.10 README: the ``-vllm-python-py3`` image carries vLLM 0.5.5.
- [UBU] Ubuntu 22.04 (jammy) ships glibc 2.35 (package ``libc6`` 2.35-0ubuntu3).
- [PIP] the pins of models' own Python packages: chosen for ``python``/``glibc`` and resolved
  together with pip's resolver (``packager.deploy.pins``; ``tests/unit/test_pins.py`` re-resolves
  them from the registry). transformers 5.21 and later require Python >= 3.11 (their metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# manylinux_2_17 is the oldest perennial tag; older wheels are named by manylinux2014's aliases.
_OLDEST_PERENNIAL = 17


@dataclass(frozen=True)
class TargetProfile:
    """What one Triton release's NGC container runs (facts, no behaviour)."""

    release: str  # NGC tag YY.MM
    triton_version: str  # tritonserver --version inside the image
    source_branch: str  # branch of Triton's repositories (third_party/ holds r24.10)
    ubuntu: str
    python: str  # major.minor of the image's python3 (Python-backend models run on it)
    python_full: str
    glibc: str  # of the image's Ubuntu: which manylinux wheels install there
    cuda: str
    tensorrt: str
    onnxruntime: str  # the ONNX Runtime the onnxruntime backend links
    onnx_opset: int  # highest default-domain opset that ONNX Runtime implements
    onnx_ml_opset: int  # highest ai.onnx.ml opset
    onnx_ir: int  # highest ONNX IR version it reads
    onnxruntime_c_api: int  # ORT_API_VERSION the backend is compiled against
    libtorch: str  # the PyTorch build the pytorch backend links
    torchscript_max_file_version: int  # highest TorchScript archive version libtorch reads
    repository: str  # NGC image repository
    vllm: str  # vLLM inside the -vllm-python-py3 image
    py3_backends: tuple[str, ...]  # backends the -py3 image ships
    vllm_backends: tuple[str, ...]  # backends the -vllm-python-py3 image ships
    user_id: int  # uid/gid of the image's ``triton-server`` user
    # Exact pins of what models' own Python code imports in the image (the image has none of it):
    # every Python-backend model, each runtime its artifact needs, text-generation models.
    python_base: tuple[str, ...]
    python_runtimes: tuple[tuple[str, tuple[str, ...]], ...]  # (onnx | torch, pins)
    generation_packages: tuple[str, ...]

    @property
    def image(self) -> str:
        """The ``-py3`` image: every backend, no Python packages for models' own code."""
        return f"{self.repository}:{self.release}-py3"

    @property
    def vllm_image(self) -> str:
        """The ``-vllm-python-py3`` image: Triton's vLLM and Python backends with vLLM."""
        return f"{self.repository}:{self.release}-vllm-python-py3"

    @property
    def wheel_platforms(self) -> tuple[str, ...]:
        """pip ``--platform`` tags of the wheels that install on the image. pip expands no
        ``manylinux_2_X`` tag to older ones, so each is named (manylinux2014 brings its own
        older aliases, manylinux2010 and manylinux1)."""
        minor = int(self.glibc.split(".")[1])
        newest_first = range(minor, _OLDEST_PERENNIAL - 1, -1)
        return (*(f"manylinux_2_{m}_x86_64" for m in newest_first), "manylinux2014_x86_64")

    @property
    def onnxruntime_minor(self) -> str:
        """``1.19``: how users and messages name the ONNX Runtime line."""
        return ".".join(self.onnxruntime.split(".")[:2])

    def describe(self) -> str:
        """``Triton 24.10 (ONNX Runtime 1.19, opset 21, IR 10)``: the target in one line."""
        return (
            f"Triton {self.release} (ONNX Runtime {self.onnxruntime_minor}, "
            f"opset {self.onnx_opset}, IR {self.onnx_ir})"
        )

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return {**asdict(self), "image": self.image, "vllm_image": self.vllm_image}


_ORT_2410 = "1.19.2"  # [RN] ONNX Runtime of the 24.10 onnxruntime backend; API 19 [SRC]

TARGETS: dict[str, TargetProfile] = {
    "24.10": TargetProfile(
        release="24.10",
        triton_version="2.51.0",  # [RN]; the embedded binary reports it too
        source_branch="r24.10",  # [SRC]
        ubuntu="22.04",  # [RN] via the DLFW support matrix
        python="3.10",  # [CM]
        python_full="3.10.12",  # [CM]
        glibc="2.35",  # [UBU]
        cuda="12.6.2",  # [RN] "Release 24.10 is based on CUDA 12.6.2"
        tensorrt="10.5.0.18",  # [RN] via the DLFW support matrix
        onnxruntime=_ORT_2410,
        onnx_opset=21,  # [ORT] 1.19 row
        onnx_ml_opset=4,  # [ORT]
        onnx_ir=10,  # [ORT]
        onnxruntime_c_api=19,  # [SRC] onnxruntime_c_api.h
        libtorch="2.5.0a0+e000cf0",  # [CM] PyTorch build of the 24.10 NGC frameworks
        torchscript_max_file_version=10,  # [PT]
        repository="nvcr.io/nvidia/tritonserver",
        vllm="0.5.5",  # [VLLM]
        py3_backends=(
            "onnxruntime",
            "pytorch",
            "tensorrt",
            "tensorflow",
            "openvino",
            "python",
            "fil",
            "identity",
            "repeat",
            "square",
        ),
        vllm_backends=("vllm", "python"),
        user_id=1000,
        # numpy 1.x: Triton 2.51's Python backend mis-sizes output tensors built from numpy 2.
        python_base=("numpy==1.26.4",),  # [PIP]
        python_runtimes=(
            ("onnx", (f"onnxruntime-gpu=={_ORT_2410}",)),  # the container's ORT, CUDA 12 wheel
            ("torch", ("torch==2.5.1",)),  # bundles CUDA 12.4 libraries; runs on 12.6 [PIP]
        ),
        # The newest transformers of the major we test with that supports Python 3.10. [PIP]
        generation_packages=("transformers==5.20.2", "tokenizers==0.23.3"),
    ),
}
TARGET = TARGETS["24.10"]

# Shorthands of TARGET that existing code reads (one fact each, defined above).
TRITON_VERSION = TARGET.triton_version
TRITON_SOURCE_BRANCH = TARGET.source_branch
NGC_RELEASE = TARGET.release
NGC_REPOSITORY = TARGET.repository
NGC_IMAGE = TARGET.image
NGC_VLLM_IMAGE = TARGET.vllm_image
VLLM_VERSION = TARGET.vllm
NGC_USER_ID = TARGET.user_id
# The wheel that carries the embedded tritonserver binary of TARGET.triton_version.
PYTRITON_VERSION = "0.7.0"
# Triton's default ports (tritonserver, the NGC image, `serve`, and the client's URL without a
# port): the one home of these numbers.
TRITON_PORTS: dict[str, int] = {"http": 8000, "grpc": 8001, "metrics": 8002}
# The host a client calls when no URL is given.
DEFAULT_HOST = "localhost"

# What Python-backend and generation models need installed in TARGET's image (exact pins).
PYTHON_BACKEND_BASE = TARGET.python_base
PYTHON_BACKEND_RUNTIMES: dict[str, tuple[str, ...]] = dict(TARGET.python_runtimes)
GENERATION_PACKAGES = TARGET.generation_packages


# The distribution name of this tool (pip, build records, generated files say which release).
PACKAGE = "triton-packager"


def package_version() -> str:
    """This install's version of triton-packager; ``0+source`` in a source tree without one."""
    import importlib.metadata

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "0+source"


def cache_root() -> Path:
    """The project's cache folder (compiled backends, runtimes, stub environments):
    ``$TRITON_PACKAGER_CACHE``, else ``$XDG_CACHE_HOME/triton-packager``."""
    import os

    env = os.environ.get("TRITON_PACKAGER_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / PACKAGE
