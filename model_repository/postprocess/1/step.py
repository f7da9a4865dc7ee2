"""Post-processing step: logits in, probabilities and the top-k labels out.

The labels come from labels.txt, shipped beside config.pbtxt as the label_filename of PROBS
(so clients may also ask Triton's classification extension for PROBS); k is the config
parameter top_k.
"""

import numpy as np


class TopK:
    def __init__(self, context):
        self.labels = context.labels["PROBS"]
        self.k = int(context.parameters.get("top_k", "1"))

    def __call__(self, LOGITS):
        """LOGITS: float32 [batch, classes] -> PROBS float32 [batch, classes], LABELS [batch, k]."""
        shifted = LOGITS - LOGITS.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1, kind="stable")[:, : self.k]
        labels = [[self.labels[j] for j in row] for row in top]
        return {"PROBS": probs.astype(np.float32), "LABELS": np.array(labels, dtype=object)}
