"""Build a random BERT with a Chinese character vocabulary, offline: for metric tests, benchmarks and demos.

The numbers it gives are not meaningful as semantics, but BERTScore's *computation* (tokenisation,
truncation, layer choice, matching) is the real one, so it checks that two implementations agree.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def char_vocab(texts: Iterable[str]) -> list[str]:
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    ascii_pieces = list(string.ascii_letters + string.digits)
    extra = ascii_pieces + ["##" + c for c in ascii_pieces]
    seen = set(SPECIAL)
    vocab = list(SPECIAL)
    for tok in chars + extra:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def build_char_bert(
    folder: str | Path,
    texts: Iterable[str],
    *,
    hidden_size: int = 32,
    num_layers: int = 3,
    heads: int = 2,
    intermediate_size: int = 64,
    max_length: int = 64,
    seed: int = 0,
) -> Path:
    """Save a random `BertModel` + `BertTokenizer` (characters of `texts` + ASCII pieces) to `folder`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = char_vocab(texts)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False, model_max_length=max_length)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_length,
    )
    BertModel(config).eval().save_pretrained(str(folder))
    return folder
