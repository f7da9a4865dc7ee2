"""``build FOLDER --task text-generation``: a causal LM folder -> a decoupled, streaming model.

Two repositories, one interface (the tensors of Triton's vLLM backend, :data:`INPUTS`):

- ``--backend python`` (the default for this task; what the embedded server runs): ``model.py``
  (:mod:`packager.generate.triton_model`) and ``tp_engine.py`` (:mod:`packager.generate.engine`)
  with the folder's files under ``hf/``; torch and transformers decode on CPU or GPU;
- ``--backend vllm`` (GPU hosts, NVIDIA's ``-vllm-python-py3`` image): ``model.json`` with vLLM
  engine arguments (:mod:`packager.generate.vllm`) and the folder under ``hf/``.

Both configs are ``max_batch_size: 0`` with ``model_transaction_policy { decoupled: true }``:
the engine batches running generations itself, per decoding step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packager.dtypes import parse as dtype
from packager.errors import SourceError, SpecError
from packager.formats import PYTHON_FILE
from packager.planners import PlannedModel
from packager.releases import package_version
from packager.render import render_config
from packager.repository import ModelWrite, versions
from packager.sources import Signature
from packager.sources.huggingface import GENERATION_TASK, SHARD_INDEXES, WEIGHT_FILES
from packager.spec import InstanceGroup, ModelSpec, TensorSpec, name_problem

if TYPE_CHECKING:
    from packager.options import BuildOptions

TASK = GENERATION_TASK
BACKENDS = ("python", "vllm")
HERE = Path(__file__).parent
FOLDER = "hf"  # the Hugging Face folder inside the version folder
# packager/generate/<module>.py -> its name in the version folder (beside model.py)
RUNTIME_FILES = {"engine.py": "tp_engine.py", "sampling.py": "tp_sampling.py"}
WEIGHTS = (*WEIGHT_FILES, *SHARD_INDEXES)  # the Hugging Face source's list: one list
# Files of a Hugging Face folder the engine (or vLLM) reads; others (optimizer state...) stay out.
# chat_template.jinja: the chat template newer transformers save beside tokenizer_config.json
# (which holds it otherwise); the OpenAI service renders it (packager/openai_api/chat.py).
KEEP_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".tiktoken", ".jinja")

INPUTS = (
    TensorSpec("text_input", dtype("BYTES"), (1,)),
    TensorSpec("stream", dtype("BOOL"), (1,), optional=True),
    TensorSpec("sampling_parameters", dtype("BYTES"), (1,), optional=True),
    TensorSpec("exclude_input_in_output", dtype("BOOL"), (1,), optional=True),
)
OUTPUTS = (TensorSpec("text_output", dtype("BYTES"), (-1,)),)
# The python engine's additions: outputs on request, as Triton's vLLM backend (r24.12+) names
# them (what the OpenAI service reads usage and finish reasons from), and add_special_tokens.
ENGINE_INPUTS = (
    *INPUTS,
    TensorSpec("return_finish_reason", dtype("BOOL"), (1,), optional=True),
    TensorSpec("return_num_input_tokens", dtype("BOOL"), (1,), optional=True),
    TensorSpec("return_num_output_tokens", dtype("BOOL"), (1,), optional=True),
    # False: the prompt is tokenized without BOS (a rendered chat template holds it already).
    TensorSpec("add_special_tokens", dtype("BOOL"), (1,), optional=True),
)
ENGINE_OUTPUTS = (
    *OUTPUTS,
    TensorSpec("finish_reason", dtype("BYTES"), (-1,)),
    TensorSpec("num_input_tokens", dtype("UINT32"), (-1,)),
    TensorSpec("num_output_tokens", dtype("UINT32"), (-1,)),
)


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path} cannot be read as JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def is_causal_lm(model: Any) -> bool:
    """A Hugging Face folder whose ``architectures`` name a causal LM (``...ForCausalLM``,
    ``...LMHeadModel``): what ``--task`` defaults to ``text-generation`` for."""
    if not isinstance(model, (str, Path)) or not (Path(model) / "config.json").is_file():
        return False
    try:
        archs = [str(a) for a in _config(Path(model)).get("architectures") or ()]
    except SourceError:
        return False
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    raise SourceError("config.json gives no context length (max_position_embeddings)")


def folder_files(folder: Path) -> dict[str, Path]:
    """``hf/<name>`` -> file, for the folder's config, weights and tokenizer files."""
    missing = []
    if not any((folder / w).is_file() for w in WEIGHTS):
        missing.append(f"weights ({' or '.join(WEIGHTS)})")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer.model").is_file():
        missing.append("a tokenizer (tokenizer.json)")
    if missing:
        raise SourceError(
            f"{folder} has no {' and no '.join(missing)}; save the model and its tokenizer "
            "there with save_pretrained()"
        )
    return {
        f"{FOLDER}/{p.name}": p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in KEEP_SUFFIXES
    }


def _problems(model: Any, o: BuildOptions) -> list[str]:
    out = []
    if (p := name_problem(o.name)) is not None:
        out.append(p)
    if o.source.task not in (None, TASK):
        out.append(f"--backend vllm serves --task {TASK}, not {o.source.task}")
    backend = "python" if o.backend == "native" else o.backend
    if backend not in BACKENDS:
        out.append(f"--task {TASK} takes --backend python or vllm, got {o.backend!r}")
    if o.max_batch_size not in (None, 0):
        out.append(
            f"--max-batch-size {o.max_batch_size}: a generative model batches per decoding step "
            "by itself (max_batch_size 0); leave it out"
        )
    if o.compress.quantize or o.compress.fp16 or o.compress.prune is not None:
        out.append(f"compression options do not apply to --task {TASK}")
    if not isinstance(model, (str, Path)) or not Path(model).is_dir():
        out.append(f"--task {TASK} takes a Hugging Face folder; {model!r} is not a folder")
    elif not (Path(model) / "config.json").is_file():
        out.append(f"{model} has no config.json: it is not a Hugging Face model folder")
    elif not is_causal_lm(model):
        archs = _config(Path(model)).get("architectures")
        out.append(
            f"{model}: architectures {archs} is not a causal LM (...ForCausalLM); "
            "text generation needs one"
        )
    return out


def plan_generation(model: Any, options: BuildOptions) -> PlannedModel:
    """Plan the generative model of ``options.backend`` (``native`` means ``python`` here)."""
    o = options
    problems = _problems(model, o)
    if problems:
        raise SpecError(problems, subject=f"build of {o.name!r}")
    folder = Path(model).resolve()
    config = _config(folder)
    files: dict[str, Any] = folder_files(folder)
    context = context_length(config)
    backend = "vllm" if o.backend == "vllm" else "python"
    record: dict[str, Any] = {
        "packager": package_version(),
        "format": TASK,
        "source": {"format": "huggingface", "folder": folder.name},
        "huggingface": {
            "model_type": config.get("model_type"),
            "architectures": config.get("architectures"),
            "task": TASK,
            "max_model_len": context,
        },
    }
    params = dict(o.parameters)
    groups: tuple[InstanceGroup, ...]
    if o.version is None:  # the number is part of model.json's path: fix it now
        model_dir = Path(o.output) / o.name
        o = o.replace(version=max(versions(model_dir), default=0) + 1 if model_dir.is_dir() else 1)
    if backend == "vllm":
        from packager.generate.vllm import engine_args

        args = engine_args(o, context)
        params = {k: v for k, v in params.items() if not k.startswith("vllm.")}
        files["model.json"] = json.dumps(args, indent=2, sort_keys=True) + "\n"
        groups = (InstanceGroup("KIND_MODEL", 1),)
        record["vllm"] = {"engine_args": args}
    else:
        files[PYTHON_FILE] = (HERE / "triton_model.py").read_text(encoding="utf-8")
        for source, target in RUNTIME_FILES.items():
            files[target] = (HERE / source).read_text(encoding="utf-8")
        params.setdefault("model_folder", FOLDER)
        params.setdefault("max_running", "32")
        groups = o.groups(auto="KIND_CPU")  # the engine picks its device from the group
        record["requires"] = list(requirements())
    spec = ModelSpec(
        name=o.name,
        inputs=INPUTS if backend == "vllm" else ENGINE_INPUTS,
        outputs=OUTPUTS if backend == "vllm" else ENGINE_OUTPUTS,
        backend=backend,
        max_batch_size=0,
        instance_groups=groups,
        version_policy=o.version_policy,
        parameters=params,
        decoupled=True,
    )
    text = render_config(spec)
    record["runtime"] = spec.runtime
    write = ModelWrite(spec, files, o.version, record, {}, text)
    return PlannedModel(write, "model", Signature(spec.inputs, spec.outputs))


def requirements() -> tuple[str, ...]:
    """What ``model.py`` imports on a GPU host (the image built by ``docker`` installs them):
    the target's torch, transformers and tokenizers, pinned for the image's Python (3.10), not
    the versions installed here (transformers 5.21+ needs Python 3.11)."""
    from packager.releases import GENERATION_PACKAGES, PYTHON_BACKEND_RUNTIMES

    return (*PYTHON_BACKEND_RUNTIMES["torch"], *GENERATION_PACKAGES)
