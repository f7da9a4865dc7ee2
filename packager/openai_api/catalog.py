"""What the service knows about the server's models: which generate text, which embed it,
and (when the repository folder is at hand) each generative model's chat template, context
length and tokenizer, read from the ``hf/`` folder that ``build`` keeps in the version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.client import AsyncClient
from packager.client.core import ModelInfo
from packager.openai_api import chat
from packager.openai_api.errors import ApiError, bad, from_client
from packager.repository import versions

GENERATE, EMBED = "generate", "embed"


@dataclass(frozen=True)
class Model:
    name: str
    kind: str | None  # GENERATE, EMBED, or None (served, but not through this API)
    details: bool = False  # answers finish_reason / num_*_tokens (usage)
    special_tokens: bool = False  # takes add_special_tokens (chat prompts without a 2nd BOS)
    text_input: str = ""  # the BYTES input of an embedding model
    folder: Path | None = None  # <repository>/<name>/<version>/hf, when known


class Catalog:
    def __init__(self, client: AsyncClient, repository: Path | None) -> None:
        self.client = client
        self.repository = repository
        self._models: dict[str, Model] = {}
        self._extra: dict[tuple[str, str], Any] = {}

    async def ready(self) -> list[ModelInfo]:
        """The repository index's models that are ready (one row per name)."""
        seen: dict[str, ModelInfo] = {}
        for info in await self.client.models():
            if info.state == "READY":
                seen.setdefault(info.name, info)
        return list(seen.values())

    async def model(self, name: str, kind: str) -> Model:
        """``name`` checked for ``kind``: 404 when the server has no such model, 400 when it
        is not of that kind."""
        model = self._models.get(name)
        if model is None:
            from packager.errors import ClientError

            try:
                meta = await self.client.metadata(name)
            except ClientError as exc:
                raise from_client(exc, name) from None
            model = self._models[name] = _describe(name, meta, self._folder(name))
        if model.kind != kind:
            what = {GENERATE: "generates text", EMBED: "computes embeddings"}[kind]
            raise bad(f"the model {name!r} is not one that {what} on this server", "model")
        return model

    def _folder(self, name: str) -> Path | None:
        if self.repository is None or not (self.repository / name).is_dir():
            return None
        model_dir = self.repository / name
        for version in reversed(versions(model_dir)):
            if (model_dir / str(version) / "hf").is_dir():
                return model_dir / str(version) / "hf"
        return None

    def template(self, model: Model) -> chat.ChatTemplate:
        if model.folder is None:
            raise bad(
                f"the model {model.name!r} has no chat template here: this service was started "
                "without the model repository (give --repository), so only /v1/completions "
                "serves it",
                "model",
            )
        key = ("template", model.name)
        if key not in self._extra:
            self._extra[key] = chat.load(model.folder)
        template: chat.ChatTemplate | None = self._extra[key]
        if template is None:
            raise bad(
                f"the model {model.name!r} has no chat template (its folder has no "
                "chat_template.jinja and no chat_template in tokenizer_config.json); use "
                "/v1/completions with your own prompt, or add a template and rebuild",
                "model",
            )
        return template

    def room(self, model: Model, prompt: str, special_tokens: bool) -> int | None:
        """Tokens left in the context after ``prompt`` (the default ``max_tokens`` of a chat
        request, as vLLM's), or None when the folder is not at hand."""
        if model.folder is None or not (model.folder / "tokenizer.json").is_file():
            return None
        key = ("tokenizer", model.name)
        if key not in self._extra:
            from tokenizers import Tokenizer

            from packager.generate.build import context_length

            config = json.loads((model.folder / "config.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
            self._extra[key] = (tokenizer, context_length(config))
        tokenizer, context = self._extra[key]
        n = len(tokenizer.encode(prompt, add_special_tokens=special_tokens).ids)
        if n >= context:
            raise ApiError(
                400,
                f"This model's maximum context length is {context} tokens; the messages have "
                f"{n} tokens. Shorten them.",
                param="messages",
            )
        return int(context - n)


def _describe(name: str, meta: Any, folder: Path | None) -> Model:
    inputs = {t.name: t for t in meta.inputs}
    outputs = {t.name for t in meta.outputs}
    if "text_input" in inputs and "text_output" in outputs:
        return Model(
            name,
            GENERATE,
            details={"return_num_output_tokens", "return_finish_reason"} <= set(inputs),
            special_tokens="add_special_tokens" in inputs,
            folder=folder,
        )
    texts = [t.name for t in meta.inputs if t.datatype == "BYTES"]
    if "embedding" in outputs and len(meta.inputs) == 1 and texts:
        return Model(name, EMBED, text_input=texts[0])
    return Model(name, None)
