"""BERTScore with bert-score's exact semantics, faster on CPU, model loaded once.

What is identical to `bert_score.score(cands, refs, model_type=M, num_layers=L, idf=I)` (tests compare):
- tokenisation: the text is stripped; an empty text is just [CLS] [SEP]; otherwise
  `tokenizer.encode(text, add_special_tokens=True, max_length=tokenizer.model_max_length, truncation=True)`
  (bert-score's `sent_encode`), so long outputs are truncated exactly where bert-score truncates them;
- embeddings: the output of layer L (the model cut to its first L layers);
- weights: without idf every token weighs 1 except [CLS]/[SEP] (0); with idf, log((N+1)/(df+1)) over the
  references' token sets;
- greedy matching over *all* tokens including [CLS]/[SEP], in batches of 64 pairs in input order, where
  bert-score masks padded positions to a similarity of 0 (so a token's best match is never below 0 when
  the partner sentence is shorter than the longest one of its batch — a bert-score quirk we reproduce);
- empty candidate or reference: P = R = 0, F = 0 (bert-score's masking); NaN F -> 0.

What is different: sentences are de-duplicated and encoded in batches sorted by token length (bert-score
sorts Chinese text by the number of spaces, i.e. not at all, and pads every batch to its longest
sentence), inference runs under `torch.inference_mode`, and the model is loaded once per process.
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vmeta.errors import UserError

# bert-score's greedy matching works on batches of this many (ref, cand) pairs (its `batch_size` default);
# padding inside such a batch decides the quirk described above.
BERT_SCORE_MATCH_BATCH = 64
DEFAULT_MODEL = "bert-base-chinese"
DEFAULT_LAYER = 8


@dataclass(frozen=True)
class BertScoreConfig:
    model: str = DEFAULT_MODEL
    num_layers: int | None = DEFAULT_LAYER
    idf: bool = False
    batch_size: int = 64
    device: str = "auto"  # auto: CUDA when available
    models_dir: str | None = None  # searched for a folder named like the model before the Hub
    offline: bool = False  # never try the Hub (also when huggingface_hub is in offline mode)
    match_batch_size: int = BERT_SCORE_MATCH_BATCH

    def __post_init__(self) -> None:
        if self.num_layers is not None and self.num_layers < 0:
            raise UserError(f"--bert-layer must be >= 0, got {self.num_layers}.")
        if self.batch_size < 1:
            raise UserError(f"--bert-batch-size must be >= 1, got {self.batch_size}.")

    @classmethod
    def from_settings(cls, settings: Any, **fields: Any) -> BertScoreConfig:
        """A config that looks for the encoder where the settings say models live (VMETA_MODELS_DIR) and stays
        offline when they do: what every command that scores with BERTScore passes."""
        models_dir = str(settings.models_dir) if settings.models_dir else None
        return cls(models_dir=models_dir, offline=settings.hf_offline, **fields)


def resolve_model(name: str, models_dir: str | Path | None = None) -> str:
    """A local folder if there is one (the name itself, or MODELS_DIR/<name>, MODELS_DIR/<last part>), else the Hub id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if models_dir:
        for candidate in (Path(models_dir) / name, Path(models_dir) / name.split("/")[-1]):
            if candidate.is_dir():
                return str(candidate)
    return name


def _offline_message(name: str, resolved: str, exc: BaseException) -> str:
    return (
        f"BERTScore needs the encoder '{name}', which could not be loaded from '{resolved}' "
        f"(no local copy and no download possible: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
        f"Download it once where there is network (`huggingface-cli download {name}`), or copy it into a folder "
        f"(config.json, vocab.txt, model weights) and pass `--bert-model /path/to/that/folder` "
        f"(or put it under VMETA_MODELS_DIR/{name.split('/')[-1]}); to go on without BERTScore use `--no-bertscore`."
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the Hub endpoint, so an offline machine fails in seconds, not after minutes of retries."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        url = urlparse(constants.ENDPOINT)
    except ImportError:  # pragma: no cover
        return False
    try:
        with socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ):
            return True
    except OSError:
        return False


@lru_cache(maxsize=4)
def load_encoder(
    resolved: str, num_layers: int | None, device: str = "cpu", local_only: bool = True
) -> tuple[Any, Any, int]:
    """(tokenizer, model cut to `num_layers`, num_layers) — loaded once per process and cached."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    # use_fast=False: what bert-score loads
    tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=False, local_files_only=local_only)
    model = AutoModel.from_pretrained(resolved, local_files_only=local_only)
    model.eval()
    if hasattr(model, "decoder") and hasattr(model, "encoder"):
        model = model.encoder
    layers = _layer_list(model)
    if num_layers is None:
        num_layers = len(layers)
    if not 0 <= num_layers <= len(layers):
        raise UserError(f"--bert-layer {num_layers} is out of range: '{resolved}' has {len(layers)} layers.")
    _set_layer_list(model, torch.nn.ModuleList(list(layers)[:num_layers]))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    return tokenizer, model, num_layers


def _layer_list(model: Any) -> Any:
    for owner in (getattr(model, "encoder", None), model, getattr(model, "transformer", None)):
        if owner is not None and hasattr(owner, "layer"):
            return owner.layer
    if hasattr(model, "layers"):
        return model.layers
    raise UserError(
        f"BERTScore: unsupported encoder architecture {type(model).__name__}; use a BERT/RoBERTa-like model."
    )


def _set_layer_list(model: Any, layers: Any) -> None:
    for owner in (getattr(model, "encoder", None), model, getattr(model, "transformer", None)):
        if owner is not None and hasattr(owner, "layer"):
            owner.layer = layers
            return
    model.layers = layers


def bert_score_hash(model: str, num_layers: int, idf: bool) -> str:
    """The same string `bert_score.score(..., return_hash=True)` returns for these settings (no rescale)."""
    try:
        from transformers import __version__ as trans_version
    except ImportError:  # pragma: no cover
        trans_version = "?"
    try:
        import bert_score

        version = bert_score.__version__
    except ImportError:
        version = "not-installed"
    return "{}_L{}{}_version={}(hug_trans={})".format(
        model, num_layers, "_idf" if idf else "_no-idf", version, trans_version
    )


class BertScorer:
    """Load once, score many: `BertScorer(cfg).score(cands, refs) -> (P, R, F)` as numpy arrays in [0, 1]."""

    def __init__(self, config: BertScoreConfig | None = None, *, show_progress: bool = False):
        self.config = config or BertScoreConfig()
        self.show_progress = show_progress
        self.resolved = resolve_model(self.config.model, self.config.models_dir)
        cfg = self.config
        try:  # the local folder or the Hugging Face cache first: no network
            loaded = load_encoder(self.resolved, cfg.num_layers, cfg.device, True)
        except UserError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            if Path(self.resolved).is_dir():
                raise UserError(
                    f"--bert-model folder '{self.resolved}' could not be loaded as a transformers encoder "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); it needs config.json, the tokenizer "
                    "files (vocab.txt) and the weights."
                ) from None
            if cfg.offline or not _hub_reachable():
                raise UserError(_offline_message(cfg.model, self.resolved, exc)) from None
            try:
                loaded = load_encoder(self.resolved, cfg.num_layers, cfg.device, False)
            except (OSError, ValueError, RuntimeError) as exc2:
                raise UserError(_offline_message(cfg.model, self.resolved, exc2)) from None
        self.tokenizer, self.model, self.num_layers = loaded
        self.max_length = _max_length(self.tokenizer, self.model)

    # -- description for results.json -------------------------------------------------------------------------
    def describe(self) -> dict:
        import torch
        import transformers

        try:
            from importlib.metadata import version

            bs_version = version("bert-score")
        except Exception:
            bs_version = None
        return {
            "semantics": "bert-score (Zhang et al. 2020): greedy cosine matching of contextual embeddings, F1",
            "model": self.config.model,
            "resolved_path": self.resolved,
            "num_layers": self.num_layers,
            "idf": self.config.idf,
            "rescale_with_baseline": False,
            "max_length": self.max_length,
            "implementation": "vmeta.evaluate.bertscore (numbers equal bert_score.score on the same encoder)",
            "hash": bert_score_hash(self.config.model, self.num_layers, self.config.idf),
            "versions": {
                "bert-score": bs_version,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            "scale": "x100",
        }

    # -- tokenisation ------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        tok = self.tokenizer
        empty = [tok.cls_token_id, tok.sep_token_id]
        kwargs: dict[str, Any] = {"add_special_tokens": True, "max_length": self.max_length, "truncation": True}
        if _needs_prefix_space(tok):
            kwargs["add_prefix_space"] = True
        out: list[list[int]] = []
        for text in texts:
            t = text.strip()
            out.append(list(empty) if t == "" else tok.encode(t, **kwargs))
        return out

    def idf_dict(self, refs: list[str]) -> dict[int, float]:
        """bert-score's `get_idf_dict`: log((N+1)/(df+1)) over the references' token sets; unseen -> log(N+1)."""
        counts: Counter[int] = Counter()
        for ids in self.encode_many(list(refs)):
            counts.update(set(ids))
        n = len(refs)
        idf: dict[int, float] = defaultdict(lambda: math.log((n + 1) / 1))
        idf.update({i: math.log((n + 1) / (c + 1)) for i, c in counts.items()})
        return idf

    # -- embeddings --------------------------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> dict[str, tuple[list[int], Any]]:
        """Unique text -> (token ids, L2-normalised layer-L embeddings [len, dim]), encoded in length-sorted batches."""
        import torch

        unique = list(dict.fromkeys(texts))
        ids = self.encode_many(unique)
        order = sorted(range(len(unique)), key=lambda i: len(ids[i]), reverse=True)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        bs = self.config.batch_size
        out: dict[str, tuple[list[int], Any]] = {}
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        bar = _progress(len(unique), "BERTScore", self.show_progress)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for batch in batches:
                max_len = max(len(ids[i]) for i in batch)
                x = torch.full((len(batch), max_len), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), max_len), dtype=torch.long)
                for row, i in enumerate(batch):
                    x[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, : len(ids[i])] = 1
                emb = self.model(x.to(device), attention_mask=mask.to(device))[0].float().cpu()
                emb = emb / torch.norm(emb, dim=-1, keepdim=True)
                for row, i in enumerate(batch):
                    out[unique[i]] = (ids[i], emb[row, : len(ids[i])].clone())
                if bar is not None:
                    bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    # -- scoring ---------------------------------------------------------------------------------------------
    def score(self, cands: list[str], refs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        if len(cands) != len(refs):
            raise ValueError(f"{len(cands)} candidates but {len(refs)} references")
        if not cands:
            z = np.zeros(0)
            return z, z, z
        if self.config.idf:
            idf = self.idf_dict(refs)
        else:
            idf = defaultdict(lambda: 1.0)
            idf[self.tokenizer.sep_token_id] = 0.0
            idf[self.tokenizer.cls_token_id] = 0.0
        stats = self.embed(list(cands) + list(refs))
        P, R, F = [], [], []
        mb = self.config.match_batch_size
        with torch.inference_mode():
            for start in range(0, len(cands), mb):
                h = [stats[c] for c in cands[start : start + mb]]
                r = [stats[t] for t in refs[start : start + mb]]
                p, rr, f = _greedy(h, r, idf)
                P.append(p)
                R.append(rr)
                F.append(f)
        return np.concatenate(P), np.concatenate(R), np.concatenate(F)


def _greedy(hyp: list, ref: list, idf: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bert-score's `greedy_cos_idf` on one match batch (embeddings already normalised)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    h_emb = pad_sequence([e for _, e in hyp], batch_first=True)
    r_emb = pad_sequence([e for _, e in ref], batch_first=True)
    h_len = torch.tensor([len(i) for i, _ in hyp])
    r_len = torch.tensor([len(i) for i, _ in ref])
    h_mask = (torch.arange(h_emb.shape[1])[None, :] < h_len[:, None]).float()
    r_mask = (torch.arange(r_emb.shape[1])[None, :] < r_len[:, None]).float()
    h_idf = pad_sequence([torch.tensor([idf[t] for t in i], dtype=torch.float) for i, _ in hyp], batch_first=True)
    r_idf = pad_sequence([torch.tensor([idf[t] for t in i], dtype=torch.float) for i, _ in ref], batch_first=True)

    sim = torch.bmm(h_emb, r_emb.transpose(1, 2))
    sim = sim * torch.bmm(h_mask.unsqueeze(2), r_mask.unsqueeze(1))
    word_precision = sim.max(dim=2)[0]
    word_recall = sim.max(dim=1)[0]
    h_idf = h_idf / h_idf.sum(dim=1, keepdim=True)
    r_idf = r_idf / r_idf.sum(dim=1, keepdim=True)
    P = (word_precision * h_idf).sum(dim=1)
    R = (word_recall * r_idf).sum(dim=1)
    F = 2 * P * R / (P + R)
    h_zero = h_len.eq(2)
    r_zero = r_len.eq(2)
    P = P.masked_fill(h_zero, 0.0).masked_fill(r_zero, 0.0)
    R = R.masked_fill(h_zero, 0.0).masked_fill(r_zero, 0.0)
    F = F.masked_fill(torch.isnan(F), 0.0)
    return P.double().numpy(), R.double().numpy(), F.double().numpy()


def _max_length(tokenizer: Any, model: Any) -> int:
    n = int(getattr(tokenizer, "model_max_length", 0) or 0)
    if 0 < n < 1_000_000:
        return n
    # No limit in the tokenizer config: bert-score would crash past the position table; we truncate there.
    return int(getattr(model.config, "max_position_embeddings", 512))


def _needs_prefix_space(tok: Any) -> bool:
    name = type(tok).__name__
    return name.startswith(("GPT2Tokenizer", "RobertaTokenizer"))


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, leave=False)
