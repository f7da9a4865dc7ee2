"""The OpenAI service's pure parts: chat templates (sandboxed, as transformers renders them),
request checks, API key rules; the CLI refusing an open service off loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from packager.cli import main
from packager.errors import PackagerError
from packager.openai_api import chat, protocol
from packager.openai_api.errors import ApiError
from packager.openai_api.service import KEY_ENV, api_keys

MESSAGES = [{"role": "user", "content": "hi"}]


def _folder(tmp_path: Path, config: dict[str, object], jinja: str | None = None) -> Path:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    if jinja is not None:
        (tmp_path / "chat_template.jinja").write_text(jinja)
    return tmp_path


def test_template_from_tokenizer_config_with_special_tokens(tmp_path: Path) -> None:
    config = {
        "bos_token": {"content": "<s>", "__type": "AddedToken"},
        "eos_token": "</s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}\n  [{{ m.role }}] {{ m.content }}"
        "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
    }
    template = chat.load(_folder(tmp_path, config))
    assert template is not None
    # trim_blocks as transformers: the newline after a block tag vanishes
    assert template.render(MESSAGES) == "<s>  [user] hi</s>[assistant]"


def test_jinja_file_wins_and_named_templates(tmp_path: Path) -> None:
    named = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default",
                                                                      "template": "D"}]}  # fmt: skip
    assert chat.load(_folder(tmp_path, named)).render(MESSAGES) == "D"  # type: ignore[union-attr]
    assert chat.load(_folder(tmp_path, named, "J")).render(MESSAGES) == "J"  # type: ignore[union-attr]
    (tmp_path / "chat_template.jinja").unlink()
    assert chat.load(_folder(tmp_path, {"eos_token": "</s>"})) is None  # no template at all


def test_sandbox_and_raise_exception_become_400(tmp_path: Path) -> None:
    escape = chat.ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})
    with pytest.raises(ApiError) as err:
        escape.render(MESSAGES)
    assert err.value.status == 400
    refuse = chat.ChatTemplate("{{ raise_exception('roles must alternate') }}", {})
    with pytest.raises(ApiError, match="roles must alternate"):
        refuse.render(MESSAGES)
    parts = chat.messages_from({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})  # fmt: skip
    assert parts[0]["content"] == "ab"
    with pytest.raises(ApiError, match="only text"):
        chat.messages_from({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})


def test_sampling_mapping_and_refusals() -> None:
    body = {"max_completion_tokens": 5, "temperature": 0, "stop": "\n", "top_k": 3,
            "ignore_eos": True, "n": 1, "presence_penalty": 0}  # fmt: skip
    assert protocol.sampling(body, 16) == {
        "max_tokens": 5, "temperature": 0.0, "top_k": 3, "ignore_eos": True, "stop": ["\n"],
    }  # fmt: skip
    assert protocol.sampling({}, 16) == {"max_tokens": 16}
    for bad, param in (
        ({"n": 2}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ):
        with pytest.raises(ApiError) as err:
            protocol.sampling(bad, 16)
        assert err.value.status == 400 and err.value.param == param
        assert err.value.body()["error"]["type"] == "invalid_request_error"
    with pytest.raises(ApiError, match="only allowed with stream"):
        protocol.stream_options({"stream_options": {"include_usage": True}})


def test_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert api_keys(None, host="127.0.0.1") == ()  # off by default on loopback
    with pytest.raises(PackagerError, match="without an API key"):
        api_keys(None, host="0.0.0.0")
    assert api_keys(None, host="0.0.0.0", allow_none=True) == ()
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nsk-a\n\nsk-b\n")
    monkeypatch.setenv(KEY_ENV, "sk-c")
    assert api_keys(keys, host="0.0.0.0") == ("sk-a", "sk-b", "sk-c")
    keys.write_text("\n")
    with pytest.raises(PackagerError, match="holds no key"):
        api_keys(keys, host="127.0.0.1")


def test_serve_refuses_an_open_service_off_loopback_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    args = ["serve", str(tmp_path), "--host", "0.0.0.0", "--openai-port", "0", "--no-verify"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "without an API key" in result.output and "starting tritonserver" not in result.output


def test_catalog_reads_the_newest_version_folder_by_tritons_rule(tmp_path: Path) -> None:
    """Only folders Triton reads as versions count: ``²`` and ``٣`` (``str.isdigit`` says yes)
    and ``05`` are not versions, so their ``hf`` folder is never the model's."""
    from packager.openai_api.catalog import Catalog

    for name in ("1", "2", "²", "٣", "05", "3abc"):
        (tmp_path / "lm" / name / "hf").mkdir(parents=True)
    catalog = Catalog(client=None, repository=tmp_path)  # type: ignore[arg-type]
    assert catalog._folder("lm") == tmp_path / "lm" / "2" / "hf"
    (tmp_path / "lm" / "2" / "hf").rmdir()
    assert catalog._folder("lm") == tmp_path / "lm" / "1" / "hf"
