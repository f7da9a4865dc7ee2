"""``model.json`` for Triton's vLLM backend: engine arguments, checked against vLLM's own names.

Triton's vLLM backend (``src/model.py`` of triton-inference-server/vllm_backend, branch r24.10)
reads ``<model>/<version>/model.json`` and calls ``AsyncEngineArgs(**json)``: a misspelt key
fails only when the model loads on the GPU host. So every key written here is checked, offline,
against :file:`vllm_engine_args.txt`, the field names of ``EngineArgs`` / ``AsyncEngineArgs`` of
the vLLM release inside ``nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3`` (the file's
header says where the list was read).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packager.errors import PackagerError, SpecError
from packager.generate.build import FOLDER
from packager.releases import NGC_VLLM_IMAGE

if TYPE_CHECKING:
    from packager.options import BuildOptions

ARGS_FILE = Path(__file__).with_name("vllm_engine_args.txt")
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's own default
# Where the docker assets and a PVC mount the repository in the container (the deploy modules
# read it from here): model.json's default path is written for it.
CONTAINER_REPOSITORY = "/models"


def known_args() -> frozenset[str]:
    """The engine argument names vLLM accepts (comments and blank lines skipped)."""
    lines = ARGS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(s for line in lines if (s := line.split("#", 1)[0].strip()))


def check_args(args: Mapping[str, Any]) -> None:
    """Raise SpecError naming every key vLLM's ``AsyncEngineArgs`` does not have."""
    bad = sorted(set(args) - known_args())
    if bad:
        raise SpecError(
            [
                f"vLLM engine argument(s) {', '.join(bad)} do not exist in the vLLM release of "
                f"{NGC_VLLM_IMAGE} (see {ARGS_FILE.name}); check the spelling"
            ]
        )


def engine_args(options: BuildOptions, context: int) -> dict[str, Any]:
    """``model.json`` for ``options``: the folder shipped in the version, one tensor-parallel
    rank per ``--gpus`` entry, and ``--parameter vllm.KEY=VALUE`` overrides (JSON values)."""
    import json

    version = options.version
    args: dict[str, Any] = {
        "model": f"{CONTAINER_REPOSITORY}/{options.name}/{version}/{FOLDER}",
        "tensor_parallel_size": max(1, len(options.gpus)),
        "gpu_memory_utilization": DEFAULT_GPU_MEMORY_UTILIZATION,
        "max_model_len": context,
        "disable_log_requests": True,
    }
    for key, value in options.parameters.items():
        if key.startswith("vllm."):
            try:
                args[key[5:]] = json.loads(value)
            except ValueError:
                args[key[5:]] = value
    check_args(args)
    return args


# -- what a repository with vLLM models needs from its deployment ----------------------------

SHM_BYTES = 1 << 30  # /dev/shm for tensor parallelism (NCCL), as NVIDIA's vLLM examples use


def vllm_models(repo: Path | str) -> dict[str, int]:
    """Model name -> GPUs its newest version asks for (tensor x pipeline parallel), for every
    model of ``repo`` that Triton's vLLM backend runs."""
    return {name: gpus for name, (gpus, _) in vllm_claims(repo).items()}


def vllm_claims(repo: Path | str) -> dict[str, tuple[int, float]]:
    """Model name -> (GPUs, fraction of each GPU's memory) for every vLLM model of ``repo``:
    vLLM takes ``gpu_memory_utilization`` of every GPU it shards over (weights, activations and
    the KV cache all live inside it), whatever the model's size."""
    import json

    from packager.repository import list_models, read_config, versions

    out: dict[str, tuple[int, float]] = {}
    for model_dir in list_models(repo):
        try:
            config = read_config(model_dir)
        except PackagerError:
            continue  # validate reports unreadable configs; nothing to size here
        if config.backend != "vllm":
            continue
        numbers = versions(model_dir)
        args: dict[str, Any] = {}
        if numbers:
            try:
                args = json.loads((model_dir / str(numbers[-1]) / "model.json").read_text())
            except (OSError, ValueError):
                args = {}
        tp = int(args.get("tensor_parallel_size", 1) or 1)
        pp = int(args.get("pipeline_parallel_size", 1) or 1)
        share = float(args.get("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION))
        out[model_dir.name] = (tp * pp, share)
    return out


def check_model_paths(repo: Path | str, mount: str | None, where: str) -> None:
    """Refuse vLLM models whose ``model.json`` would not find their folder once deployed.

    Triton's vLLM backend (r24.10 ``src/model.py``) reads ``model.json`` from the version folder
    and passes its ``"model"`` to vLLM's ``AsyncEngineArgs`` as written: nothing resolves a
    relative path against the model folder (the stub's working directory is the server's). So the
    absolute path written at build time must equal where ``where`` puts the repository:
    ``mount`` (``/models`` for docker and a PVC subPath, ``/mnt/models`` for KServe), or None
    when that is a temporary folder Triton creates when it copies from object storage.
    """
    import json

    from packager.repository import list_models, read_config, versions

    wrong = []
    for model_dir in list_models(repo):
        try:
            if read_config(model_dir).backend != "vllm":
                continue
        except PackagerError:
            continue  # validate reports unreadable configs
        for v in versions(model_dir):
            try:
                args = json.loads((model_dir / str(v) / "model.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # validate reports a missing or broken model.json
            if mount is None:
                raise PackagerError(
                    f"{where}: Triton copies a repository from object storage into a temporary "
                    "folder whose name is chosen when it loads, and its vLLM backend passes "
                    f'model.json\'s "model" path to vLLM as written, so vLLM model '
                    f"{model_dir.name!r} cannot find its weights there. Put the repository on "
                    "a PersistentVolumeClaim (--repository-uri pvc://CLAIM/PATH), or use "
                    "--kserve (its storage initializer downloads to a fixed folder)"
                )
            expected = f"{mount}/{model_dir.name}/{v}/{FOLDER}"
            if args.get("model") != expected:
                wrong.append((f"{model_dir.name}/{v}/model.json", args.get("model"), expected))
    if wrong:
        lines = [f'  {f}: "model" is {have!r}, but there it is {want}' for f, have, want in wrong]
        fixes = sorted({f"--parameter vllm.model={want}" for _, _, want in wrong})
        raise PackagerError(
            f"{where} puts the repository at {mount}, where vLLM would not find these "
            "models' weights (Triton's vLLM backend passes model.json's path as written):\n"
            + "\n".join(lines)
            + f"\nrebuild each with {' / '.join(fixes)}, or deploy it where it was built for"
        )


def deploy_image(repo: Path | str, image: str) -> str:
    """The image to deploy ``repo`` on: NVIDIA's vLLM image of the same release when the repository
    holds vLLM models and the plain image (which has no vLLM backend) was asked for."""
    from packager.releases import NGC_IMAGE

    return NGC_VLLM_IMAGE if image == NGC_IMAGE and vllm_models(repo) else image


def check_gpus(repo: Path | str, count: int | None, option: str) -> None:
    """Refuse fewer GPUs than a vLLM model's tensor x pipeline parallel size (None: unknown)."""
    if count is None:
        return
    short = {name: n for name, n in vllm_models(repo).items() if n > count}
    if short:
        needs = ", ".join(f"{name} needs {n}" for name, n in sorted(short.items()))
        raise PackagerError(
            f"{option} {count}: vLLM shards these models over GPUs ({needs}, its "
            "tensor_parallel_size x pipeline_parallel_size); give that many GPUs or rebuild "
            "with fewer --gpus"
        )
