"""Typed reading of a YAML file that reports every problem with its line and key path.

:func:`load` returns the plain data plus a :class:`Problems` collector that knows the line of
every key; a :class:`Reader` checks values (mapping keys, ints, files...) and records what is
wrong instead of raising, so each message reads ``deploy.yaml:12: models[0].max_batch_size:
expected an integer >= 0, got 'eight'`` and the whole file is reported at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from packager import dtypes
from packager.errors import ManifestError
from packager.spec import TensorSpec

KeyPath = tuple[str | int, ...]
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:factory


def key_path(path: KeyPath) -> str:
    """``("models", 0, "max_batch_size")`` -> ``models[0].max_batch_size``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][\w\-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


class Problems:
    """Collects ``file:line: key.path: message`` lines for one manifest."""

    def __init__(self, file: Path, lines: Mapping[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: KeyPath, message: str) -> None:
        line = None
        for n in range(len(path), -1, -1):  # the nearest enclosing key that has a line
            line = self.lines.get(tuple(path[:n]))
            if line is not None:
                break
        where = f"{self.file.name}:{line}" if line else self.file.name
        self.items.append(f"{where}: {key_path(path)}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ManifestError(self.items, str(self.file))


def load(path: Path) -> tuple[Any, Problems]:
    """Parse ``path``; YAML syntax errors and duplicate keys raise ManifestError at once."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([f"{path} does not exist"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([f"cannot read {path}: {exc}"], str(path)) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases share nodes: cheap
        if node is not None:
            _check_aliases(node, path)  # before anything walks the expanded tree
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([f"{where}: not valid YAML: {reason}"], str(path)) from None
    except RecursionError:
        raise ManifestError(
            [f"{path.name}: nested too deeply to read (thousands of levels); flatten it"], str(path)
        ) from None
    lines: dict[KeyPath, int] = {}
    duplicates: list[str] = []
    if node is not None:
        _walk(node, (), lines, duplicates, path.name)
    if duplicates:
        raise ManifestError(duplicates, str(path))
    return data, Problems(path, lines)


# Aliases let a few bytes stand for a tree of any size (a "billion laughs" file: 400 bytes
# that expand to 10^9 nodes) or for a tree that contains itself; the manifest's readers walk
# the expanded tree, so its size is bounded first. A real manifest has a few thousand nodes.
MAX_NODES = 50_000


def _check_aliases(root: Any, path: Path) -> None:
    """Raise ManifestError when aliases make the document cyclic or larger than MAX_NODES
    nodes once expanded. Linear in the composed (shared) graph: each node is sized once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    file = path.name

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ManifestError(
                [
                    f"{file}:{node.start_mark.line + 1}: an alias refers to the node that "
                    "contains it (a YAML cycle): the manifest would be infinite; copy the "
                    "values instead"
                ],
                str(path),
            )
        open_nodes.add(key)
        children: list[Any] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise ManifestError(
                    [
                        f"{file}:{node.start_mark.line + 1}: aliases expand this node to more "
                        f"than {MAX_NODES} YAML nodes (a 'billion laughs' document?); a "
                        "manifest needs far fewer: use fewer nested aliases"
                    ],
                    str(path),
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _walk(node: Any, path: KeyPath, lines: dict[KeyPath, int], dups: list[str], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = str(key.value)
            if k in seen and key.tag != "tag:yaml.org,2002:merge":
                dups.append(
                    f"{file}:{key.start_mark.line + 1}: {key_path((*path, k))}: duplicate key "
                    "(YAML would silently keep only the last one)"
                )
            seen.add(k)
            lines.setdefault((*path, k), key.start_mark.line + 1)
            _walk(value, (*path, k), lines, dups, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, dups, file)


# --------------------------------------------------------------------------- value checks


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Reader:
    """Typed access to one mapping of the manifest; wrong values are recorded, never raised."""

    def __init__(self, problems: Problems, base: Path) -> None:
        self.p = problems
        self.base = base

    def mapping(
        self, value: Any, path: KeyPath, keys: Mapping[str, str], required: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """``value`` as a dict whose keys are among ``keys`` (key -> what it is, for messages)."""
        if not isinstance(value, dict):
            self.p.add(path, f"expected a mapping with keys {', '.join(keys)}, got {_show(value)}")
            return None
        for k in value:
            if k not in keys:
                close = difflib.get_close_matches(str(k), list(keys), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.p.add(
                    (*path, str(k)), f"unknown key{hint}; expected one of: {', '.join(keys)}"
                )
        for k in required:
            if value.get(k) is None:
                self.p.add(path, f"missing required key {k!r} ({keys[k]})")
        return value

    def items(self, value: Any, path: KeyPath, what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.p.add(path, f"expected a list of {what}, got {_show(value)}")
            return []
        return value

    def text(self, value: Any, path: KeyPath, choices: tuple[str, ...] = ()) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.p.add(path, f"expected a non-empty string, got {_show(value)}")
            return None
        if choices and value not in choices:
            self.p.add(path, f"expected one of {', '.join(choices)}, got {value!r}")
            return None
        return value

    def integer(self, value: Any, path: KeyPath, minimum: int | None = None) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            lower = f" >= {minimum}" if minimum is not None else ""
            self.p.add(path, f"expected an integer{lower}, got {_show(value)}")
            return None
        if minimum is not None and value < minimum:
            self.p.add(path, f"expected an integer >= {minimum}, got {value}")
            return None
        return value

    def number(self, value: Any, path: KeyPath) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            self.p.add(path, f"expected a number >= 0, got {_show(value)}")
            return None
        return float(value)

    def flag(self, value: Any, path: KeyPath) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.p.add(path, f"expected true or false, got {_show(value)}")
            return None
        return value

    def int_list(self, value: Any, path: KeyPath, minimum: int | None = None) -> tuple[int, ...]:
        items = self.items(value, path, "integers")
        out = [self.integer(v, (*path, i), minimum) for i, v in enumerate(items)]
        return tuple(v for v in out if v is not None)

    def str_map(self, value: Any, path: KeyPath, what: str) -> dict[str, str]:
        """A mapping of names to scalar values (numbers and booleans become strings)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.p.add(path, f"expected a mapping of {what}, got {_show(value)}")
            return {}
        out = {}
        for k, v in value.items():
            if isinstance(v, (dict, list)) or v is None:
                self.p.add((*path, str(k)), f"expected a string or number, got {_show(v)}")
            else:
                out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def file(self, value: Any, path: KeyPath) -> Path | None:
        """A file path, relative to the manifest's folder; must exist."""
        text = self.text(value, path)
        if text is None:
            return None
        resolved = (self.base / text).resolve()
        if not resolved.is_file():
            self.p.add(path, f"file {text!r} does not exist (looked for {resolved})")
            return None
        return resolved

    def source(self, value: Any, path: KeyPath) -> str | Path | None:
        """A model file or Hugging Face folder (relative path), or a ``module:factory`` reference."""
        text = self.text(value, path)
        if text is None:
            return None
        resolved = (self.base / text).resolve()
        if resolved.is_file() or (resolved / "config.json").is_file():
            return resolved
        if _REFERENCE.match(text):
            return text
        self.p.add(
            path,
            f"file {text!r} does not exist (looked for {resolved}); expected a model file, a "
            "Hugging Face model folder or a PyTorch 'module:factory' reference",
        )
        return None

    def tensors(self, value: Any, path: KeyPath, role: str) -> tuple[TensorSpec, ...]:
        keys = {"name": "tensor name", "dtype": "data type", "dims": "list of ints"}
        if role == "input":
            keys["optional"] = "true if requests may omit it"
        out = []
        for i, item in enumerate(self.items(value, path, f"{role} tensors")):
            t = self.tensor(item, (*path, i), keys)
            if t is not None:
                out.append(t)
        return tuple(out)

    def tensor(self, item: Any, path: KeyPath, keys: Mapping[str, str]) -> TensorSpec | None:
        m = self.mapping(item, path, keys, required=("name", "dtype", "dims"))
        if m is None:
            return None
        name = self.text(m.get("name"), (*path, "name"))
        dtype = self.dtype(m.get("dtype"), (*path, "dtype"))
        dims = self.items(m.get("dims"), (*path, "dims"), "integers")
        good = []
        for j, d in enumerate(dims):
            if isinstance(d, bool) or not isinstance(d, int) or (d < 1 and d != -1):
                self.p.add((*path, "dims", j), f"expected a positive integer or -1, got {_show(d)}")
            else:
                good.append(d)
        if "dims" in m and not dims and isinstance(m.get("dims"), list):
            self.p.add((*path, "dims"), "expected at least one dim (use [1] for a scalar)")
        optional = self.flag(m.get("optional"), (*path, "optional")) or False
        if name is None or dtype is None or len(good) != len(dims) or not dims:
            return None
        return TensorSpec(name, dtype, tuple(good), optional=optional)

    def dtype(self, value: Any, path: KeyPath) -> dtypes.DType | None:
        text = self.text(value, path)
        if text is None:
            return None
        try:
            return dtypes.parse(text)
        except Exception:
            self.p.add(path, f"expected a data type ({', '.join(dtypes.NAMES)}), got {text!r}")
            return None

    def each(
        self, value: Any, path: KeyPath, what: str, fn: Callable[[Any, KeyPath], Any]
    ) -> list[Any]:
        return [fn(item, (*path, i)) for i, item in enumerate(self.items(value, path, what))]
