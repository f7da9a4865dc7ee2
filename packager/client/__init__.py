"""A fast, typed, numpy-native Triton client: sync and asyncio, HTTP and gRPC.

::

    from packager.client import Client, AsyncClient

    with Client("localhost:8000") as c:              # "grpc://localhost:8001" for gRPC
        c.wait_until_ready("mlp", timeout_s=30)
        out = c.infer("mlp", {"input": x})             # {"output": ndarray}
        y = c.infer_sample("mlp", x0)                  # adds and strips the batch dim
        big = c.infer_batch("mlp", x_100k)             # split by max_batch_size, concurrent

Every failure is a :class:`ClientError` subclass, importable from here (as with tritonclient
and httpx): ``from packager.client import ClientError, ModelNotFound, InvalidInput``. They are
the classes of :mod:`packager.errors`; :mod:`packager.client.errors` maps failures onto them.
"""

from packager.client.aio import AsyncClient
from packager.client.bench import LoadResult, iter_sweep, run_load, run_sweep, synthetic_inputs
from packager.client.core import ModelInfo, ModelMetadata, ServerInfo, TensorMeta, TLSOptions
from packager.client.sync import Client
from packager.errors import (
    ClientError,
    InferenceServerError,
    InferenceTimeout,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    SequenceNotStarted,
    ServerUnavailable,
)

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "InferenceServerError",
    "InferenceTimeout",
    "InvalidInput",
    "LoadResult",
    "ModelInfo",
    "ModelMetadata",
    "ModelNotFound",
    "ModelNotReady",
    "SequenceNotStarted",
    "ServerInfo",
    "ServerUnavailable",
    "TLSOptions",
    "TensorMeta",
    "iter_sweep",
    "run_load",
    "run_sweep",
    "synthetic_inputs",
]
