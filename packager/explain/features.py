"""How one input is cut into features, and how a coalition of them becomes a model input.

- tabular: each element of a numeric input (its flat index is the feature);
- image: square patches of an H x W input, with or without a channel axis (first or last);
- text: the words (and punctuation runs) of a string: a word that is off is dropped, or replaced
  by a word of the user's choice (e.g. ``[MASK]``), and the string is re-sent.

``compose(masks)`` turns a (k, M) boolean matrix into k model inputs, stacked on a new first
axis (True: the input's value; False: the baseline's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import PackagerError

KINDS = ("tabular", "image", "text")
CHANNELS = ("first", "last")
DEFAULT_GRID = 8  # default patch size: the longer side cut into about this many patches
WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]+")  # words (don't, it's) and punctuation runs


# --- numeric inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularFeatures:
    """Every element of ``x`` is a feature."""

    x: np.ndarray
    baseline: np.ndarray
    label: str = "x"
    kind: str = field(default="tabular", init=False)

    @property
    def count(self) -> int:
        return int(self.x.size)

    @property
    def names(self) -> list[str]:
        if self.x.ndim <= 1:
            return [f"{self.label}[{i}]" for i in range(self.count)]
        return [f"{self.label}[{','.join(map(str, ix))}]" for ix in np.ndindex(*self.x.shape)]

    def compose(self, masks: np.ndarray) -> np.ndarray:
        flat = np.where(masks, self.x.reshape(-1), self.baseline.reshape(-1))
        return flat.astype(self.x.dtype, copy=False).reshape(len(masks), *self.x.shape)


@dataclass(frozen=True)
class ImagePatches:
    """Square ``patch`` x ``patch`` regions of an image (the last row/column may be smaller)."""

    x: np.ndarray
    baseline: np.ndarray
    patch: int
    channels: str | None  # None: H x W; "first": C x H x W; "last": H x W x C
    kind: str = field(default="image", init=False)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        shape = self.x.shape[1:] if self.channels == "first" else self.x.shape[:2]
        return int(shape[0]), int(shape[1])

    @property
    def grid(self) -> tuple[int, int]:
        """Patches down and across."""
        h, w = self.size
        return -(-h // self.patch), -(-w // self.patch)

    @property
    def count(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def labels(self) -> np.ndarray:
        """(H, W): the feature index of every pixel."""
        h, w = self.size
        rows = np.arange(h) // self.patch
        cols = np.arange(w) // self.patch
        return rows[:, None] * self.grid[1] + cols[None, :]

    @property
    def names(self) -> list[str]:
        h, w = self.size
        p = self.patch
        return [
            f"rows {r * p}-{min(h, (r + 1) * p) - 1}, cols {c * p}-{min(w, (c + 1) * p) - 1}"
            for r in range(self.grid[0])
            for c in range(self.grid[1])
        ]

    def compose(self, masks: np.ndarray) -> np.ndarray:
        keep = masks[:, self.labels()]  # (k, H, W)
        if self.channels == "first":
            keep = keep[:, None]
        elif self.channels == "last":
            keep = keep[..., None]
        return np.where(keep, self.x, self.baseline).astype(self.x.dtype, copy=False)

    def heatmap(self, values: np.ndarray) -> np.ndarray:
        """Per-patch values on the patch grid."""
        return np.asarray(values).reshape(self.grid)


def image_layout(shape: tuple[int, ...], channels: str | None) -> str | None:
    """The channel axis of an image input: None (H x W), "first" or "last"."""
    if len(shape) == 2:
        if channels is not None:
            raise PackagerError(f"an input of shape {list(shape)} has no channel axis")
        return None
    if len(shape) != 3:
        raise PackagerError(
            f"an image input is H x W or has one channel axis; got shape {list(shape)}"
        )
    if channels is not None:
        if channels not in CHANNELS:
            raise PackagerError(f"channels must be 'first' or 'last'; got {channels!r}")
        return channels
    last, first = shape[-1] in (1, 3, 4), shape[0] in (1, 3, 4)
    if last != first:
        return "last" if last else "first"
    raise PackagerError(
        f"cannot tell the channel axis of an image of shape {list(shape)}; "
        "say --channels first or --channels last"
    )


def default_patch(size: tuple[int, int]) -> int:
    return max(1, -(-max(size) // DEFAULT_GRID))


def numeric_baseline(
    spec: Any, x: np.ndarray, kind: str, channels: str | None = None, patch: int = 1
) -> tuple[np.ndarray, str]:
    """(baseline array of x's shape, how it was made) from ``zeros``, ``mean``, ``blur`` (images),
    a number, an .npy file, or an array."""
    if isinstance(spec, np.ndarray):
        return _fit(spec, x, "the baseline array"), "array"
    text = "zeros" if spec is None else str(spec).strip()
    if text in ("zeros", "zero"):
        return np.zeros_like(x), "zeros"
    if text == "mean":
        if kind == "image" and channels is not None:
            axes = (1, 2) if channels == "first" else (0, 1)
            return np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape).astype(x.dtype), (
                "mean (per channel)"
            )
        return np.full_like(x, x.mean()), "mean"
    if text == "blur":
        if kind != "image":
            raise PackagerError(
                "baseline 'blur' is for images; use zeros, mean, a number or a file"
            )
        return blur(x, channels, max(1, patch)), f"blur ({max(1, patch)} px)"
    try:
        return np.full_like(x, float(text)), f"constant {float(text):g}"
    except ValueError:
        pass
    path = Path(text)
    if path.suffix != ".npy":
        raise PackagerError(
            f"unknown baseline {text!r}: use zeros, mean, "
            + ("blur, " if kind == "image" else "")
            + "a number, or a .npy file of the input's shape"
        )
    if not path.is_file():
        raise PackagerError(f"baseline file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise PackagerError(f"baseline file {path} cannot be read: {exc}") from None
    return _fit(loaded, x, f"baseline file {path}"), str(path)


def _fit(array: np.ndarray, x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.shape == (1, *x.shape):  # saved as a batch of one
        arr = arr[0]
    if arr.shape != x.shape:
        raise PackagerError(
            f"{what} has shape {list(arr.shape)}; it must have the input's shape {list(x.shape)}"
        )
    return arr.astype(x.dtype)


def blur(x: np.ndarray, channels: str | None, radius: int) -> np.ndarray:
    """A blurred copy of an image (three box blurs of width 2 * radius + 1, about a Gaussian):
    shapes stay, fine detail goes; the baseline that says "what if this region were vague"."""
    img = x.astype(np.float64)
    spatial = (1, 2) if channels == "first" else (0, 1)
    for axis in spatial:
        for _ in range(3):
            img = _box(img, axis, radius)
    return img.astype(x.dtype)


def _box(a: np.ndarray, axis: int, r: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / (2 * r + 1)


# --- text ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextTokens:
    """The words of ``text``; an off word is dropped (``replacement`` None) or replaced."""

    text: str
    replacement: str | None = None
    shape: tuple[int, ...] = (1,)  # the model's per-sample shape of the string input
    kind: str = field(default="text", init=False)

    @property
    def spans(self) -> list[tuple[int, int]]:
        return [m.span() for m in WORD.finditer(self.text)]

    @property
    def names(self) -> list[str]:
        return [self.text[a:b] for a, b in self.spans]

    @property
    def count(self) -> int:
        return len(self.spans)

    def render(self, keep: np.ndarray) -> str:
        """The text with the words where ``keep`` is False dropped or replaced."""
        parts, at = [], 0
        for on, (a, b) in zip(keep, self.spans, strict=True):
            gap = self.text[at:a]
            # Gaps are whitespace only (WORD matches every other character): a dropped word
            # takes the space before it along, so no double spaces are sent.
            if on:
                parts += [gap, self.text[a:b]]
            elif self.replacement is not None:
                parts += [gap, self.replacement]
            at = b
        parts.append(self.text[at:])
        out = "".join(parts)
        return out if self.replacement is not None or keep.all() else out.strip()

    def compose(self, masks: np.ndarray) -> np.ndarray:
        out = np.empty(len(masks), dtype=object)
        out[:] = [self.render(row) for row in masks]
        return out.reshape(len(masks), *self.shape)
