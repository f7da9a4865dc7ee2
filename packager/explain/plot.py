"""Pictures of an explanation (PNG, matplotlib from the ``plots`` extra): bars for tabular
inputs, a heatmap over the image, highlighted words for text.

matplotlib is imported when a picture is drawn; without it the ModuleNotFoundError reaches the
CLI, which names the extra to install (packager.extras).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import PackagerError
from packager.explain.explanation import NEGATIVE, POSITIVE, Explanation, blend

TOP = 20  # bars drawn for tabular inputs


def save_plot(e: Explanation, path: Path | str, top: int = TOP) -> Path:
    """Draw ``e`` into the PNG ``path`` (its folder must exist); returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    out = Path(path)
    if not out.parent.is_dir():
        raise PackagerError(f"cannot write {out}: folder {out.parent} does not exist")
    draw = {"tabular": _bars, "image": _heatmap, "text": _words}[e.kind]
    fig = draw(plt, e, top)
    try:
        fig.savefig(out, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def _title(e: Explanation) -> str:
    return f"{e.model}: {e.target_text} = {e.prediction:.4g} (base {e.base_value:.4g}), {e.method}"


def _rgb(color: tuple[int, int, int]) -> tuple[float, float, float]:
    return color[0] / 255, color[1] / 255, color[2] / 255


def _bars(plt: Any, e: Explanation, top: int) -> Any:
    idx = e.order(top)[::-1]  # largest at the top
    vals = e.attributions[idx]
    flat = e.values.reshape(-1) if e.values is not None else None
    labels = [e.features[i] + (f" = {flat[i]:.3g}" if flat is not None else "") for i in idx]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(idx)))
    colors = [_rgb(POSITIVE if v >= 0 else NEGATIVE) for v in vals]
    ax.barh(range(len(idx)), vals, color=colors)
    ax.set_yticks(range(len(idx)), labels)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution (red raises the output, blue lowers it)")
    shown = f"top {len(idx)} of {len(e.features)} features" if len(idx) < len(e.features) else ""
    ax.set_title(_title(e) + (f"\n{shown}" if shown else ""), fontsize=10)
    return fig


def _display_image(e: Explanation) -> np.ndarray:
    """The image as H x W (gray) or H x W x 3, scaled to [0, 1] for display."""
    assert e.values is not None
    img = np.asarray(e.values, dtype=np.float64)
    if e.channels == "first":
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] != 3:
        img = img[..., 0]  # one channel (or four: the first) shown as gray
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _heatmap(plt: Any, e: Explanation, _top: int) -> Any:
    img = _display_image(e)
    h, w = img.shape[:2]
    assert e.patch is not None
    heat = np.kron(e.heatmap(), np.ones((e.patch, e.patch)))[:h, :w]  # patch grid -> pixels
    limit = float(np.abs(heat).max()) or 1.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    cmap = "gray" if img.ndim == 2 else None
    left.imshow(img, cmap=cmap)
    left.set_title("input", fontsize=10)
    gray = img if img.ndim == 2 else img.mean(axis=-1)
    right.imshow(gray, cmap="gray", alpha=0.5)
    shown = right.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.6)
    right.set_title(f"attribution per {e.patch}x{e.patch} patch", fontsize=10)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04)
    fig.suptitle(_title(e), fontsize=10)
    return fig


def _words(plt: Any, e: Explanation, _top: int) -> Any:
    spans = e.spans()
    scale = float(np.abs(e.attributions).max()) or 1.0
    width, size = 80, 12  # characters per line, font size (pt)
    char_in = 0.6 * size / 72  # a monospace character's width in inches: no measuring needed
    lines: list[list[tuple[int, str, float]]] = [[]]
    col = 0
    for gap, word, a in spans:
        step = (1 if gap else 0) + len(word)
        if col and col + step > width:
            lines.append([])
            col = 0
        elif gap and col:
            col += 1
        lines[-1].append((col, word, a))
        col += len(word)
    fig_w = width * char_in + 0.6
    fig = plt.figure(figsize=(fig_w, 0.9 + 0.4 * len(lines)))
    char_w, line_h = char_in / fig_w, 1 / (len(lines) + 1)
    for row, line in enumerate(lines):
        for at, word, a in line:
            fig.text(
                0.3 / fig_w + at * char_w,
                1 - (row + 1) * line_h,
                word,
                family="monospace",
                fontsize=size,
                va="center",
                bbox={
                    "facecolor": _rgb(blend(a / scale)),
                    "edgecolor": "none",
                    "boxstyle": "round,pad=0.1",
                },
            )
    fig.suptitle(_title(e) + " (red raises, blue lowers)", fontsize=10)
    return fig
