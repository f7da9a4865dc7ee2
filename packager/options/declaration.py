"""THE declaration of ``build``'s options: each option once, with its flag, help, value type,
default, home in :class:`~packager.options.BuildOptions`, manifest key and the build kinds that
honour it. The click options of ``build``, the manifest schema of a model entry and the keywords
of ``packager.build(...)`` are all generated from :data:`OPTIONS` (tests/unit/test_build_options.py
checks that the three agree).

How to add an option (nothing else lists options; do not add them by hand elsewhere):
  1. give it a home: a field of ``BuildOptions`` (options/__init__.py) or of one of its groups
     (DynamicBatching, QueuePolicy, GpuOptimization, CompressOptions, SourceOptions); a new
     group class goes into :data:`GROUPS`;
  2. append one ``Option(...)`` to :data:`OPTIONS` below:
       name      the Python keyword of packager.build() (also the click parameter name)
       flag      the CLI spelling, "--x" or "--x/--no-x"; None: manifest and Python only
       help      one line for --help (the manifest's messages reuse it)
       value     a type of options/values.py (Int(0), Flag(), Text(choices), File(), ...)
       default   what "not given" means; an option equal to it is not "set"
       field     its dotted home: "warmup", "compress.quantize", "batching.priority_levels"
       manifest  its dotted key in a manifest model entry ("export.opset"); None only for
                 options about the run (output, force, dry run), which are run=True
       kinds     the build kinds (KINDS) that honour it; set for another kind, the build is
                 refused naming the kind
  3. read the typed value where the build uses it (builder.py, a source, a planner).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.compress.pipeline import CompressOptions
from packager.compress.quantize import QUANTIZE_MODES
from packager.formats import FORMATS
from packager.options.values import (
    Axes,
    File,
    Files,
    Flag,
    Float,
    Folder,
    Groups,
    Int,
    IntList,
    KeyValues,
    Names,
    Policy,
    PriorityPolicies,
    Tensors,
    Text,
    Value,
)
from packager.scheduling import CONTROL_KINDS, DEFAULT_IDLE_US, SchedulingOptions
from packager.sources import SourceOptions
from packager.sources.huggingface import GENERATION_TASK, TASKS
from packager.spec import DynamicBatching, GpuOptimization, QueuePolicy

# The kinds of build, as :func:`refused` names them. A model file's kind is its source's name.
KINDS: dict[str, str] = {
    "onnx": "an ONNX file",
    "torchscript": "a TorchScript file",
    "keras": "a Keras file",
    "savedmodel": "a TensorFlow SavedModel",
    "pytorch": "a PyTorch module",
    "huggingface": "a Hugging Face folder",
    "text": "a text pipeline (--text)",
    "generation": f"a generative model (--task {GENERATION_TASK})",
}
ALL = frozenset(KINDS)
ONE_MODEL = ALL - {"text", "generation"}  # builds of one config from one loaded model
WITH_TEXT = ONE_MODEL | {"text"}  # and a text pipeline's NAME_model (built the same way)
SERVING = WITH_TEXT | {"generation"}  # instances and parameters: every model
EXPORTED = frozenset(
    {"pytorch", "keras", "savedmodel", "huggingface", "text"}
)  # exported + verified
ONNX_OUT = EXPORTED | {"onnx"}  # builds whose artifact can be an ONNX file (compression)
VERIFIED = ONNX_OUT  # exported, or converted (--opset on an ONNX file), and verified


@dataclass(frozen=True)
class Option:
    """One build option, declared once (see the module docstring)."""

    name: str  # Python keyword of packager.build() and the click parameter name
    flag: str | None  # CLI spelling ("--x", "--x/--no-x"); None: manifest and Python only
    help: str
    value: Value
    default: Any
    field: str  # home in BuildOptions, dotted through GROUPS ("compress.quantize")
    manifest: str | None  # key of a manifest model entry, dotted for nested ("export.opset")
    kinds: frozenset[str]  # build kinds that honour it (KINDS)
    short: str | None = None  # "-n"
    show_default: bool = False
    run: bool = False  # about the run, not the model (output, force, dry run): CLI and Python

    @property
    def cli_name(self) -> str:
        return (self.flag or "").split("/")[0]

    def is_set(self, value: Any) -> bool:
        """Whether ``value`` differs from the default (what a kind check looks at)."""
        if self.default is None:
            return value is not None and value != () and value != {}
        return bool(value != self.default)


# BuildOptions groups: dotted prefix of Option.field -> the dataclass holding those fields.
GROUPS: dict[str, type] = {
    "batching": DynamicBatching,
    "batching.default_queue_policy": QueuePolicy,
    "gpu_optimization": GpuOptimization,
    "compress": CompressOptions,
    "source": SourceOptions,
    "scheduling": SchedulingOptions,
}

OPTIONS: tuple[Option, ...] = (
    Option("name", "--name", "Model name in the repository (folder and URL name).",
           Text(), None, "name", "name", ALL, short="-n"),
    Option("output", "--output", "Model repository to write into (created if missing).",
           Folder(), Path("model_repository"), "output", None, ALL, short="-o",
           show_default=True, run=True),
    Option("format", "--format", "Artifact format: auto (detect a file by content) or one of "
           "the formats (for a PyTorch module: the export target, default onnx).",
           Text(("auto", *FORMATS)), "auto", "format", "format", ALL - {"generation"},
           show_default=True),
    Option("backend", "--backend", "native: Triton's onnxruntime/libtorch backend; python: run "
           "the artifact in Triton's Python backend (what the embedded server supports); vllm: "
           "a causal LM for Triton's vLLM backend on GPU hosts (model.json; docs/generate.md).",
           Text(("native", "python", "vllm")), "native", "backend", "backend", ALL,
           show_default=True),
    Option("max_batch_size", "--max-batch-size", "Largest batch Triton may form; 0 = the model "
           "does not batch. Default: 32 when every tensor has a dynamic first dim, else 0.",
           Int(0), None, "max_batch_size", "max_batch_size", ALL),
    Option("kind", "--kind", "Instance group kind.", Text(("auto", "gpu", "cpu", "model")),
           "auto", "kind", "kind", SERVING, show_default=True),
    Option("gpus", "--gpus", "GPU ids for KIND_GPU instances, e.g. 0,1.", IntList(0), (),
           "gpus", "gpus", SERVING),
    Option("instances", "--instances", "Instances per device (per GPU for --kind gpu).",
           Int(1), 1, "instances", "instances", SERVING, show_default=True),
    Option("instance_groups", None, "Explicit instance groups (instead of kind/instances/gpus).",
           Groups(), None, "instance_groups", "instance_groups", SERVING),
    Option("dynamic_batching", "--dynamic-batching/--no-dynamic-batching", "Server-side "
           "batching of concurrent requests. Default: on when max batch size > 0.",
           Flag(switch=True), None, "dynamic_batching", "dynamic_batching", WITH_TEXT),
    Option("preferred_batch_sizes", "--preferred-batch-size",
           "Preferred batch size of the dynamic batcher (repeatable).", IntList(1, repeat=True),
           (), "batching.preferred_batch_sizes", "dynamic_batching.preferred_batch_sizes",
           WITH_TEXT),
    Option("max_queue_delay_us", "--max-queue-delay-us", "How long the batcher may hold a "
           "request to form a bigger batch.", Int(0), 0, "batching.max_queue_delay_us",
           "dynamic_batching.max_queue_delay_us", WITH_TEXT, show_default=True),
    Option("preserve_ordering", "--preserve-ordering", "Return responses in request order.",
           Flag(), False, "batching.preserve_ordering", "dynamic_batching.preserve_ordering",
           WITH_TEXT),
    Option("priority_levels", "--priority-levels", "Number of request priority levels.", Int(0),
           0, "batching.priority_levels", "dynamic_batching.priority_levels", WITH_TEXT,
           show_default=True),
    Option("default_priority_level", "--default-priority-level", "Priority of requests that "
           "name none (1..priority levels).", Int(0), 0, "batching.default_priority_level",
           "dynamic_batching.default_priority_level", WITH_TEXT, show_default=True),
    Option("queue_timeout_us", "--queue-timeout-us", "Default queue timeout per request; with "
           "--timeout-action.", Int(0), None, "batching.default_queue_policy.default_timeout_us",
           "dynamic_batching.queue_timeout_us", WITH_TEXT),
    Option("timeout_action", "--timeout-action", "What happens to a request that times out in "
           "the queue.", Text(("REJECT", "DELAY")), "REJECT",
           "batching.default_queue_policy.timeout_action", "dynamic_batching.timeout_action",
           WITH_TEXT, show_default=True),
    Option("max_queue_size", "--max-queue-size", "Queue bound (0 = unbounded).", Int(0), 0,
           "batching.default_queue_policy.max_queue_size", "dynamic_batching.max_queue_size",
           WITH_TEXT, show_default=True),
    Option("priority_queue_policies", "--priority-queue-policy", "Queue policy of one priority "
           "level of the dynamic batcher (repeatable).", PriorityPolicies(), (),
           "batching.priority_queue_policies", "dynamic_batching.priority_queue_policies",
           WITH_TEXT),
    Option("version", "--version", "Version number to write. Default: the next free number.",
           Int(1), None, "version", "version", ALL),
    Option("version_policy", "--version-policy", "latest[:N] | all | specific:V1,V2", Policy(),
           None, "version_policy", "version_policy", ONE_MODEL | {"generation"}),
    Option("warmup", "--warmup", "Add a random-data warmup request of this batch size "
           "(0 = none).", Int(0), 0, "warmup", "warmup", WITH_TEXT, show_default=True),
    Option("parameters", "--parameter", "Free config parameter KEY=VALUE (repeatable).",
           KeyValues(), {}, "parameters", "parameters", SERVING),
    Option("labels", "--label-file", "Labels file of a classification output, OUTPUT=FILE "
           "(label_filename; repeatable).", KeyValues(files=True), {}, "labels", "labels",
           ONE_MODEL),
    Option("tensorrt", "--tensorrt", "GPU: ONNX Runtime with the TensorRT execution "
           "accelerator.", Flag(), False, "gpu_optimization.tensorrt", "tensorrt", WITH_TEXT),
    Option("tensorrt_precision", "--tensorrt-precision", "TensorRT precision mode.",
           Text(("FP32", "FP16")), "FP16", "gpu_optimization.tensorrt_precision",
           "tensorrt_precision", WITH_TEXT, show_default=True),
    Option("cuda_graphs", "--cuda-graphs", "GPU: capture CUDA graphs (ONNX Runtime).", Flag(),
           False, "gpu_optimization.cuda_graphs", "cuda_graphs", WITH_TEXT),
    # Sequence batching / implicit state, response cache, rate limiter (packager.scheduling;
    # docs/stateful.md)
    Option("stateful", "--stateful", "A stateful model: Triton's sequence batcher keeps its "
           "state between the requests of a sequence (implicit state: an input and an output of "
           "equal dtype and shape whose names say state, or those named by --state); clients "
           "send only the data (docs/stateful.md).", Flag(), False, "scheduling.stateful",
           "stateful", ONE_MODEL),
    Option("states", "--state", "A state pair: the server feeds OUTPUT of one request back as "
           "INPUT of the next (repeatable; implies --stateful).", Names("INPUT:OUTPUT"), (),
           "scheduling.states", "states", ONE_MODEL),
    Option("sequence_batching", "--sequence-batching", "The sequence batcher without implicit "
           "state (the model keeps its own state).", Flag(), False,
           "scheduling.sequence_batching", "sequence_batching", ONE_MODEL),
    Option("sequence_strategy", "--sequence-strategy", "oldest: batch requests of up to "
           "--max-candidate-sequences sequences; direct: one batch slot per sequence (max batch "
           "size x instances slots).", Text(("oldest", "direct")), "oldest",
           "scheduling.sequence_strategy", "sequence_strategy", ONE_MODEL, show_default=True),
    Option("max_candidate_sequences", "--max-candidate-sequences", "oldest strategy: sequences "
           "the batcher batches from [default: 16].", Int(0), 0,
           "scheduling.max_candidate_sequences", "max_candidate_sequences", ONE_MODEL),
    Option("sequence_idle_us", "--sequence-idle-us", "A sequence with no request for this long "
           "is ended and its state freed.", Int(1), DEFAULT_IDLE_US,
           "scheduling.sequence_idle_us", "sequence_idle_us", ONE_MODEL, show_default=True),
    Option("sequence_controls", "--sequence-control", f"A control input the batcher fills "
           f"({', '.join(CONTROL_KINDS)}), e.g. start=START, corrid=CORRID:UINT64 (repeatable).",
           Names("KIND=INPUT[:DTYPE]"), (), "scheduling.sequence_controls", "sequence_controls",
           ONE_MODEL),
    Option("response_cache", "--response-cache", "Answer repeated identical requests from the "
           "server's response cache (serve passes --cache-config local,size=...).", Flag(),
           False, "scheduling.response_cache", "response_cache", ONE_MODEL),
    Option("rate_limit_resources", "--rate-limit-resource", "A resource each instance holds "
           "while it executes (repeatable); models sharing a resource name never exceed its "
           "count together (serve passes --rate-limit execution_count).",
           Names("NAME[:COUNT[:global]]"), (), "scheduling.rate_limit_resources",
           "rate_limit_resources", ONE_MODEL),
    Option("rate_limit_priority", "--rate-limit-priority", "Rate limiter weight of the "
           "instances (lower runs more often; 0 = Triton's 1).", Int(0), 0,
           "scheduling.rate_limit_priority", "rate_limit_priority", ONE_MODEL),
    Option("input_specs", "--input", "Input NAME:DTYPE:DIMS without the batch dim, e.g. "
           "x:FP32:3,224,224 (TorchScript/PyTorch); empty DIMS (t:FP32:) is a scalar per sample.",
           Tensors(), (), "source.input_specs", "inputs", frozenset({"torchscript", "pytorch"})),
    Option("example_inputs", "--example-input", ".npz of example inputs (batch dim first) to "
           "run the model with. Repeat it with examples of other shapes (e.g. another sequence "
           "length): the axes that differ become dynamic, and the export is verified on each "
           "example.", Files(), (), "source.example_inputs", "example_inputs",
           frozenset({"onnx", "torchscript", "pytorch", "huggingface", "text", "keras", "savedmodel"})),
    Option("weights", "--weights", "PyTorch: state_dict (.pt, loaded with weights_only=True) or "
           ".safetensors.", File(), None, "source.weights", "weights", frozenset({"pytorch"})),
    Option("output_names", "--output-name", "Name an output (repeatable, in order).", Names(),
           (), "source.output_names", "output_names", frozenset({"torchscript", "pytorch"})),
    Option("dynamic_axes", "--dynamic-axis", "PyTorch: make input axis NAME:AXIS dynamic without "
           "probing it (repeatable). Axes nobody names are decided by running the model at other "
           "sizes (docs/pytorch.md).", Axes(), None, "source.dynamic_axes", "dynamic_axes",
           frozenset({"pytorch"})),
    Option("fixed_axes", "--fixed-axis", "PyTorch: keep input axis NAME:AXIS at the example's "
           "size (repeatable), e.g. x:2.", Axes(), None, "source.fixed_axes", "fixed_axes",
           frozenset({"pytorch"})),
    Option("opset", "--opset", "ONNX opset of an export (PyTorch) or conversion (Keras, "
           "SavedModel: 17); for an ONNX file, convert it with ONNX's version converter (checked "
           "against the file).", Int(7), None, "source.opset", "export.opset", VERIFIED),
    Option("torchscript_mode", "--torchscript-mode", "PyTorch->TorchScript: torch.jit.trace or "
           "torch.jit.script.", Text(("trace", "script")), "trace", "source.torchscript_mode",
           "export.torchscript_mode", frozenset({"pytorch"}), show_default=True),
    Option("verify", "--verify/--no-verify", "Compare the exported or converted model with the "
           "source.", Flag(switch=True), True, "source.verify", "export.verify", VERIFIED,
           show_default=True),
    Option("atol", "--atol", "Verification absolute tolerance.", Float(), None, "source.atol",
           "export.atol", VERIFIED),
    Option("rtol", "--rtol", "Verification relative tolerance.", Float(), None, "source.rtol",
           "export.rtol", VERIFIED),
    Option("quantize", "--quantize", "ONNX: int8 weights (dynamic) or int8 weights and "
           "activations (static, QDQ).", Text(tuple(QUANTIZE_MODES)), None, "compress.quantize",
           "quantize", ONNX_OUT),
    Option("calibration_data", "--calibration-data", "static-int8: .npz of representative "
           "inputs (one array per input, samples first).", File(), None,
           "compress.calibration_data", "calibration_data", ONNX_OUT),
    Option("per_channel", "--per-channel", "Quantize weights per output channel.", Flag(), False,
           "compress.per_channel", "per_channel", ONNX_OUT),
    Option("fp16", "--fp16", "ONNX: fp16 weights and compute; fp32 inputs/outputs.", Flag(),
           False, "compress.fp16", "fp16", ONNX_OUT),
    Option("fp16_io", "--fp16-io", "With --fp16: make inputs and outputs FP16 too.", Flag(),
           False, "compress.fp16_io", "fp16_io", ONNX_OUT),
    Option("prune", "--prune", "PyTorch: zero this fraction (0-1) of each Linear/Conv layer's "
           "weights before export.", Float(), None, "compress.prune", "prune",
           frozenset({"pytorch"})),
    Option("prune_structured", "--prune-structured", "With --prune: remove whole output "
           "channels (L2 norm) instead of single weights.", Flag(), False,
           "compress.prune_structured", "prune_structured", frozenset({"pytorch"})),
    Option("eval_data", "--eval-data", "Labeled .npz (inputs + 'labels'): show the metric "
           "before/after compression.", File(), None, "compress.eval_data", "eval_data",
           ONNX_OUT),
    Option("eval_metric", "--eval-metric", "Metric for --eval-data: accuracy, topK (e.g. top5), "
           "mse, mae.", Text(), "accuracy", "compress.eval_metric", "eval_metric", ONNX_OUT,
           show_default=True),
    Option("task", "--task", "Hugging Face folder: what to serve (default: from config.json's "
           f"architectures; {GENERATION_TASK}: a streaming decoupled model for a causal LM, "
           "docs/generate.md).", Text((*TASKS, GENERATION_TASK)), None, "source.task", "task",
           frozenset({"huggingface", "text", "generation"})),
    Option("text", "--text", "Hugging Face folder: build a text-in ensemble NAME (tokenizer step "
           "-> NAME_model -> labels step for classifiers) that takes sentences as BYTES.", Flag(),
           False, "text", "text", frozenset({"text"})),
    Option("force", "--force", "Replace an existing version; with another signature than the "
           "model's config, replace every version of the model.", Flag(), False, "force", None,
           ALL, run=True),
    Option("dry_run", "--dry-run", "Print config.pbtxt and write nothing.", Flag(), False,
           "dry_run", None, ALL, run=True),
)  # fmt: skip
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
