"""Chat templates: the model's own (kept by ``build`` in ``<version>/hf/``), rendered in a
sandboxed jinja2 environment the way transformers' ``apply_chat_template`` renders it
(``trim_blocks``, ``lstrip_blocks``, ``raise_exception``, ``tojson``, ``strftime_now``, the
tokenizer's special tokens as variables, ``add_generation_prompt``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from packager.openai_api.errors import ApiError, bad

TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    special: dict[str, str]  # bos_token, eos_token... as the template sees them

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt of ``messages``, ending with the assistant's turn."""
        try:
            return str(
                _compile(self.source).render(
                    messages=messages, add_generation_prompt=True, **self.special
                )
            )
        except ApiError:
            raise
        except Exception as exc:  # jinja2 errors, the sandbox's refusals, raise_exception()
            raise bad(f"the model's chat template failed on these messages: {exc}") from None


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<s>", "__type": "AddedToken", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


def load(folder: Path) -> ChatTemplate | None:
    """The chat template of a Hugging Face folder (``chat_template.jinja``, or
    ``tokenizer_config.json``'s ``chat_template``: a string, or named templates whose
    "default" is used), or None."""
    config: dict[str, Any] = {}
    path = folder / CONFIG_FILE
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            loaded = {}
        config = loaded if isinstance(loaded, dict) else {}
    special = {k: t for k in SPECIAL if (t := _token_text(config.get(k))) is not None}
    if (folder / TEMPLATE_FILE).is_file():
        return ChatTemplate((folder / TEMPLATE_FILE).read_text(encoding="utf-8"), special)
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return ChatTemplate(template, special) if isinstance(template, str) and template else None


def _raise(message: str) -> None:
    raise bad(f"the model's chat template refused these messages: {message}")


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def messages_from(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, checked: role and content (a string, or text parts)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad(f"messages[{i}] needs a role", "messages")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise bad(f"messages[{i}]: only text content parts are served", "messages")
                parts.append(str(part.get("text", "")))
            content = "".join(parts)
        if content is not None and not isinstance(content, str):
            raise bad(f"messages[{i}].content must be a string or text parts", "messages")
        out.append({**message, "content": content or ""})
    return out
