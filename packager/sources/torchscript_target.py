"""TorchScript archives against the target container's libtorch (``releases.TARGET``), statically.

The container's PyTorch backend links libtorch 2.5 (NVIDIA's 24.10 build); no CPU build of it can
be installed here, so the embedded server runs the environment's torch instead. What can be
checked without it:

- the archive's version record (``.data/version``; ``version`` below 6): ``torch.jit.save``
  writes the highest operator version the code needs (operator upgraders bump it); libtorch 2.5
  reads versions up to 10;
- custom operators (``torch.ops.<namespace>.<op>`` outside PyTorch's own namespaces): the
  container loads no custom-op library for them.

What cannot: whether libtorch 2.5 registers every ``aten`` operator overload the code calls
(one added after 2.5 fails only at load time in the container). :data:`UNCHECKED` says so.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from packager.releases import TARGET
from packager.sources.onnx_target import TargetCheck

# Namespaces PyTorch itself registers, and torchvision's (the container's pytorch backend is built
# with TRITON_PYTORCH_ENABLE_TORCHVISION, pytorch_backend CMakeLists.txt in third_party/); anything
# else needs a custom-op library in the image.
TORCH_NAMESPACES = frozenset(
    {
        "aten", "prim", "quantized", "_quantized", "profiler", "_caffe2", "sparse", "cuda",
        "onednn", "torchvision",
    }
)  # fmt: skip
# A call ``ops.<ns>.<op>(`` in the saved code (``__torch__.torchvision.ops.misc.X`` is a class path).
_OP = re.compile(rb"(?<![\w.])ops\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*\(")
UNCHECKED = (
    f"whether libtorch {TARGET.libtorch.split('a0')[0]} (the container's) has every aten operator "
    "overload the code calls was not checked: no build of it runs here (the embedded server uses "
    "this environment's torch)"
)


def version_record(names: list[str]) -> str | None:
    """The member holding the archive's version, read as libtorch reads it: every member sits
    under one root folder (named after the file torch.jit.save wrote); ``<root>/.data/version``
    if present (written for versions >= 6, e.g. any module using gelu: version 10), else
    ``<root>/version`` (older versions)."""
    if not names or "/" not in names[0]:
        return None
    root = names[0].split("/", 1)[0]
    present = set(names)
    return next((r for r in (f"{root}/.data/version", f"{root}/version") if r in present), None)


def check(path: Path, label: str | None = None) -> TargetCheck:
    """Archive version and custom operators of the TorchScript file ``path``."""
    label = label or path.name
    result = TargetCheck(unchecked=UNCHECKED)
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            record = version_record(names)
            version = int(zf.read(record).strip()) if record else None
            ops = set()
            for n in names:
                if "/code/" in n and n.endswith(".py"):
                    ops |= {(ns.decode(), op.decode()) for ns, op in _OP.findall(zf.read(n))}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        result.problems.append(f"{label}: not a readable TorchScript archive ({exc})")
        return result
    torch_name = f"libtorch {TARGET.libtorch.split('a0')[0]} ({TARGET.describe().split(' (')[0]})"
    if version is None:
        result.problems.append(
            f"{label}: the archive has no version record; save it with torch.jit.save"
        )
    elif version > TARGET.torchscript_max_file_version:
        result.problems.append(
            f"{label}: TorchScript archive version {version}; {torch_name} reads version "
            f"{TARGET.torchscript_max_file_version} at most: save it with an older torch, or "
            "export to ONNX instead"
        )
    for ns, op in sorted(ops):
        if ns not in TORCH_NAMESPACES:
            result.problems.append(
                f"{label}: op {ns}::{op} is a custom operator: {torch_name} in the container "
                "has no library for it; rewrite it with PyTorch operators or export to ONNX"
            )
    return result
