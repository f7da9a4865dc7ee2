"""Planners: every kind of build turns its input into a :class:`Plan` (what to write) with no
repository I/O; :func:`packager.repository.write_models` is the one writer of plans.

============================  =====================================================
kind of build                 planner
============================  =====================================================
model file, module, HF task   :func:`packager.planners.model.plan_model`
text pipeline (``--text``)    :func:`packager.planners.text.plan_text`
generation (causal LM)        :func:`packager.generate.build.plan_generation`
manifest entry                :mod:`packager.manifest.builder` (the above, Python
                              steps and ensembles, into one Plan)
============================  =====================================================

:func:`packager.builder.plan` picks the planner (:data:`packager.builder.PLANNERS`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from packager.repository import ModelWrite
from packager.sources import LoadedModel, Signature


@dataclass
class PlannedModel:
    """One model version to write, its config rendered once, and what it came from."""

    write: ModelWrite  # spec, files, version, record, model files; write.config is rendered
    kind: str  # "model" | "python_step" | "ensemble"
    signature: Signature | None = None  # the loaded model's (full shapes)
    loaded: LoadedModel | None = None  # owns the temporary files ``write.files`` names

    @property
    def name(self) -> str:
        return self.write.spec.name

    @property
    def config(self) -> str:
        assert self.write.config is not None
        return self.write.config


@dataclass
class Plan:
    """What a build writes, members first (an ensemble after the models it calls). Close it
    (or use ``with``) once written: it owns the temporary files of exports."""

    models: list[PlannedModel] = field(default_factory=list)
    # folders of files the plan made itself (e.g. a labels file), removed by close()
    workdirs: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)

    @property
    def main(self) -> PlannedModel:
        """The model the build was asked for (the ensemble of a text pipeline)."""
        return self.models[-1]

    def writes(self) -> list[ModelWrite]:
        return [m.write for m in self.models]

    def close(self) -> None:
        for m in self.models:
            if m.loaded is not None:
                m.loaded.close()
        for w in self.workdirs:
            w.cleanup()
        self.workdirs.clear()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
