"""Small Keras 3 models saved as ``.keras`` files and SavedModels, for the TensorFlow sources.

Real Keras layers with their real kernels (random weights, then BatchNorm statistics moved off
their defaults so that inference mode differs from training mode).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _shift_batchnorm(model: Any) -> Any:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * 1.5, beta + 0.1, mean + rng.normal(size=mean.shape),
                               var * 2.0])  # fmt: skip
    return model


def image_classifier() -> Any:
    """Functional: Conv2D + BatchNorm + pooling + Dropout + Dense, image (H, W dynamic) -> probs."""
    import keras

    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)  # off in inference: a served model must not drop
    probs = keras.layers.Dense(5, activation="softmax", name="probs")(x)
    return _shift_batchnorm(keras.Model(image, probs, name="classifier"))


def text_classifier() -> Any:
    """Two inputs: token ids (INT32, any length) -> Embedding + pooling, and dense features;
    two outputs (a score and an embedding)."""
    import keras

    ids = keras.Input((None,), dtype="int32", name="token_ids")
    extra = keras.Input((4,), name="extra")
    e = keras.layers.Embedding(50, 8, name="token_table")(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(e)
    h = keras.layers.Concatenate()([pooled, extra])
    h = keras.layers.Dense(16, activation="tanh", name="embedding")(h)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(h)
    return keras.Model([ids, extra], [score, h], name="text")


def sequential_mlp() -> Any:
    import keras

    return _shift_batchnorm(keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dense(2),
    ], name="mlp"))  # fmt: skip


def save_keras(model: Any, path: Path) -> Path:
    model.save(path)
    return path


def save_saved_model(model: Any, path: Path) -> Path:
    """``model.export``: Keras' own SavedModel (signature serve/serving_default, output_0...)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # export prints the endpoint's signature
        model.export(str(path), format="tf_saved_model")
    return path
