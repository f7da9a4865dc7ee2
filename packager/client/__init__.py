"""A fast, typed, numpy-native Triton client: sync and asyncio, HTTP and gRPC.

::

    from packager.client import Client, AsyncClient

    with Client("localhost:8000") as c:              # "grpc://localhost:8001" for gRPC
        c.wait_until_ready("mlp", timeout_s=30)
        out = c.infer("mlp", {"input": x})             # {"output": ndarray}
        y = c.infer_sample("mlp", x0)                  # adds and strips the batch dim
        big = c.infer_batch("mlp", x_100k)             # split by max_batch_size, concurrent

Errors are :class:`packager.errors.ClientError` subclasses (see :mod:`packager.client.errors`).
"""

from packager.client.aio import AsyncClient
from packager.client.bench import LoadResult, run_load, run_sweep, synthetic_inputs
from packager.client.core import ModelInfo, ModelMetadata, TensorMeta, TLSOptions
from packager.client.sync import Client

__all__ = [
    "AsyncClient",
    "Client",
    "LoadResult",
    "ModelInfo",
    "ModelMetadata",
    "TLSOptions",
    "TensorMeta",
    "run_load",
    "run_sweep",
    "synthetic_inputs",
]
