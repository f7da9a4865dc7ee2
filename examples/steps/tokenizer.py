"""Pre-processing step: text in, token ids out (a Python-backend model built from this file).

Words are mapped to ids by a CRC32 bucket hash (stable across processes, unlike hash());
id 0 is padding. The whole dynamic batch arrives in one call.
"""

import zlib

import numpy as np

VOCAB_SIZE = 1024  # must match examples/make_model.py
SEQ_LEN = 8


def tokenize(TEXT):
    """TEXT: object array [batch, 1] of UTF-8 bytes -> {"INPUT_IDS": int64 [batch, SEQ_LEN]}."""
    ids = np.zeros((len(TEXT), SEQ_LEN), dtype=np.int64)
    for row, (text,) in enumerate(TEXT):
        words = text.decode("utf-8").lower().split()[:SEQ_LEN]
        for col, word in enumerate(words):
            ids[row, col] = 1 + zlib.crc32(word.encode("utf-8")) % (VOCAB_SIZE - 1)
    return {"INPUT_IDS": ids}
