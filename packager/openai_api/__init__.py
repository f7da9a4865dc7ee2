"""An OpenAI-compatible HTTP service in front of a Triton server (the ``openai`` extra).

``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (streamed or not) and
``/v1/embeddings``, mapped onto the tensors of the repository's models through
:class:`packager.client.AsyncClient`: generative models (``build --task text-generation``, or
Triton's vLLM backend) and text-embedding models (``build --text`` of a feature-extraction
folder). ``triton-packager serve REPO --openai-port 9000`` runs it beside the embedded server;
``triton-packager openai --url grpc://host:8001`` runs it alone against any Triton.

Named ``openai_api`` so that it never shadows the ``openai`` client package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packager.openai_api.service import OpenAIService

__all__ = ["OpenAIService"]


def __getattr__(name: str) -> Any:  # starlette/uvicorn load only when the service is used
    if name == "OpenAIService":
        from packager.openai_api.service import OpenAIService

        return OpenAIService
    raise AttributeError(name)
