"""Write examples/models/classifier.onnx: a tiny bag-of-words text classifier.

INPUT_IDS (INT64 [batch, 8] token ids from steps/tokenizer.py) -> LOGITS (FP32 [batch, 4]):
embedding lookup, mean over the sequence, one linear layer. The weights are random but fixed
(numpy seed 0) and the graph is written with onnx.helper, so re-running this script gives the
same bytes; the committed model file and model_repository/ are rebuilt from it in a test.

    python examples/make_model.py            # rewrites examples/models/classifier.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB_SIZE = 64  # must match steps/tokenizer.py
SEQ_LEN = 8
EMBED = 16
CLASSES = 4  # must match labels.txt
SEED = 0
OUT = Path(__file__).resolve().parent / "models" / "classifier.onnx"


def make_model() -> onnx.ModelProto:
    rng = np.random.RandomState(SEED)
    embedding = rng.standard_normal((VOCAB_SIZE, EMBED)).astype(np.float32)
    embedding[0] = 0.0  # id 0 is padding
    weight = (rng.standard_normal((EMBED, CLASSES)) / np.sqrt(EMBED)).astype(np.float32)
    bias = rng.standard_normal(CLASSES).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Gather", ["embedding", "INPUT_IDS"], ["embedded"], axis=0),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weight"], ["projected"]),
        helper.make_node("Add", ["projected", "bias"], ["LOGITS"]),
    ]
    graph = helper.make_graph(
        nodes,
        "text_classifier",
        [helper.make_tensor_value_info("INPUT_IDS", TensorProto.INT64, ["batch", SEQ_LEN])],
        [helper.make_tensor_value_info("LOGITS", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=[
            numpy_helper.from_array(embedding, "embedding"),
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    # Opset 17 / IR 8: old enough for the ONNX Runtime inside NVIDIA's Triton 24.10 image.
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="examples/make_model.py"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(make_model().SerializeToString())
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
