"""Python steps of the text pipeline of a Hugging Face model (see packager.planners.text).

This file is copied into the repository as the steps' ``step.py`` and runs inside Triton's
Python backend: it needs numpy and the ``tokenizers`` library, nothing from triton-packager.
"""

import numpy as np


class Tokenize:
    """TEXT (BYTES [batch, 1]) -> input_ids, attention_mask (INT64 [batch, tokens]).

    The folder's own tokenizer.json, truncating to the model's limit (config parameter
    max_length) and padding to the longest text of the batch.
    """

    def __init__(self, context):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(context.path("tokenizer.json"))
        self.tokenizer.enable_truncation(int(context.parameters["max_length"]))
        if self.tokenizer.padding is None:
            self.tokenizer.enable_padding()

    def __call__(self, TEXT):
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in TEXT[:, 0]]
        encoded = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        }


class Labels:
    """logits (FP32 [batch, classes]) -> LABEL (BYTES [batch, 1]), PROBS (FP32 [batch, classes]).

    The labels are config.json's id2label, shipped as the label file of PROBS.
    """

    def __init__(self, context):
        self.labels = context.labels["PROBS"]

    def __call__(self, logits):
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        label = np.array([[self.labels[i]] for i in best], dtype=object)
        return {"LABEL": label, "PROBS": probs.astype(np.float32)}
