"""Python steps: the calling convention of the generated model.py, run in-process by StepRunner
(the same file the server imports), and the checks made without running the user's code."""

from pathlib import Path

import numpy as np
import pytest

from packager.errors import SpecError
from packager.manifest.pysteps import PythonStep, StepRunner, step_files, step_problems
from packager.repository import write_model
from packager.spec import TensorSpec

STEP_CODE = """
import numpy as np

def words(TEXT, context):
    vocab = open(context.path("vocab.txt")).read().split()
    n = int(context.parameters["width"])
    out = np.zeros((len(TEXT), n), dtype=np.int64)   # int64 for an INT32 output: same kind
    for i, (t,) in enumerate(TEXT):
        for j, w in enumerate(t.decode().split()[:n]):
            out[i, j] = vocab.index(w) + 1 if w in vocab else 0
    return out, [[w.upper()] for (w,) in TEXT]        # a tuple, in output order; str -> bytes

class Counter:
    closed = []

    def __init__(self):
        self.calls = 0

    def __call__(self, X):
        self.calls += 1
        return {"Y": X * 2.0, "CALLS": np.full((1,), self.calls, dtype=np.int32)}

    def finalize(self):
        Counter.closed.append(self.calls)

def wrong_batch(X):
    return X[:1]

def floats_for_ints(X):
    return {"Y": X * 0.5}
"""


def build(tmp_path: Path, name: str, entry: str, kind: str, inputs, outputs, **kw) -> Path:
    src = tmp_path / "steps.py"
    src.write_text(STEP_CODE)
    (tmp_path / "vocab.txt").write_text("red green blue\n")
    step = PythonStep(name, src, entry, kind, tuple(inputs), tuple(outputs), **kw)
    from packager.manifest.pysteps import step_spec

    files, model_files, record = step_files(step)
    write_model(tmp_path / "repo", step_spec(step), files, model_files=model_files, record=record)
    return tmp_path / "repo" / name / "1"


def test_function_with_context_files_parameters_tuples_and_bytes(tmp_path: Path) -> None:
    vdir = build(
        tmp_path,
        "words",
        "words",
        "function",
        [TensorSpec("TEXT", "BYTES", (1,))],
        [TensorSpec("IDS", "INT32", (3,)), TensorSpec("UPPER", "BYTES", (1,))],
        max_batch_size=4,
        parameters={"width": "3"},
        files={"vocab.txt": tmp_path / "vocab.txt"},
    )
    out = StepRunner(vdir)(TEXT=np.array([["blue red pink"], ["green"]]))  # str in: bytes served
    assert out["IDS"].dtype == np.int32
    assert out["IDS"].tolist() == [[3, 1, 0], [2, 0, 0]]
    assert out["UPPER"].tolist() == [[b"BLUE RED PINK"], [b"GREEN"]]
    assert (vdir / "vocab.txt").read_text() == "red green blue\n"


def test_class_without_context_keeps_state_and_is_finalized(tmp_path: Path) -> None:
    vdir = build(
        tmp_path,
        "counter",
        "Counter",
        "class",
        [TensorSpec("X", "FP32", (2, 2))],
        [TensorSpec("Y", "FP32", (2, 2)), TensorSpec("CALLS", "INT32", (1,))],
    )  # max_batch_size 0: full shapes, no batch check
    runner = StepRunner(vdir)
    x = np.ones((2, 2), dtype=np.float32)
    runner(X=x)
    out = runner(X=x)
    assert out["Y"].tolist() == [[2.0, 2.0], [2.0, 2.0]] and out["CALLS"].tolist() == [2]
    runner.close()
    module = type(runner.caller.fn)
    assert module.closed == [2]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("wrong_batch", "step 'bad': output 'Y' has shape (1, 2); with max_batch_size > 0 its first dim must be the batch size 3"),
        ("floats_for_ints", "step 'bad': output 'Y' is float64 but the config declares TYPE_INT32"),
    ],
)  # fmt: skip
def test_wrong_results_are_explained(tmp_path: Path, entry: str, message: str) -> None:
    dtype = "INT32" if entry == "floats_for_ints" else "FP32"
    vdir = build(
        tmp_path,
        "bad",
        entry,
        "function",
        [TensorSpec("X", dtype, (2,))],
        [TensorSpec("Y", dtype, (2,))],
        max_batch_size=4,
    )
    with pytest.raises((ValueError, TypeError)) as info:
        StepRunner(vdir)(X=np.ones((3, 2), dtype=np.dtype(dtype.lower().replace("fp", "float"))))
    assert message in str(info.value)


def test_problems_found_without_running_the_file(tmp_path: Path) -> None:
    src = tmp_path / "s.py"
    src.write_text("import sys\nsys.exit(3)\ndef f(a, b, *, c):\n    return a\n")
    step = PythonStep(
        "s",
        src,
        "f",
        "function",
        (TensorSpec("a", "FP32", (1,)), TensorSpec("my-input", "BF16", (1,))),
        (TensorSpec("out", "FP32", (1,)),),
        files={"model.py": src},
        labels={"nope": tmp_path / "missing.txt"},
    )
    found = "\n".join(step_problems(step))
    assert "input 'my-input': a Python step passes tensors as keyword arguments" in found
    assert "input 'my-input': BF16 has no numpy type" in found
    assert "labels for 'nope': no such output; outputs are: out" in found
    assert f"labels file {tmp_path / 'missing.txt'} does not exist" in found
    assert "file 'model.py': choose another name" in found
    assert "s.py:3: f takes (a, b, c)" in found and "add parameter(s) my-input" in found
    assert "s.py:3: f requires argument(s) b, c, which are not step inputs" in found
    with pytest.raises(SpecError, match="Python step 's' has"):
        step_files(step)


def test_syntax_error_and_wrong_kind(tmp_path: Path) -> None:
    src = tmp_path / "s.py"
    src.write_text("def f(:\n")
    step = PythonStep("s", src, "f", "function", (), (TensorSpec("o", "FP32", (1,)),))
    (problem,) = step_problems(step)
    assert problem.startswith(f"{src}:1: Python syntax error: ")
    src.write_text("class F:\n    pass\n")
    assert step_problems(step.__class__(**{**step.__dict__, "entry": "F"})) == [
        f"{src}:1: F is a class; use class: F"
    ]
