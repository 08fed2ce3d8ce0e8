"""Build a tiny, randomly initialised Llama and its tokenizer entirely offline.

The bundled demo model and the test fixtures come from here, so the whole pipeline (train, checkpoint,
evaluate) runs on a laptop CPU with no download.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, UNK, PAD]


# The demo data the bundled tokenizer was trained on. Named, not globbed: a data file added later (the RL demo's,
# derived from these) would change every tokenizer built here, and the bundled model's would no longer match.
CORPUS_DATA = ("capitals_mc.jsonl", "capitals_train.jsonl")


def default_corpus(repo_root: Path) -> list[str]:
    """Every string in the bundled demo data and benchmark sample, so the tokenizer covers their vocabulary."""
    examples = repo_root / "examples"
    files = [examples / "data" / name for name in CORPUS_DATA] + sorted((examples / "benchmarks").rglob("*.jsonl"))
    corpus: list[str] = []
    for path in files:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    corpus.extend(_strings(json.loads(line)))
    return corpus


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def build_tiny_model(
    out_dir: Path,
    corpus: Iterable[str],
    *,
    vocab_size: int = 4096,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 2048,
    initializer_range: float = 0.2,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE tokenizer on `corpus`, build a random Llama around it, save both to `out_dir`.

    The same corpus and seed give byte-identical files. Returns `out_dir`.

    `initializer_range` is ten times Llama's 0.02 on purpose. With tied embeddings and hidden size 64, 0.02
    caps every logit near 1. Adapter methods (LoRA) leave the embeddings frozen, so they could never make a
    confident prediction and their loss would stay near ln(vocab).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(corpus, vocab_size, max_position_embeddings)
    tokenizer.save_pretrained(out_dir)
    model = _random_llama(
        tokenizer, hidden_size, num_layers, num_heads, max_position_embeddings, initializer_range, seed
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def _train_tokenizer(corpus: Iterable[str], vocab_size: int, model_max_length: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols up front: any text can be encoded, so <unk> never appears.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    # Llama convention: prepend BOS, never append EOS. Callers that manage special tokens themselves
    # (lm-eval, the training collator) pass add_special_tokens=False and get the bare ids.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=model_max_length,
    )


def _random_llama(
    tokenizer: Any,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_position_embeddings: int,
    initializer_range: float,
    seed: int,
) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(torch.float32)
