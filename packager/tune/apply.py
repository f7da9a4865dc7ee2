"""``tune --apply``: write the winning settings into the model's config.pbtxt, with the measurement.

The change goes through :func:`packager.repository.rewrite_model` (staged copy, validated, swapped
in atomically): config.pbtxt gets the winner's instance count, max batch size and dynamic batching,
and ``tuning.json`` beside it records what was measured. Version folders are not touched, so their
checksums stay valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from packager.errors import SpecError
from packager.tune.search import Candidate

TUNING_RECORD = "tuning.json"


def tuned_config(config: Any, c: Candidate) -> Any:
    """A copy of the parsed ``config`` (``model_config_pb2.ModelConfig``) with ``c`` applied.

    Only the tuned knobs change: everything else, including the other dynamic batching fields,
    instance kinds and GPU lists, is kept. Preferred batch sizes and warmup batch sizes above the
    new max batch size are dropped or lowered, as Triton would refuse them.
    """
    from tritonclient.grpc import model_config_pb2 as pb

    new = pb.ModelConfig()
    new.CopyFrom(config)
    if new.max_batch_size > 0:
        new.max_batch_size = c.max_batch_size
    groups = list(new.instance_group)
    if len(groups) > 1:
        if c.instances != sum(max(g.count, 1) for g in groups):
            raise SpecError(
                [
                    f"the model has {len(groups)} instance groups; tune sets one group's count. "
                    "Merge them or edit instance counts by hand"
                ],
                subject=f"model {config.name!r}",
            )
    elif groups:
        new.instance_group[0].count = c.instances
    else:
        # No group means one instance (per GPU); KIND_AUTO keeps Triton's choice of device.
        new.instance_group.add(kind=pb.ModelInstanceGroup.KIND_AUTO, count=c.instances)
    if c.dynamic_batching and new.max_batch_size > 0:
        db = new.dynamic_batching  # created if absent; other fields kept
        db.max_queue_delay_microseconds = c.queue_delay_us
        keep = [b for b in db.preferred_batch_size if b <= new.max_batch_size]
        del db.preferred_batch_size[:]
        db.preferred_batch_size.extend(keep)
    else:
        new.ClearField("dynamic_batching")
    for w in new.model_warmup:
        if new.max_batch_size > 0 and w.batch_size > new.max_batch_size:
            w.batch_size = new.max_batch_size
    return new


def config_text(config: Any) -> str:
    """config.pbtxt text: our template's layout when it says everything, else protobuf text."""
    from google.protobuf import text_format

    from packager.render import parse_config, render_config, spec_from_config

    spec = spec_from_config(config)
    spec.check()  # the same rules as build: a tuned config that breaks one is never written
    try:
        text = render_config(spec)
    except SpecError:
        text = ""
    # The template knows the fields the packager writes; a hand-edited config may have more
    # (response cache, sequence batching...). Those are kept by writing protobuf text instead.
    if text and parse_config(text) == config:
        return text
    return str(text_format.MessageToString(config))


def apply_candidate(model_dir: Path, c: Candidate, record: dict[str, Any]) -> str:
    """Write ``c`` into ``model_dir``/config.pbtxt and ``record`` into tuning.json; atomic.

    Returns the new config text.
    """
    from packager.repository import CONFIG, read_config, rewrite_model

    model_dir = Path(model_dir)
    new_text = config_text(tuned_config(read_config(model_dir), c))
    record_text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"

    def mutate(staged: Path) -> None:
        # The staged copy is hard-linked to the live files: replace files, never write into them.
        for name, text in ((CONFIG, new_text), (TUNING_RECORD, record_text)):
            (staged / name).unlink(missing_ok=True)
            (staged / name).write_text(text, encoding="utf-8")

    rewrite_model(model_dir.parent, model_dir.name, mutate)
    return new_text
