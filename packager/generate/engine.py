"""KV-cached text generation with per-step batching: the engine behind ``--task text-generation``.

This file is copied into the repository (``<model>/<version>/tp_engine.py``) and runs inside
Triton's Python backend, driven by ``model.py`` (:mod:`packager.generate.triton_model`); the
tests and ``benchmarks/generation.py`` run the very same code in-process. It needs torch,
transformers and the folder's tokenizer, nothing from triton-packager.

One thread owns the model. Each turn of its loop admits waiting requests (each prompt is run
once, alone, filling its KV cache and giving its first token), merges their caches into the
running batch (left-padded, with an attention mask and explicit positions), then advances every
running sequence by one token in ONE forward pass. A request that arrives while others decode
joins at the next step; a finished or cancelled one leaves at once.

One request cannot harm the others: its parameters are checked before it is queued
(:func:`parse_sampling`, then :meth:`Engine.submit` against this model's vocabulary and
context); a failure while choosing or decoding its tokens ends that request alone with one
error frame; a failed batched forward pass is retried without the sequences that fail alone,
and the rest go on.

Sampling parameters follow vLLM's ``SamplingParams`` (names, defaults, ``temperature 0`` =
greedy), so clients written for Triton's vLLM backend send the same JSON.
"""

from __future__ import annotations

import contextlib
import inspect
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

if __name__ == "tp_engine":  # the copy inside a repository: its sibling file
    from tp_sampling import GenerationError, Sampling, parse_sampling
else:
    from packager.generate.sampling import GenerationError, Sampling, parse_sampling

__all__ = ["Engine", "GenerationError", "Sampling", "Sink", "parse_sampling"]


class Sink(Protocol):
    """Where one request's output goes (Triton's response sender, or a queue in-process)."""

    def send(self, text: str, final: bool) -> None: ...

    def fail(self, message: str) -> None: ...

    def cancelled(self) -> bool: ...


# A sink may also have ``usage(prompt_tokens, completion_tokens, finish_reason)``: the engine
# calls it before each send with the counts so far (``finish_reason`` "stop" or "length" with
# the final send, else None), and ``record_tokens(ids)`` once done.


class QueueSink:
    """An in-process sink: ``for chunk in sink`` yields the text as it comes (an error frame
    raises :class:`GenerationError`); ``tokens`` holds the generated ids once done."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[tuple[str, bool, str | None]] = queue.Queue()
        self.tokens: list[int] | None = None
        self.stopped = False
        self.counts: tuple[int, int, str | None] = (0, 0, None)  # prompt, completion, reason

    def send(self, text: str, final: bool) -> None:
        self.chunks.put((text, final, None))

    def fail(self, message: str) -> None:
        self.chunks.put(("", True, message))

    def cancelled(self) -> bool:
        return self.stopped

    def record_tokens(self, ids: list[int]) -> None:
        self.tokens = ids

    def usage(self, prompt_tokens: int, completion_tokens: int, reason: str | None) -> None:
        self.counts = (prompt_tokens, completion_tokens, reason)

    def __iter__(self) -> Any:
        while True:
            text, final, error = self.chunks.get()
            if error is not None:
                raise GenerationError(error)
            if text:
                yield text
            if final:
                return


@dataclass
class _Sequence:
    prompt: str
    prompt_ids: list[int]
    sampling: Sampling
    sink: Sink
    stream: bool
    prepend: bool
    generated: list[int] = field(default_factory=list)
    sent: str = ""  # text already handed to the sink (streaming) or settled (not streaming)
    generator: Any = None  # torch.Generator for seeded sampling

    @property
    def position(self) -> int:  # position of the next token fed to the model
        return len(self.prompt_ids) + len(self.generated) - 1


class Engine:
    """One causal LM, its tokenizer and the decoding loop (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 32) -> None:
        import torch

        self.torch = torch
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        config = model.config
        self.max_model_len = int(
            getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 2048)
        )
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos = {
            int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None
        }
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._waiting: queue.Queue[_Sequence | None] = queue.Queue()
        self._running: list[_Sequence] = []
        self._cache: Any = None
        self._mask: Any = None  # [batch, cached tokens]: 1 real, 0 left padding
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.steps = 0  # batched decode steps run
        self.max_running = 0  # most sequences seen in one step
        head = model.get_output_embeddings()
        self.vocab = int(head.weight.shape[0] if head is not None else config.vocab_size)
        # Counters (model.py exports them as Prometheus metrics): generated tokens, requests
        # finished, requests that stopped because the client cancelled them, requests ended by
        # an error while generating, batched steps, and rows (the sum of every step's batch
        # width: rows / steps is the mean number of sequences one forward pass advanced).
        self.counts = {
            "tokens": 0, "finished": 0, "cancelled": 0, "failed": 0, "steps": 0, "rows": 0,
        }  # fmt: skip
        self.on_count: Any = None  # called as on_count(name, n) after each change

    @classmethod
    def load(
        cls,
        folder: str,
        *,
        threads: int | None = None,
        max_batch: int = 32,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> Engine:
        """The model and tokenizer of a Hugging Face folder (local files only) on ``device``
        ("cpu", "cuda:0"...) in ``dtype`` ("float32", "float16", "bfloat16")."""
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=getattr(torch, dtype)
        )
        model = model.to(torch.device(device))  # type: ignore[arg-type]  # transformers stub
        return cls(model, tokenizer, max_batch=max_batch)

    # -- requests ------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        sampling: Sampling,
        sink: Sink,
        *,
        stream: bool = False,
        prepend: bool | None = None,
        special_tokens: bool = True,
    ) -> None:
        """Queue one request, or raise :class:`GenerationError` (nothing queued) when it is bad.

        ``prepend``: the prompt is put before the output (vLLM's ``exclude_input_in_output``
        False); default True without streaming, and not allowed with it, as vLLM does.
        ``special_tokens`` False: the tokenizer adds no BOS (a rendered chat template has it).
        """
        if prepend is None:
            prepend = not stream
        if prepend and stream:
            raise GenerationError("when streaming, exclude_input_in_output = False is not allowed")
        if not isinstance(prompt, str) or not prompt.strip():
            raise GenerationError("text_input is empty: give a prompt")
        ids = [
            int(i) for i in self.tokenizer(prompt, add_special_tokens=special_tokens)["input_ids"]
        ]
        if not ids:
            raise GenerationError("the prompt has no tokens")
        room = self.max_model_len - len(ids)
        if room <= 0:
            raise GenerationError(
                f"the prompt has {len(ids)} tokens; the model's context is {self.max_model_len}: "
                "shorten the prompt"
            )
        if sampling.max_tokens > room:
            raise GenerationError(
                f"max_tokens {sampling.max_tokens} + the prompt's {len(ids)} tokens exceed the "
                f"model's context of {self.max_model_len}; ask for at most {room} tokens"
            )
        self._check_tokens(sampling)
        seq = _Sequence(prompt, ids, sampling, sink, stream, prepend)
        if sampling.seed is not None:
            seq.generator = self.torch.Generator().manual_seed(sampling.seed)
        self._waiting.put(seq)

    def _check_tokens(self, s: Sampling) -> None:
        """Token ids within the vocabulary, and a ``min_tokens`` that some token can meet."""
        if s.stop_token_ids and s.stop_token_ids[-1] >= self.vocab:
            raise GenerationError(
                f"stop_token_ids holds {s.stop_token_ids[-1]}: this model's token ids are "
                f"0..{self.vocab - 1}"
            )
        if s.min_tokens > 0:
            banned = set(s.stop_token_ids) | (set() if s.ignore_eos else self.eos)
            if len(banned) >= self.vocab:
                raise GenerationError(
                    f"min_tokens {s.min_tokens} cannot be met: stop_token_ids"
                    f"{'' if s.ignore_eos else ' and EOS'} cover all {self.vocab} tokens "
                    "of the vocabulary; leave some token free or set min_tokens 0"
                )

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="tp-generate", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self._waiting.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        torch = self.torch
        with torch.inference_mode():
            while not self._stopping:
                try:
                    self._turn()
                except Exception as exc:  # a bug must not leave clients waiting forever
                    for seq in self._running:
                        self._fail(seq, exc)
                    self._running, self._cache, self._mask = [], None, None

    def _turn(self) -> None:
        block = not self._running
        while len(self._running) < self.max_batch:
            try:
                seq = self._waiting.get(block=block, timeout=None)
            except queue.Empty:
                break
            block = False
            if seq is None:
                return
            try:
                self._admit(seq)
            except Exception as exc:  # its prefill ran alone: the failure is its own
                self._fail(seq, exc)
        if self._running:
            self._step()

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> tuple[Any, Any]:
        kwargs = {self._cache_arg: cache} if cache is not None else {}
        device = self.device  # inputs and masks are built on the CPU; the cache lives on device
        out = self.model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        new_cache = out.cache if hasattr(out, "cache") else out.past_key_values
        return out.logits[:, -1, :].float().cpu(), new_cache  # sampling runs on the CPU

    def _admit(self, seq: _Sequence) -> None:
        """Run the prompt alone (prefill), emit the first token, join the running batch."""
        torch = self.torch
        if seq.sink.cancelled():
            self._count("cancelled")
            return
        n = len(seq.prompt_ids)
        ids = torch.tensor([seq.prompt_ids])
        logits, cache = self._forward(
            ids, torch.ones(1, n, dtype=torch.long), torch.arange(n)[None], None
        )
        if self._advance([seq], logits):
            self._merge(seq, cache, n)

    def _merge(self, seq: _Sequence, cache: Any, n: int) -> None:
        torch = self.torch
        mask = torch.ones(1, n, dtype=torch.long)
        if self._cache is None:
            self._cache, self._mask, self._running = cache, mask, [seq]
            return
        have = self._mask.shape[1]
        width = max(have, n)
        old, new = _layers(self._cache), _layers(cache)
        merged = [
            tuple(
                torch.cat([_pad_left(a, width), _pad_left(b, width)])
                for a, b in zip(o, w, strict=True)
            )
            for o, w in zip(old, new, strict=True)
        ]
        self._mask = torch.cat([_pad_left(self._mask, width, dim=1), _pad_left(mask, width, dim=1)])
        self._cache = _make_cache(self.model.config, merged)
        self._running.append(seq)

    def _step(self) -> None:
        seqs = self._running
        layers = _layers(self._cache)  # the cache before this step: a failed pass leaves
        try:  # some layers grown by one position, so a retry starts from these tensors
            logits, self._cache, self._mask = self._decode(seqs, self._cache, self._mask)
        except Exception as exc:
            self._cache = _make_cache(self.model.config, layers)
            if not self._drop_culprits(exc):
                return
            seqs = self._running
            logits, self._cache, self._mask = self._decode(seqs, self._cache, self._mask)
        self.steps += 1
        self._count("steps")  # one forward pass for every running sequence
        self._count("rows", len(seqs))
        self.max_running = max(self.max_running, len(seqs))
        keep = self._advance(seqs, logits)
        if len(keep) < len(seqs):
            self._select([i for i, s in enumerate(seqs) if s in keep])

    def _decode(self, seqs: list[_Sequence], cache: Any, mask: Any) -> tuple[Any, Any, Any]:
        """One forward pass advancing ``seqs`` (whose cache and mask are given) by one token."""
        torch = self.torch
        ids = torch.tensor([[s.generated[-1]] for s in seqs])
        mask = torch.cat([mask, torch.ones(len(seqs), 1, dtype=torch.long)], dim=1)
        positions = torch.tensor([[s.position] for s in seqs])
        logits, cache = self._forward(ids, mask, positions, cache)
        return logits, cache, mask

    def _drop_culprits(self, exc: Exception) -> bool:
        """After a failed batched pass: run each sequence alone (on a copy of its rows), end
        those that fail with their own error, keep the rest. False when none is left, or when
        every sequence passes alone (the batch itself failed: each stream gets ``exc``)."""
        good, bad = [], []
        for row, seq in enumerate(self._running):
            cache, mask = self._rows([row])
            try:
                self._decode([seq], cache, mask)
                good.append(row)
            except Exception as own:
                bad.append((seq, own))
        for seq, error in bad:
            self._fail(seq, error)
        if not bad:
            for seq in self._running:
                self._fail(seq, exc)
            good = []
        self._select(good)
        return bool(good)

    def _rows(self, rows: list[int]) -> tuple[Any, Any]:
        """A new cache and mask of only ``rows`` of the batch, without columns of padding
        that none of them needs; the batch itself is left as it is."""
        torch = self.torch
        index = torch.tensor(rows)
        mask = self._mask[index]
        start = int((mask.sum(0) > 0).nonzero()[0])
        on_device = index.to(self.device)
        layers = [
            tuple(t[on_device][:, :, start:] for t in layer) for layer in _layers(self._cache)
        ]
        return _make_cache(self.model.config, layers), mask[:, start:]

    def _select(self, rows: list[int]) -> None:
        """Keep only ``rows`` of the batch."""
        if not rows:
            self._running, self._cache, self._mask = [], None, None
            return
        self._cache, self._mask = self._rows(rows)
        self._running = [self._running[i] for i in rows]

    def _advance(self, seqs: list[_Sequence], logits: Any) -> list[_Sequence]:
        """Pick each sequence's next token, send text, and return those still running.
        A failure here (sampling, decoding, a broken sink) ends its own sequence only."""
        alive = []
        for row, seq in enumerate(seqs):
            try:
                if seq.sink.cancelled():
                    self._count("cancelled")
                    continue
                token = self._choose(seq, logits[row])
                self._count("tokens")
                if not self._emit(seq, token):
                    alive.append(seq)
                else:
                    self._count("finished")
            except Exception as exc:
                self._fail(seq, exc)
        return alive

    def _fail(self, seq: _Sequence, exc: BaseException) -> None:
        """End ``seq`` with one error frame naming what went wrong."""
        self._count("failed")
        _safe_fail(seq.sink, f"generation failed: {type(exc).__name__}: {exc}")

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        if self.on_count is not None:
            self.on_count(name, n)

    def _choose(self, seq: _Sequence, logits: Any) -> int:
        """The next token of ``seq`` from its row of logits (changed in place)."""
        torch = self.torch
        s = seq.sampling
        if len(seq.generated) < s.min_tokens:
            banned = list(s.stop_token_ids) + ([] if s.ignore_eos else sorted(self.eos))
            if banned:
                logits[banned] = float("-inf")
        if s.greedy:
            return int(logits.argmax())
        scores = logits / s.temperature
        if s.top_k > 0 and s.top_k < scores.shape[-1]:
            cut = torch.topk(scores, s.top_k).values[-1]
            scores = scores.masked_fill(scores < cut, float("-inf"))
        if s.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = cumulative - torch.softmax(ordered, dim=-1) >= s.top_p
            scores = scores.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=seq.generator))

    def _emit(self, seq: _Sequence, token: int) -> bool:
        """Add ``token`` to ``seq``; send what text is settled. True when ``seq`` is done."""
        s = seq.sampling
        early = len(seq.generated) < s.min_tokens
        eos = token in s.stop_token_ids or (token in self.eos and not s.ignore_eos)
        if not (eos and not early):
            seq.generated.append(token)
        text = self.tokenizer.decode(
            seq.generated,
            skip_special_tokens=s.skip_special_tokens,
            clean_up_tokenization_spaces=False,
        )
        done = (eos and not early) or len(seq.generated) >= s.max_tokens
        cut = -1
        if s.stop and len(seq.generated) >= s.min_tokens:
            start = max(0, len(seq.sent) - max(len(x) for x in s.stop))
            hits = [i for x in s.stop if (i := text.find(x, start)) >= 0]
            if hits:
                cut, done = min(hits), True
        usage = getattr(seq.sink, "usage", None)  # optional: token counts, finish reason
        if usage is not None:
            reason = ("stop" if (eos and not early) or cut >= 0 else "length") if done else None
            usage(len(seq.prompt_ids), len(seq.generated), reason)
        if done:
            record = getattr(seq.sink, "record_tokens", None)  # optional: the token ids
            if record is not None:
                record(list(seq.generated))
            final = text[:cut] if cut >= 0 else text
            rest = final[len(seq.sent) :] if final.startswith(seq.sent) else ""
            whole = seq.sent + rest
            if seq.stream:
                seq.sink.send(rest, True)
            else:
                seq.sink.send((seq.prompt if seq.prepend else "") + whole, True)
            return True
        if seq.stream:
            safe = len(text) - _held_back(text, s.stop)
            if safe > len(seq.sent) and text.startswith(seq.sent):
                chunk = text[len(seq.sent) : safe]
                seq.sent = text[:safe]
                seq.sink.send(chunk, False)
        return False


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` not to send yet: an unfinished UTF-8 character (the
    tokenizer decodes it as U+FFFD) or the start of a stop string."""
    hold = len(text) - len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                hold = max(hold, k)
                break
    return hold


def _safe_fail(sink: Sink, message: str) -> None:
    with contextlib.suppress(Exception):  # the client is gone; nothing else to tell
        sink.fail(message)


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [
        (k, v) for k, v in zip(cache.key_cache, cache.value_cache, strict=True)
    ]  # transformers 4.x


def _make_cache(config: Any, layers: list[tuple[Any, ...]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers, config=config)


def _pad_left(t: Any, width: int, dim: int = 2) -> Any:
    """Zero-pad ``t`` on the left of ``dim`` to ``width``."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    import torch

    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
