"""Value types of build options: how one kind of value is spelled on the CLI (click), in a
deploy manifest (YAML, read through :class:`packager.manifest.yamlcheck.Reader`) and in Python.

Each option of :mod:`packager.options.declaration` names one of these; a new kind of value is a
new class here with the four conversions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packager.errors import SpecError
from packager.sources import example_sets
from packager.spec import KIND_OPTIONS, InstanceGroup, QueuePolicy, VersionPolicy

if TYPE_CHECKING:
    from packager.manifest.yamlcheck import KeyPath, Reader


class Value:
    """How one kind of value is spelled on the CLI, in a manifest and in Python."""

    @property
    def metavar(self) -> str | None:
        """The CLI's placeholder for the value (None: click's own)."""
        return None

    def click(self) -> dict[str, Any]:
        """Keyword arguments of ``click.option`` (type, multiple, is_flag...)."""
        return {}

    def cli(self, raw: Any) -> Any:
        """The typed value of what click parsed; raise ValueError with the reason."""
        return raw

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        """The typed value of a manifest's YAML value (problems go to ``r``; None when absent)."""
        raise NotImplementedError

    def python(self, value: Any) -> Any:
        """A keyword argument of ``packager.build`` as the typed value."""
        return value

    def describe(self) -> str:
        """What the manifest expects, for its messages."""
        return self.metavar or "value"


@dataclass(frozen=True)
class Int(Value):
    minimum: int | None = None

    def click(self) -> dict[str, Any]:
        import click

        return {"type": int if self.minimum is None else click.IntRange(self.minimum, None)}

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return r.integer(value, path, self.minimum)

    def describe(self) -> str:
        return "integer" if self.minimum is None else f"integer >= {self.minimum}"


@dataclass(frozen=True)
class Float(Value):
    def click(self) -> dict[str, Any]:
        return {"type": float}

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return r.number(value, path)

    def describe(self) -> str:
        return "number >= 0"


@dataclass(frozen=True)
class Flag(Value):
    """``--x`` (off by default), or with ``switch`` ``--x/--no-x``."""

    switch: bool = False

    def click(self) -> dict[str, Any]:
        return {} if self.switch else {"is_flag": True}

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return r.flag(value, path)

    def python(self, value: Any) -> Any:
        return value if value is None else bool(value)

    def describe(self) -> str:
        return "true/false"


@dataclass(frozen=True)
class Text(Value):
    choices: tuple[str, ...] = ()

    def click(self) -> dict[str, Any]:
        import click

        return {"type": click.Choice(self.choices)} if self.choices else {}

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return r.text(value, path, self.choices)

    def describe(self) -> str:
        return " | ".join(self.choices) if self.choices else "string"


@dataclass(frozen=True)
class File(Value):
    """A file path (relative to the manifest's folder there); Python may pass data too."""

    def click(self) -> dict[str, Any]:
        import click

        return {"type": click.Path(dir_okay=False)}

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return r.file(value, path)

    def describe(self) -> str:
        return "file"


@dataclass(frozen=True)
class Folder(Value):
    def click(self) -> dict[str, Any]:
        import click

        return {"type": click.Path(file_okay=False)}

    def python(self, value: Any) -> Any:
        return Path(value)


@dataclass(frozen=True)
class Files(Value):
    """Repeatable files (``--example-input a.npz --example-input b.npz``; a list in a manifest)."""

    def click(self) -> dict[str, Any]:
        import click

        return {"type": click.Path(dir_okay=False), "multiple": True}

    def cli(self, raw: Any) -> Any:
        return tuple(raw)

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):  # one file
            return (f,) if (f := r.file(value, path)) is not None else ()
        found = [r.file(v, (*path, i)) for i, v in enumerate(value)]
        return tuple(f for f in found if f is not None)

    def python(self, value: Any) -> Any:
        return example_sets(value)

    def describe(self) -> str:
        return "file or list of files"


@dataclass(frozen=True)
class IntList(Value):
    """Integers: ``0,1`` on the CLI (or a repeated flag with ``repeat``); a list in a manifest."""

    minimum: int | None = None
    repeat: bool = False

    def click(self) -> dict[str, Any]:
        return {"type": int, "multiple": True} if self.repeat else {}

    def cli(self, raw: Any) -> Any:
        if self.repeat or raw is None:
            return tuple(raw or ())
        try:
            values = tuple(int(v) for v in str(raw).replace(" ", "").split(",") if v)
        except ValueError:
            raise ValueError(f"{raw!r} is not a comma-separated list of integers") from None
        if self.minimum is not None and values and min(values) < self.minimum:
            raise ValueError(f"{raw!r}: every value must be >= {self.minimum}")
        return values

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return None if value is None else r.int_list(value, path, self.minimum)

    def python(self, value: Any) -> Any:
        return tuple(int(v) for v in value or ())

    def describe(self) -> str:
        return "list of integers"


@dataclass(frozen=True)
class Names(Value):
    """Repeatable names or texts (``--output-name y``); a list of strings in a manifest."""

    placeholder: str | None = None  # e.g. "INPUT:OUTPUT" for --help

    @property
    def metavar(self) -> str | None:
        return self.placeholder

    def click(self) -> dict[str, Any]:
        return {"multiple": True}

    def cli(self, raw: Any) -> Any:
        return tuple(raw)

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        items = r.items(value, path, "names")
        return tuple(t for i, n in enumerate(items) if (t := r.text(n, (*path, i))))

    def python(self, value: Any) -> Any:
        return tuple(value or ())

    def describe(self) -> str:
        return "list of names"


@dataclass(frozen=True)
class KeyValues(Value):
    """Repeatable ``KEY=VALUE`` (a mapping in a manifest); with ``files`` the values are files."""

    files: bool = False

    @property
    def metavar(self) -> str:
        return "OUTPUT=FILE" if self.files else "KEY=VALUE"

    def click(self) -> dict[str, Any]:
        return {"multiple": True}

    def cli(self, raw: Any) -> Any:
        out: dict[str, Any] = {}
        for v in raw:
            key, sep, val = v.partition("=")
            if not sep or not key:
                raise ValueError(f"{v!r} is not {self.metavar}")
            out[key] = Path(val) if self.files else val
        return out

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        found = r.str_map(value, path, self.describe())
        if not self.files:
            return found
        return {k: f for k, v in found.items() if (f := r.file(v, (*path, k))) is not None}

    def python(self, value: Any) -> Any:
        return {str(k): Path(v) if self.files else v for k, v in (value or {}).items()}

    def describe(self) -> str:
        return "mapping of output name -> file" if self.files else "mapping of parameters"


@dataclass(frozen=True)
class Axes(Value):
    """``NAME:AXIS`` repeatable; ``{name: [axes]}`` in a manifest."""

    @property
    def metavar(self) -> str:
        return "NAME:AXIS"

    def click(self) -> dict[str, Any]:
        return {"multiple": True}

    def cli(self, raw: Any) -> Any:
        out: dict[str, list[int]] = {}
        for v in raw:
            name, _, axis = v.rpartition(":")
            if not name or not axis.isdigit():
                raise ValueError(f"{v!r} is not NAME:AXIS")
            out.setdefault(name, []).append(int(axis))
        return out or None

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            r.p.add(path, f"expected a mapping of tensor name -> list of axes, got {value!r}")
            return None
        return {str(k): list(r.int_list(v, (*path, str(k)), 1)) for k, v in value.items()} or None

    def python(self, value: Any) -> Any:
        return dict(value) if value else None

    def describe(self) -> str:
        return "mapping of tensor name -> list of axes"


@dataclass(frozen=True)
class Tensors(Value):
    """``NAME:DTYPE:DIMS`` repeatable; a list of ``{name, dtype, dims}`` in a manifest."""

    @property
    def metavar(self) -> str:
        return "NAME:DTYPE:DIMS"

    def click(self) -> dict[str, Any]:
        return {"multiple": True}

    def cli(self, raw: Any) -> Any:
        return tuple(raw)

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        return None if value is None else r.tensors(value, path, "input")

    def python(self, value: Any) -> Any:
        return tuple(value or ())

    def describe(self) -> str:
        return "list of {name, dtype, dims}"


@dataclass(frozen=True)
class Policy(Value):
    """A version policy: ``latest[:N] | all | specific:V1,V2``."""

    def cli(self, raw: Any) -> Any:
        try:
            return None if raw is None else VersionPolicy.parse(raw)
        except SpecError as exc:
            raise ValueError("; ".join(exc.problems)) from None

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        text = r.text(None if value is None else str(value), path)
        if text is None:
            return None
        try:
            return VersionPolicy.parse(text)
        except SpecError:
            r.p.add(path, f"expected latest[:N], all or specific:V1,V2, got {text!r}")
            return None

    def python(self, value: Any) -> Any:
        return VersionPolicy.parse(value) if isinstance(value, str) else value

    def describe(self) -> str:
        return "latest[:N] | all | specific:V1,V2"


@dataclass(frozen=True)
class PriorityPolicies(Value):
    """Queue policies per priority level: ``LEVEL:TIMEOUT_US[:REJECT|DELAY[:MAX_QUEUE]]``
    repeatable (a list of such strings in a manifest); Python may pass (level, QueuePolicy)."""

    @property
    def metavar(self) -> str:
        return "LEVEL:TIMEOUT_US[:REJECT|DELAY[:MAX_QUEUE]]"

    def click(self) -> dict[str, Any]:
        return {"multiple": True}

    def cli(self, raw: Any) -> Any:
        return tuple(self._parse(t) for t in raw)

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        out = []
        for i, item in enumerate(r.items(value, path, self.metavar)):
            text = r.text(None if item is None else str(item), (*path, i))
            if text is None:
                continue
            try:
                out.append(self._parse(text))
            except ValueError as exc:
                r.p.add((*path, i), str(exc))
        return tuple(out)

    def python(self, value: Any) -> Any:
        return tuple(self._parse(v) if isinstance(v, str) else tuple(v) for v in value or ())

    def describe(self) -> str:
        return f"list of {self.metavar}"

    @staticmethod
    def _parse(text: str) -> tuple[int, QueuePolicy]:
        parts = text.split(":")
        try:
            level, timeout = int(parts[0]), int(parts[1])
            action = parts[2].upper() if len(parts) > 2 else "REJECT"
            size = int(parts[3]) if len(parts) > 3 else 0
        except (ValueError, IndexError):
            raise ValueError(
                f"{text!r} is not LEVEL:TIMEOUT_US[:REJECT|DELAY[:MAX_QUEUE]], e.g. 2:5000:REJECT"
            ) from None
        if len(parts) > 4 or action not in ("REJECT", "DELAY"):
            raise ValueError(f"{text!r}: the action is REJECT or DELAY")
        return level, QueuePolicy(action, timeout, max_queue_size=size)


@dataclass(frozen=True)
class Groups(Value):
    """Explicit instance groups: a list of ``{kind, count, gpus}`` (manifest and Python)."""

    def manifest(self, r: Reader, value: Any, path: KeyPath) -> Any:
        if value is None:
            return None
        groups = []
        for i, g in enumerate(r.items(value, path, "groups")):
            gp = (*path, i)
            keys = {"kind": "auto|cpu|gpu|model", "count": ">= 1", "gpus": "GPU ids"}
            gm = r.mapping(g, gp, keys)
            if gm is None:
                continue
            kind = r.text(gm.get("kind", "cpu"), (*gp, "kind"), tuple(KIND_OPTIONS)) or "cpu"
            count = r.integer(gm.get("count", 1), (*gp, "count"), 1) or 1
            gpus = r.int_list(gm.get("gpus"), (*gp, "gpus"), 0)
            groups.append(InstanceGroup(KIND_OPTIONS[kind], count, gpus))
        return tuple(groups) or None

    def python(self, value: Any) -> Any:
        return None if value is None else tuple(value)

    def describe(self) -> str:
        return "list of {kind, count, gpus}"
