"""Model state of prompts already read, kept between requests, so a follow-up question reads only its own words.

A chat turn's prompt is the whole conversation so far — system prompt, the video, earlier questions and answers.
Without this, every follow-up re-reads the video through the vision tower (about two thirds of a cold answer's
compute on a CPU) and then the whole history through the language model. Here:

- :class:`PromptCache` keeps, per *scope* (a served variant + the person asking), the KV cache of recent
  prompts keyed by their tokens, and the vision tower's output per video (a new conversation about the same
  upload skips the vision tower). Bounded by bytes, least recently used first out. What vLLM calls automatic
  prefix caching, for one process and a handful of conversations.
- :func:`read_prompt` brings a prompt's KV cache up to a position, starting from the longest cached prefix, in
  chunks (so a long read reports progress and can be stopped between chunks and continued later).

Media tokens are keyed by content: every ``<|video_pad|>`` of a video has the same token id, so a prompt's key
replaces them with a value derived from a hash of that video's pixels — two videos with the same grid never
share state. Qwen2-VL / Qwen2.5-VL only (their processors mark media tokens with ``mm_token_type_ids`` and
their M-RoPE positions come from ``get_rope_index``); other families take the plain path in
:mod:`vmeta.models.generate`.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHUNK_TOKENS = 512  # prompt tokens per language-model pass (Qwen2-VL-2B on 2 cores: 512 reads 10% faster than 256)
PAUSE_CHUNK_TOKENS = 256  # the same for a read that steps aside for answers: a pause point every ~1.5 s
VISION_CHUNK_T = 2  # temporal patches (4 frames) per vision-tower pass: the same, for the video's encoding


@dataclass
class _Prompt:
    scope: Hashable
    key: np.ndarray  # int64 token key (media tokens replaced by content markers), one per cached position
    cache: Any  # transformers DynamicCache holding len(key) positions
    nbytes: int


@dataclass
class Media:
    """One image or video of a prompt: where its tokens are and what its pixels hash to."""

    modality: str  # "image" | "video"
    start: int  # first token position
    tokens: int  # number of its placeholder tokens
    digest: bytes
    pixels: Any  # its rows of pixel_values(_videos)
    grid: Any  # its (t, h, w) row

    @property
    def end(self) -> int:
        return self.start + self.tokens


@dataclass
class PromptCache:
    """Bounded LRU of prompt KV caches and vision features; thread-safe. ``max_bytes`` 0 keeps nothing."""

    max_bytes: int
    _prompts: OrderedDict[int, _Prompt] = field(default_factory=OrderedDict)
    _vision: OrderedDict[tuple[Hashable, bytes], tuple[Any, int]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    hits: int = 0  # lookups that found a usable prefix
    misses: int = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes_locked()

    def _nbytes_locked(self) -> int:
        return sum(p.nbytes for p in self._prompts.values()) + sum(n for _, n in self._vision.values())

    def __len__(self) -> int:
        return len(self._prompts)

    def longest(self, scope: Hashable, key: np.ndarray, config: Any) -> tuple[Any, int]:
        """A fresh DynamicCache holding the longest cached prefix of `key` in `scope`, and its length (0: none).
        The stored entry stays as it was (the copy is the caller's to extend)."""
        from transformers import DynamicCache

        best: _Prompt | None = None
        best_len = 0
        with self._lock:
            for pid, p in self._prompts.items():
                if p.scope != scope:
                    continue
                n = _common_prefix(p.key, key)
                if n > best_len:
                    best, best_len, best_id = p, n, pid
            if best is None:
                self.misses += 1
                return DynamicCache(config=config), 0
            self.hits += 1
            self._prompts.move_to_end(best_id)
            cache = DynamicCache(config=config)
            for i, layer in enumerate(best.cache.layers):
                cache.update(layer.keys[..., :best_len, :], layer.values[..., :best_len, :], i)  # update copies
        return cache, best_len

    def put(self, scope: Hashable, key: np.ndarray, cache: Any) -> None:
        """Keep `cache` (the caller hands it over) for the prompt `key`; entries it extends are dropped."""
        n = cache.get_seq_length()
        if n == 0 or self.max_bytes <= 0:
            return
        key = np.asarray(key[:n], dtype=np.int64)
        nbytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers if layer.keys is not None)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            for pid in [pid for pid, p in self._prompts.items() if p.scope == scope and _is_prefix(p.key, key)]:
                del self._prompts[pid]
            self._next += 1
            self._prompts[self._next] = _Prompt(scope, key, cache, nbytes)
            self._evict_locked()

    def vision(self, scope: Hashable, digest: bytes) -> Any:
        """The vision features kept for a media item (possibly only its first frames: a paused read), or None."""
        with self._lock:
            hit = self._vision.get((scope, digest))
            if hit is None:
                return None
            self._vision.move_to_end((scope, digest))
            return hit[0]

    def put_vision(self, scope: Hashable, digest: bytes, features: Any) -> None:
        if self.max_bytes <= 0:
            return
        with self._lock:
            self._vision[(scope, digest)] = (features, features.nbytes)
            self._evict_locked()

    def drop(self, scope_matches: Callable[[Hashable], bool], digest: bytes | None = None) -> int:
        """Forget every entry whose scope matches (a variant unloaded, a person gone) — only those holding the
        media item `digest` when it is given (an upload deleted); -> entries dropped."""
        marker = None if digest is None else media_marker(digest)
        with self._lock:
            gone = [
                pid
                for pid, p in self._prompts.items()
                if scope_matches(p.scope) and (marker is None or bool((p.key == marker).any()))
            ]
            for pid in gone:
                del self._prompts[pid]
            vgone = [k for k in self._vision if scope_matches(k[0]) and (digest is None or k[1] == digest)]
            for k in vgone:
                del self._vision[k]
        return len(gone) + len(vgone)

    def _evict_locked(self) -> None:
        while (self._prompts or self._vision) and self._nbytes_locked() > self.max_bytes:
            # The oldest of either kind goes first; prompts are the bigger ones, so they go when tied.
            if self._prompts:
                self._prompts.popitem(last=False)
            else:
                self._vision.popitem(last=False)


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def _is_prefix(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) <= len(b) and _common_prefix(a, b) == len(a)


# ---------------------------------------------------------------------------------------------------------------
# Reading a prompt


def media_of(model: Any, inputs: dict[str, Any]) -> list[Media]:
    """The images and videos of a one-conversation batch, in token order, with their pixel rows and digests."""
    cfg = model.config
    ids = inputs["input_ids"][0]
    merge = model.model.visual.spatial_merge_size**2
    out: list[Media] = []
    for modality, token_id, pix_key, grid_key in (
        ("image", cfg.image_token_id, "pixel_values", "image_grid_thw"),
        ("video", cfg.video_token_id, "pixel_values_videos", "video_grid_thw"),
    ):
        grids = inputs.get(grid_key)
        if grids is None:
            continue
        starts = _span_starts(ids, token_id)
        row = 0
        for n, grid in enumerate(grids):
            rows = int(grid.prod())
            pixels = inputs[pix_key][row : row + rows]
            row += rows
            digest = hashlib.blake2b(
                pixels.detach().float().cpu().numpy().tobytes() + grid.cpu().numpy().tobytes(), digest_size=16
            ).digest()
            out.append(Media(modality, starts[n], rows // merge, digest, pixels, grid))
    return sorted(out, key=lambda m: m.start)


def _span_starts(ids: Any, token_id: int) -> list[int]:
    mask = (ids == token_id).cpu().numpy().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask])) == 1)
    return [int(e) for e in edges]


def media_marker(digest: bytes) -> int:
    """The key value standing for every token of a media item (negative: never a token id)."""
    return -(int.from_bytes(digest[:7], "little") + 1)


def prompt_key(input_ids: Any, media: list[Media]) -> np.ndarray:
    """Token ids, with each media item's tokens replaced by a negative marker derived from its pixels' digest."""
    key = input_ids[0].cpu().numpy().astype(np.int64).copy()
    for m in media:
        key[m.start : m.end] = media_marker(m.digest)
    return key


def rope_positions(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
    """M-RoPE positions (3, 1, N) of the whole prompt and the rope delta that continues them while decoding."""
    import torch

    ids = inputs["input_ids"]
    core = model.model
    if inputs.get("image_grid_thw") is None and inputs.get("video_grid_thw") is None:
        pos = torch.arange(ids.shape[1], device=ids.device).view(1, 1, -1).expand(3, 1, -1)
        return pos, torch.zeros(1, 1, dtype=torch.long, device=ids.device)
    wanted = inspect.signature(core.get_rope_index).parameters
    kwargs = {k: v for k, v in inputs.items() if k in wanted and k != "input_ids"}
    return core.get_rope_index(ids, **kwargs)


@dataclass
class ReadState:
    """A prompt being read: its cache, how far it is, and what a caller needs to continue with generate."""

    cache: Any
    key: np.ndarray
    done: int  # positions in the cache
    reused: int  # of which came from the PromptCache
    rope_deltas: Any
    media: list[Media]


def read_prompt(
    model: Any,
    inputs: dict[str, Any],
    end: int,
    *,
    store: PromptCache | None,
    scope: Hashable,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
    should_pause: Callable[[], bool] | None = None,
    keep: bool = False,
    media: list[Media] | None = None,
) -> ReadState:
    """Bring the prompt's KV cache to position `end` (exclusive), from the longest cached prefix, `CHUNK_TOKENS`
    at a time (`PAUSE_CHUNK_TOKENS` when it may pause). Call inside ``torch.inference_mode()`` holding the model's lock. ``should_pause`` is asked between
    chunks: when it says yes the read stops early (``done < end``) and what was read is kept in `store`, so the
    next read continues from there (the vision tower pauses the same way, a few frames at a time). `keep`: hand
    the state to `store` when done (a read ahead of the question); otherwise the caller extends it (generation)
    and stores it after."""
    import torch

    media = media_of(model, inputs) if media is None else media
    key = prompt_key(inputs["input_ids"], media)
    if store is not None:
        cache, reused = store.longest(scope, key[:end], model.config)
    else:
        from transformers import DynamicCache

        cache, reused = DynamicCache(config=model.config), 0
    positions, deltas = rope_positions(model, inputs)
    ids = inputs["input_ids"]
    embed = model.model.get_input_embeddings()
    features: dict[int, Any] = {}

    def media_features(m: Media, upto: int) -> Any:
        """The media item's features for its first `upto` tokens (more may come back), encoding what is missing
        a few frames at a time — a pause between those passes keeps what was encoded for the next read."""
        have = features.get(id(m))
        if have is None and store is not None:
            have = store.vision(scope, m.digest)
        per_t = m.tokens // int(m.grid[0])  # tokens per temporal patch
        encode = model.model.get_video_features if m.modality == "video" else model.model.get_image_features
        parts = [have] if have is not None else []
        got = 0 if have is None else int(have.shape[0])
        fresh = False
        while got < upto:
            if got and should_pause is not None and should_pause():
                break
            if on_stage is not None:
                on_stage(
                    "encoding",
                    {"modality": m.modality, "frames": _frames(model, m), "done": got // per_t * _temporal(model, m)},
                )
            t0 = got // per_t
            t1 = min(int(m.grid[0]), t0 + VISION_CHUNK_T) if m.modality == "video" else int(m.grid[0])
            rows = m.pixels.shape[0] // int(m.grid[0])
            grid = m.grid.clone().view(1, 3)
            grid[0, 0] = t1 - t0
            parts.append(encode(m.pixels[t0 * rows : t1 * rows], grid, return_dict=True).pooler_output[0])
            got, fresh = t1 * per_t, True
        feats = parts[0] if len(parts) == 1 else torch.cat(parts)
        features[id(m)] = feats
        if store is not None and fresh:
            store.put_vision(scope, m.digest, feats)
        return feats

    done = reused
    chunk = CHUNK_TOKENS if should_pause is None else PAUSE_CHUNK_TOKENS
    while done < end:
        if done > reused and should_pause is not None and should_pause():
            break
        stop = min(end, done + chunk)
        for m in media:
            lo, hi = max(m.start, done), min(m.end, stop)
            if lo < hi:
                avail = int(media_features(m, hi - m.start).shape[0])
                if avail < hi - m.start:  # paused inside the media item's encoding: read what is encoded
                    stop = max(done, m.start + avail)
                    break
        if stop == done:
            break
        emb = embed(ids[:, done:stop])
        for m in media:
            lo, hi = max(m.start, done), min(m.end, stop)
            if lo < hi:
                emb[0, lo - done : hi - done] = features[id(m)][lo - m.start : hi - m.start].to(emb.dtype)
        if on_stage is not None:
            on_stage("reading", {"done": done, "total": end, "reused": reused})
        try:
            model.model.language_model(
                inputs_embeds=emb, position_ids=positions[:, :, done:stop], cache=cache, use_cache=True
            )
        except BaseException:
            _truncate(cache, done)  # layers the interrupted chunk reached hold extra positions
            if store is not None and done > reused:
                store.put(scope, key[:done], cache)
            raise
        done = stop
    if store is not None and (keep or done < end) and done > reused:
        store.put(scope, key[:done], cache)
    return ReadState(cache=cache, key=key, done=done, reused=reused, rope_deltas=deltas, media=media)


def _frames(model: Any, m: Media) -> int:
    return int(m.grid[0]) * _temporal(model, m)


def _temporal(model: Any, m: Media) -> int:
    return int(getattr(model.model.visual.config, "temporal_patch_size", 2)) if m.modality == "video" else 1


def _truncate(cache: Any, n: int) -> None:
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.numel() and layer.keys.shape[-2] > n:
            layer.keys = layer.keys[..., :n, :]
            layer.values = layer.values[..., :n, :]


__all__ = [
    "CHUNK_TOKENS",
    "PAUSE_CHUNK_TOKENS",
    "VISION_CHUNK_T",
    "Media",
    "PromptCache",
    "ReadState",
    "media_marker",
    "media_of",
    "prompt_key",
    "read_prompt",
]
