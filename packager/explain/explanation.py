"""The result of ``explain``: attributions per feature, and their renderings as text (a table,
highlighted words for a terminal or HTML) and JSON. Pictures are in :mod:`packager.explain.plot`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from packager.textable import format_table

POSITIVE = (214, 39, 40)  # red: pushes the target up
NEGATIVE = (31, 119, 180)  # blue: pushes it down


@dataclass(frozen=True)
class Explanation:
    """Attributions of one output value (``output[target]``) to the features of one input."""

    model: str
    input: str  # the input whose features are attributed
    output: str
    target: int  # flat index into the output of one sample
    method: str
    kind: str  # tabular, image or text
    features: list[str]  # feature names (element index, patch, word)
    attributions: np.ndarray  # (M,) float64, in feature order
    base_value: float  # the target at the baseline (every feature off)
    prediction: float  # the target at the input
    additivity_gap: float  # sum(attributions) - (prediction - base_value)
    exact: bool  # False when KernelSHAP sampled coalitions
    evaluations: int  # perturbed inputs evaluated
    requests: int  # requests (or predict calls) they took
    batch_size: int
    elapsed_s: float
    baseline: str  # how the baseline was made
    source: str  # the server URL, or "in-process"
    samples: int | None = None  # KernelSHAP's budget
    seed: int | None = None
    values: np.ndarray | None = None  # tabular: the input; image: the image (for the picture)
    grid: tuple[int, int] | None = None  # image: patches down and across
    patch: int | None = None
    channels: str | None = None  # image: None, "first" or "last"
    text: str | None = None
    # The target's class name where the model says it: the label output (BYTES, one per
    # sample, e.g. a text pipeline's LABEL) of the input when the target is its top class.
    target_label: str | None = None

    @property
    def target_text(self) -> str:
        """``PROBS[positive]`` where the label is known, else ``PROBS[1]``."""
        return f"{self.output}[{self.target_label or self.target}]"

    def order(self, top: int | None = None) -> list[int]:
        """Feature indices, largest |attribution| first (``top`` of them; all when None/0)."""
        idx = [int(i) for i in np.argsort(-np.abs(self.attributions), kind="stable")]
        return idx[:top] if top else idx

    def heatmap(self) -> np.ndarray:
        """Image attributions on the patch grid (rows x columns)."""
        if self.grid is None:
            raise ValueError("only image explanations have a heatmap")
        return self.attributions.reshape(self.grid)

    # --- text ------------------------------------------------------------------------------

    def summary(self) -> str:
        what = f"{self.method}" + ("" if self.exact else f", {self.samples} sampled coalitions")
        if self.method == "kernelshap" and self.exact:
            what += ", every coalition (exact Shapley values)"
        lines = [
            f"{self.model}: {self.target_text} explained by {len(self.features)} "
            f"{self.kind} feature(s) of {self.input!r} ({what})",
            f"prediction {self.prediction:.6g} = base {self.base_value:.6g} (baseline: "
            f"{self.baseline}) + attributions {float(self.attributions.sum()):.6g}"
            f"{'' if abs(self.additivity_gap) < 1e-9 else f' - gap {self.additivity_gap:.3g}'}",
            f"{self.evaluations} evaluations in {self.requests} requests of up to "
            f"{self.batch_size} ({self.source}), {self.elapsed_s:.2f} s",
        ]
        return "\n".join(lines)

    def table(self, top: int | None = 10) -> str:
        """The ``top`` features by |attribution| with bars; for images also the heatmap grid."""
        scale = float(np.abs(self.attributions).max()) or 1.0
        head = ["#", "feature", "attribution", ""]
        flat = None if self.values is None or self.kind != "tabular" else self.values.reshape(-1)
        if flat is not None:
            head.insert(2, "value")
        rows = []
        for rank, i in enumerate(self.order(top), 1):
            a = float(self.attributions[i])
            bar = ("+" if a >= 0 else "-") * max(0, round(20 * abs(a) / scale))
            row: list[object] = [rank, self.features[i], f"{a:+.6g}", bar]
            if flat is not None:
                row.insert(2, f"{flat[i]:.6g}")
            rows.append(row)
        parts = [self.summary(), "", format_table(head, rows)]
        if self.grid is not None and self.grid[1] <= 16:
            grid = self.heatmap()
            cells = [[f"{v:+.3g}" for v in row] for row in grid]
            header = [f"patch {self.patch}px", *(f"c{c}" for c in range(self.grid[1]))]
            parts += ["", format_table(header, [[f"r{r}", *cells[r]] for r in range(len(cells))])]
        return "\n".join(parts)

    def spans(self) -> list[tuple[str, str, float]]:
        """Text: (whitespace before, word, attribution) for every word, in order."""
        if self.text is None:
            raise ValueError("only text explanations have words")
        from packager.explain.features import WORD

        out, at = [], 0
        for m, a in zip(WORD.finditer(self.text), self.attributions, strict=True):
            out.append((self.text[at : m.start()], m.group(), float(a)))
            at = m.end()
        return out

    def ansi(self) -> str:
        """Text: the words on backgrounds of their attribution (red up, blue down), for a
        terminal (click.echo strips the colors when the output is not one)."""
        import click

        scale = float(np.abs(self.attributions).max()) or 1.0
        parts = []
        for gap, word, a in self.spans():
            rgb = blend(a / scale)
            fg = "white" if abs(a / scale) > 0.55 else "black"
            parts += [gap, click.style(word, bg=rgb, fg=fg)]
        return "".join(parts)

    def html(self) -> str:
        """Text: a self-contained HTML page with the highlighted words (hover: the value)."""
        scale = float(np.abs(self.attributions).max()) or 1.0
        words = "".join(
            f"{html.escape(gap)}<span title='{a:+.6g}' style='background:rgb{blend(a / scale)};"
            f"padding:1px 2px;border-radius:3px'>{html.escape(word)}</span>"
            for gap, word, a in self.spans()
        )
        title = html.escape(f"{self.model}: {self.target_text} ({self.method})")
        return (
            f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
            f"<body style='font:16px/1.8 sans-serif;max-width:48em;margin:2em auto'>"
            f"<h3>{title}</h3><p>{words}</p><p style='color:#666;font-size:13px'>"
            f"{html.escape(self.summary()).replace(chr(10), '<br>')}<br>red: raises the "
            f"output, blue: lowers it</p></body>\n"
        )

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "input": self.input,
            "output": self.output,
            "target": self.target,
            "target_label": self.target_label,
            "method": self.method,
            "kind": self.kind,
            "prediction": self.prediction,
            "base_value": self.base_value,
            "additivity_gap": self.additivity_gap,
            "exact": self.exact,
            "baseline": self.baseline,
            "samples": self.samples,
            "seed": self.seed,
            "evaluations": self.evaluations,
            "requests": self.requests,
            "batch_size": self.batch_size,
            "elapsed_s": round(self.elapsed_s, 4),
            "source": self.source,
            "features": self.features,
            "attributions": [float(a) for a in self.attributions],
        }
        if self.grid is not None:
            doc |= {
                "grid": list(self.grid),
                "patch": self.patch,
                "heatmap": self.heatmap().tolist(),
            }
        if self.text is not None:
            doc["text"] = self.text
        return doc


def blend(t: float) -> tuple[int, int, int]:
    """White blended toward red (t > 0) or blue (t < 0) by |t| in [0, 1]."""
    color = POSITIVE if t >= 0 else NEGATIVE
    k = min(1.0, abs(t))
    return tuple(round(255 + (c - 255) * k) for c in color)  # type: ignore[return-value]
