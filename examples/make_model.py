"""Write examples/models/classifier.onnx: a tiny bag-of-words text classifier, trained here.

INPUT_IDS (INT64 [batch, 8] token ids from steps/tokenizer.py) -> LOGITS (FP32 [batch, 4]):
embedding lookup, mean over the sequence, one linear layer. The weights are fitted by full-batch
gradient descent (numpy, float64) on the short labelled headlines in CORPUS, from a fixed seed,
and the graph is written with onnx.helper, so re-running this script gives the same bytes; the
committed model file and model_repository/ are rebuilt from it in a test.

    python examples/make_model.py            # rewrites examples/models/classifier.onnx
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB_SIZE = 1024  # must match steps/tokenizer.py
SEQ_LEN = 8  # must match steps/tokenizer.py
EMBED = 8  # >= the 4 classes: the mean-then-linear model loses nothing
LABELS = ("sports", "politics", "technology", "weather")  # the order of labels.txt
SEED = 0
STEPS = 300
LEARNING_RATE = 2.0
WEIGHT_DECAY = 1e-4
# Trained weights are rounded to this grid before the float32 cast: BLAS kernels and SIMD exp may
# differ in the last bits from one CPU to another, and the rounding keeps the bytes identical.
GRID = 2.0**-12
OUT = Path(__file__).resolve().parent / "models" / "classifier.onnx"

# Lower-case words without punctuation, at most SEQ_LEN of them (the tokenizer keeps no more).
CORPUS: dict[str, list[str]] = {
    "sports": [
        "the striker scored twice in the final",
        "late goal wins the derby for the hosts",
        "the coach praised his team after the match",
        "tennis champion reaches the semi final",
        "the keeper saved a penalty in extra time",
        "marathon runner breaks the world record",
        "the title race goes to the last game",
        "fans cheered as the team lifted the cup",
        "injured captain will miss the next match",
        "the referee sent off two players",
        "olympic swimmer wins gold in the relay",
        "cricket side bowled out before lunch",
        "the club signed a young midfielder",
        "golfer leads the open by three shots",
        "basketball team wins in overtime",
        "cyclist takes the yellow jersey on the climb",
        "the season opener ended in a draw",
        "boxer defends his title in the ring",
        "rugby fans pack the stadium for the final",
        "the manager was sacked after five defeats",
    ],
    "politics": [
        "parliament passed the budget vote",
        "the minister resigned after the scandal",
        "voters head to the polls on sunday",
        "the president signed the new law",
        "opposition leader calls for an election",
        "senate debates the tax reform bill",
        "the government faces a confidence vote",
        "mayor announces plans to cut council spending",
        "the prime minister meets foreign leaders",
        "new poll shows the party losing support",
        "lawmakers reject the immigration bill",
        "campaign rally draws thousands of supporters",
        "the cabinet agreed on the defence budget",
        "diplomats hold peace talks in geneva",
        "the election result was contested in court",
        "ministers clash over the pension policy",
        "the senator announced a presidential bid",
        "coalition partners sign a government deal",
        "protesters demand the minister step down",
        "the treaty was ratified by congress",
    ],
    "technology": [
        "the new phone chip is faster",
        "software update fixes a security bug",
        "startup launches an app for online payments",
        "the laptop has a brighter screen and battery",
        "researchers unveil a quantum computer prototype",
        "hackers breached the company servers",
        "the browser adds support for passkeys",
        "chipmaker reports record demand for processors",
        "new ai model writes code from prompts",
        "the smartphone camera gets a bigger sensor",
        "cloud provider cuts storage prices",
        "the robot vacuum maps the whole house",
        "developers release an open source database",
        "the tablet runs the latest operating system",
        "engineers test a faster wireless network",
        "the data center uses less power",
        "game console sales beat expectations",
        "electric car gets a software upgrade",
        "the website crashed after the launch",
        "a new graphics card doubles the speed",
    ],
    "weather": [
        "heavy rain and wind expected tomorrow",
        "snow will cover the hills tonight",
        "a heatwave brings record temperatures",
        "storm warning issued for the coast",
        "sunny skies and mild temperatures this weekend",
        "flood alerts after days of rain",
        "thunderstorms likely in the afternoon",
        "frost and fog in the morning",
        "the hurricane gains strength over the ocean",
        "cold front brings showers and cooler air",
        "forecasters predict a dry and warm week",
        "strong gusts knocked down trees overnight",
        "drought continues as rainfall stays low",
        "the typhoon made landfall on friday",
        "temperatures drop below freezing overnight",
        "light drizzle clearing by midday",
        "blizzard closes roads in the mountains",
        "humid and cloudy with scattered showers",
        "tornado watch issued for the plains",
        "the forecast calls for sunshine and clouds",
    ],
}
# Not trained on: printed after training as a sanity check.
HELD_OUT = [
    "the match went to extra time",
    "heavy snow and wind tonight",
    "parliament votes on the new budget",
    "a new phone with a faster chip",
]


def token_ids(texts: list[str]) -> np.ndarray:
    """The same ids as steps/tokenizer.py (kept separate: that file is a served step)."""
    ids = np.zeros((len(texts), SEQ_LEN), dtype=np.int64)
    for row, text in enumerate(texts):
        for col, word in enumerate(text.lower().split()[:SEQ_LEN]):
            ids[row, col] = 1 + zlib.crc32(word.encode("utf-8")) % (VOCAB_SIZE - 1)
    return ids


def forward(
    ids: np.ndarray, embedding: np.ndarray, weight: np.ndarray, bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The graph's computation in numpy: (pooled, logits)."""
    pooled = embedding[ids].mean(axis=1)  # padding rows are zero but still count, as in ONNX
    return pooled, pooled @ weight + bias


def train() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Full-batch gradient descent on softmax cross-entropy, in float64.

    Returns (embedding, weight, bias, training accuracy).
    """
    texts = [t for label in LABELS for t in CORPUS[label]]
    targets = np.array([i for i, label in enumerate(LABELS) for _ in CORPUS[label]])
    ids = token_ids(texts)
    onehot = np.eye(len(LABELS))[targets]

    rng = np.random.RandomState(SEED)
    embedding = rng.standard_normal((VOCAB_SIZE, EMBED)) * 0.1
    embedding[0] = 0.0  # id 0 is padding and stays zero
    weight = rng.standard_normal((EMBED, len(LABELS))) / np.sqrt(EMBED)
    bias = np.zeros(len(LABELS))
    for _ in range(STEPS):
        pooled, logits = forward(ids, embedding, weight, bias)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        d_logits = (probs - onehot) / len(texts)
        d_weight = pooled.T @ d_logits + WEIGHT_DECAY * weight
        d_bias = d_logits.sum(axis=0)
        d_pooled = d_logits @ weight.T
        d_embedding = np.zeros_like(embedding)
        np.add.at(d_embedding, ids, d_pooled[:, None, :] / SEQ_LEN)
        d_embedding += WEIGHT_DECAY * embedding
        d_embedding[0] = 0.0
        embedding -= LEARNING_RATE * d_embedding
        weight -= LEARNING_RATE * d_weight
        bias -= LEARNING_RATE * d_bias

    _, logits = forward(ids, embedding, weight, bias)
    accuracy = float((logits.argmax(axis=1) == targets).mean())
    return embedding, weight, bias, accuracy


def make_model(verbose: bool = False) -> onnx.ModelProto:
    """The trained classifier as an ONNX model; verbose prints the accuracy and held-out answers."""
    *params, accuracy = train()
    embedding, weight, bias = ((np.round(a / GRID) * GRID).astype(np.float32) for a in params)
    if verbose:
        sentences = sum(len(v) for v in CORPUS.values())
        print(f"trained {STEPS} steps on {sentences} sentences: training accuracy {accuracy:.1%}")
        _, logits = forward(token_ids(HELD_OUT), embedding, weight, bias)
        for text, row in zip(HELD_OUT, logits, strict=True):
            print(f"  held out: {text!r:40} -> {LABELS[int(row.argmax())]}")
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
        [helper.make_tensor_value_info("LOGITS", TensorProto.FLOAT, ["batch", len(LABELS)])],
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
    labels_txt = Path(__file__).resolve().parent / "labels.txt"
    assert tuple(labels_txt.read_text().split()) == LABELS, "LABELS must follow labels.txt"
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(make_model(verbose=True).SerializeToString())
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
