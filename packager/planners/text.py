"""The planner of ``build FOLDER --name NAME --text``: a Hugging Face folder as one ensemble
that takes sentences, planned in one go (no manifest, no scratch repository)::

    NAME            ensemble: TEXT (BYTES [1]) -> embedding, or LABEL + PROBS
    NAME_tokenizer  Python step: the folder's tokenizer.json (truncation to the model's limit)
    NAME_model      the exported model (planners.model; every model option of the build applies)
    NAME_labels     Python step, classification only: softmax and config.json's id2label

so that ``Client.infer("NAME", ["a sentence", ...])`` returns embeddings or labels. The steps
are ``packager/sources/hf_steps.py``; the server's Python needs the ``tokenizers`` library.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from packager.dtypes import parse as dtype
from packager.errors import SourceError, SpecError
from packager.manifest.ensemble import EnsembleStep, plan_ensemble
from packager.manifest.pysteps import STEP_INSTANCE_GROUPS, PythonStep, plan_step
from packager.options import BuildOptions
from packager.planners import Plan, PlannedModel
from packager.planners.model import DEFAULT_MAX_BATCH_SIZE, plan_model
from packager.render import render_config
from packager.repository import ModelWrite
from packager.sources.huggingface import describe
from packager.spec import DynamicBatching, TensorSpec

# The steps' code: run inside Triton's Python backend, never imported here.
STEPS_FILE = Path(__file__).parents[1] / "sources" / "hf_steps.py"
_IDS_MAP = {"input_ids": "input_ids", "attention_mask": "attention_mask"}


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> EnsembleStep:
    """An ensemble step running the newest version of ``model`` (member tensor -> ensemble)."""
    return EnsembleStep(model, -1, tuple(inputs.items()), tuple(outputs.items()))


def _target_pin(dist: str) -> str:
    """``dist==version`` as the target image installs it (packager.releases): pinned, so an image
    rebuilt later tokenizes the same, and chosen for the image's Python, not ours."""
    from packager.releases import GENERATION_PACKAGES

    return next(r for r in GENERATION_PACKAGES if r.partition("==")[0] == dist)


def plan_text(folder: str | Path, o: BuildOptions) -> Plan:
    """Plan the text pipeline of ``folder``: tokenizer, model, labels (classifiers), ensemble."""
    root = Path(folder).resolve()
    info = describe(root, o.source.task)
    if info.tokenizer is None:
        raise SourceError(f"{root} has no tokenizer.json: a text pipeline needs the tokenizer")
    name = o.name
    mbs = DEFAULT_MAX_BATCH_SIZE if o.max_batch_size is None else o.max_batch_size
    # the steps batch like the model: the same max batch size and queue delay
    batching = DynamicBatching(max_queue_delay_us=o.batching.max_queue_delay_us)
    step_batching = batching if mbs > 0 else None

    # Without Triton's batching (max batch size 0) the steps' tensors carry the batch dim
    # themselves, as the exported model's do: the steps see the same arrays either way.
    def t(name: str, type_: str, *dims: int) -> TensorSpec:
        return TensorSpec(name, dtype(type_), dims if mbs > 0 else (-1, *dims))

    plan = Plan()
    try:
        tokenizer = PythonStep(
            name=f"{name}_tokenizer",
            file=STEPS_FILE,
            entry="Tokenize",
            kind="class",
            inputs=(t("TEXT", "BYTES", 1),),
            outputs=(t("input_ids", "INT64", -1), t("attention_mask", "INT64", -1)),
            max_batch_size=mbs,
            instance_groups=STEP_INSTANCE_GROUPS,
            dynamic_batching=step_batching,
            parameters={"max_length": str(info.max_length)},
            files={info.tokenizer.name: info.tokenizer},
            source_name=STEPS_FILE.name,
            requires=(_target_pin("tokenizers"),),
        )
        plan.models.append(plan_step(tokenizer, o.version))
        model = o.replace(name=f"{name}_model", text=False, max_batch_size=mbs)
        plan.models.append(plan_model(root, model))
        flow = [
            _step(f"{name}_tokenizer", {"TEXT": "TEXT"}, _IDS_MAP),
        ]
        if info.task == "sequence-classification":
            if not info.labels:
                raise SourceError(f"{root}/config.json has no id2label: the labels are unknown")
            work = tempfile.TemporaryDirectory(prefix="tp-text-")
            plan.workdirs.append(work)
            labels_file = Path(work.name) / "labels.txt"
            labels_file.write_text("\n".join(info.labels) + "\n", encoding="utf-8")
            n = len(info.labels)
            labels = PythonStep(
                name=f"{name}_labels",
                file=STEPS_FILE,
                entry="Labels",
                kind="class",
                inputs=(t("logits", "FP32", n),),
                outputs=(t("LABEL", "BYTES", 1), t("PROBS", "FP32", n)),
                max_batch_size=mbs,
                instance_groups=STEP_INSTANCE_GROUPS,
                dynamic_batching=DynamicBatching() if mbs > 0 else None,
                labels={"PROBS": labels_file},
                source_name=STEPS_FILE.name,
            )
            plan.models.append(plan_step(labels, o.version))
            flow.append(_step(f"{name}_model", _IDS_MAP, {"logits": "logits"}))
            flow.append(
                _step(f"{name}_labels", {"logits": "logits"}, {"LABEL": "LABEL", "PROBS": "PROBS"})
            )
            outputs = ["LABEL", "PROBS"]
        else:
            flow.append(_step(f"{name}_model", _IDS_MAP, {"embedding": "embedding"}))
            outputs = ["embedding"]
        members = {m.name: m.write.spec for m in plan.models}
        spec, issues = plan_ensemble(name, flow, members, inputs=["TEXT"], outputs=outputs)
        if spec is None or issues:
            raise SpecError([message for _, message in issues], subject=f"ensemble {name!r}")
        record = {"format": "ensemble", "runtime": "ensemble"}
        write = ModelWrite(spec, {}, o.version, record, {}, render_config(spec))
        plan.models.append(PlannedModel(write, "ensemble"))
        return plan
    except BaseException:
        plan.close()
        raise
