"""Seeded causal LMs from standard configs (Llama and GPT-2 architectures, tiny sizes), saved as
Hugging Face folders with a real trained tokenizer: what ``build --task text-generation`` takes.

The tokenizers are trained here (no hub access) on a small English text: a byte-level BPE for
GPT-2 (as GPT-2's own) and a Metaspace BPE with a BOS token for Llama (as Llama's
sentencepiece one), so decoding exercises both kinds of space handling and UTF-8 splitting.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Triton serves models over HTTP and gRPC; clients stream text as it is generated.",
    "Large language models predict the next token from the tokens before it.",
    "A cache of keys and values makes each new token cheap to compute.",
    "Café, naïve, déjà vu: some words carry accents. Numbers too: 12, 345, 6789.",
    "Once upon a time there was a small model that wanted to tell stories.",
] * 20
PROMPTS = ("Once upon a time", "The quick brown fox", "Triton serves models")


def _tokenizer(kind: str, eos: str, bos: str | None) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (bos, eos, "<pad>") if t]
    if kind == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials)
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        from tokenizers import processors

        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, bos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, bos_token=bos, pad_token="<pad>"
    )


def make_causal_lm(
    folder: Path, arch: str, *, seed: int = 0, context: int = 128, hidden: int = 64
) -> Path:
    """A seeded ``arch`` ("llama" | "gpt2") causal LM with its tokenizer, saved in ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if arch == "gpt2":
        tokenizer = _tokenizer("gpt2", "<|endoftext|>", None)
    else:
        tokenizer = _tokenizer("llama", "</s>", "<s>")
    vocab = len(tokenizer)  # type: ignore[arg-type]
    eos = tokenizer.eos_token_id  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    model: torch.nn.Module
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_positions=context, n_embd=hidden, n_layer=2, n_head=4,
            bos_token_id=eos, eos_token_id=eos,
        )  # fmt: skip
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,  # type: ignore[attr-defined]
        )  # fmt: skip
        model = LlamaForCausalLM(config)
    # Random init puts every logit near zero, so greedy decoding would repeat one token; larger
    # weights give varied text (what the tests want to see streamed).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)  # type: ignore[operator]
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def reference_generate(folder: Path, prompt: str, max_tokens: int) -> tuple[list[int], str]:
    """transformers' own greedy generate(do_sample=False): the new tokens and their text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    enc = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **enc, do_sample=False, max_new_tokens=max_tokens, pad_token_id=tok.pad_token_id
        )
    new = [int(t) for t in out[0, enc["input_ids"].shape[1] :]]
    if new and new[-1] == tok.eos_token_id:
        new = new[:-1]
    text = tok.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return new, text
