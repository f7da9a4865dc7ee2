"""Guards for the layout (docs/architecture.md): facts live once, areas stay apart, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "packager"
TOP_LEVEL = {
    "__init__", "__main__", "builder", "cli", "dtypes", "errors", "extras", "releases",
    "render", "repository", "scheduling", "spec", "textable", "validation",
}  # fmt: skip
AREAS = {
    "client", "commands", "compress", "deploy", "explain", "generate", "manifest", "openai_api", "serve",
    "sources", "tune",
}  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "templates" in path.parts:
            continue
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def module_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """packager modules imported when ``path`` is imported (TYPE_CHECKING blocks excluded)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("packager"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else str(node.module))
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("packager")}
    return found


def test_top_level_holds_only_shared_facts_and_areas() -> None:
    files = {p.stem for p in PACKAGE.glob("*.py")}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert files == TOP_LEVEL
    assert folders == AREAS


def test_no_module_level_import_cycles() -> None:
    known = modules()
    graph = {name: module_level_imports(path, known) & set(known) for name, path in known.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep) :], dep] if dep in trail else [name, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_artifact_file_names_and_platforms_live_in_the_format_table() -> None:
    literal = re.compile(r"""["'](model\.onnx|model\.pt|onnxruntime_onnx|pytorch_libtorch)["']""")
    allowed = {PACKAGE / "sources" / "formats.py", PACKAGE / "spec.py"}  # spec: TensorRT rule
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in modules().values()
        if path not in allowed
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []


def test_only_the_client_speaks_to_servers() -> None:
    """Control calls go through packager.client.Client; nobody else opens HTTP connections
    (the Docker health check is a command line written into the Dockerfile, not a call)."""
    pattern = re.compile(r"^\s*(import|from) (urllib\.request|http\.client|requests)\b", re.M)
    offenders = [
        str(path.relative_to(PACKAGE))
        for name, path in modules().items()
        if not name.startswith("packager.client") and pattern.search(path.read_text())
    ]
    assert offenders == []
