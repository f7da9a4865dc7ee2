"""Guards for the layout (docs/architecture.md): facts live once, areas stay apart, no cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "packager"
TOP_LEVEL = {
    "__init__", "__main__", "builder", "cli", "dtypes", "errors", "extras", "formats", "releases",
    "render", "repository", "scheduling", "spec", "textable", "validation",
}  # fmt: skip
AREAS = {
    "client", "commands", "compress", "deploy", "explain", "generate", "manifest", "options",
    "openai_api", "planners", "serve", "sources", "tune",
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
    allowed = {PACKAGE / "formats.py", PACKAGE / "spec.py"}  # spec: TensorRT rule
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


# Layers, highest first: a module may import its own layer or lower ones, never a higher one,
# at module level or inside a function (deferred imports keep torch off the import path; they
# must not hide an upward arrow). The longest matching prefix places a module.
LAYERS: tuple[frozenset[str], ...] = (
    # the CLI and the public API facade (packager/__init__.py, matched exactly)
    frozenset({"packager", "packager.cli", "packager.__main__", "packager.commands"}),
    # library entry points
    frozenset(
        {
            "packager.builder",
            "packager.manifest.builder",
            "packager.manifest.versions",
            "packager.validation",
            "packager.serve",
            "packager.deploy",
            "packager.tune",
            "packager.explain",
            "packager.openai_api",
        }
    ),
    # planners: every kind of build returns a plan
    frozenset(
        {
            "packager.planners",
            "packager.generate.build",
            "packager.generate.vllm",
            "packager.manifest",
        }
    ),
    frozenset({"packager.options"}),  # the one declaration of build options
    # sources (load, export, verify), compression, the code that runs inside Triton
    frozenset({"packager.compress", "packager.sources", "packager.generate"}),
    frozenset({"packager.render", "packager.repository", "packager.client"}),
    frozenset({"packager.spec", "packager.scheduling", "packager.formats"}),
    frozenset(
        {
            "packager.dtypes",
            "packager.errors",
            "packager.releases",
            "packager.textable",
            "packager.extras",
        }
    ),
)


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            exact = p == "packager"
            matches = module == p or (not exact and module.startswith(p + "."))
            if matches and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module} has no layer; add it to LAYERS"
    return best[0]


def all_imports(path: Path) -> list[tuple[int, str]]:
    """(line, packager module) of every import in ``path``, function-level ones included
    (TYPE_CHECKING blocks excluded: they are not run)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in tree.body
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("packager"):
            if node.module == "packager":  # from packager import dtypes: the modules named
                out += [(node.lineno, f"packager.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, str(node.module)))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("packager")]
    return out


def test_imports_point_down_even_inside_functions() -> None:
    known = modules()
    upward = []
    for name, path in sorted(known.items()):
        mine = layer_of(name)
        for line, target in all_imports(path):
            if target not in known and target.rpartition(".")[0] in known:
                target = target.rpartition(".")[0]  # from packager.x import name
            if layer_of(target) < mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} -> {target}")
    assert upward == []


def test_an_upward_import_inside_a_function_is_found(tmp_path: Path) -> None:
    """The check reads function bodies: a deferred import of a higher layer is an arrow too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from packager.builder import build\n    return build\n")
    [(line, target)] = all_imports(module)
    assert (line, target) == (2, "packager.builder")
    assert layer_of(target) < layer_of("packager.sources.onnx_file")


def test_build_code_does_not_import_serve() -> None:
    """Entry points are peers; building never needs the server (nor serve/ the builder)."""
    build_side = ("packager.builder", "packager.planners", "packager.options", "packager.manifest")
    found = [
        f"{name} -> {target}"
        for name, path in modules().items()
        if name.startswith(build_side)
        for _, target in all_imports(path)
        if target.startswith("packager.serve")
    ]
    assert found == []
