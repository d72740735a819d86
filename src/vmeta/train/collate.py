"""Supervised samples for a video chat model: chat-template inputs with the prompt masked, padded in batches.

One sample = the model's chat template with a user turn (video + prompt) and an assistant turn (the label).
:func:`encode_sample` runs the processor on the prompt part (so the video pad token is expanded to one token
per merged patch, and pixel values are made) and appends the tokenised answer plus the template's end-of-turn
token. Labels are ``-100`` everywhere but the answer and its end token, so the loss teaches only the answer.

The length cutoff never cuts through vision tokens: a sample whose prompt (vision tokens included) does not
fit raises a :class:`UserError` naming the sample and the setting to change; an over-long answer is cut at
the end (and counted).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vmeta.errors import UserError

IGNORE_INDEX = -100
_SENTINEL = "\u2063VMETA_ANSWER\u2063"


def answer_suffix(processor: Any) -> tuple[str, str]:
    """(text the template puts after an assistant answer that is trained — the end-of-turn token —,
    trailing text that is not), read off the processor's own chat template."""
    cache = getattr(processor, "_vmeta_answer_suffix", None)
    if cache is not None:
        return cache
    msgs = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    prompt = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = processor.apply_chat_template(
        [*msgs, {"role": "assistant", "content": [{"type": "text", "text": _SENTINEL}]}], tokenize=False
    )
    if not full.startswith(prompt) or _SENTINEL not in full:
        raise UserError("the model's chat template does not render an assistant turn after the generation prompt.")
    rest = full[len(prompt) :]
    after = rest[rest.index(_SENTINEL) + len(_SENTINEL) :]
    trained = after.rstrip()
    result = (trained, after[len(trained) :])
    with contextlib.suppress(AttributeError):  # slotted processors: no cache
        processor._vmeta_answer_suffix = result
    return result


def prompt_messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]


@dataclass
class Encoded:
    features: dict[str, Any]  # 1-D input_ids/labels/attention_mask(/mm_token_type_ids) + vision tensors
    prompt_tokens: int
    vision_tokens: int
    answer_tokens: int
    truncated: bool


def encode_sample(
    processor: Any,
    video: Any,
    video_metadata: dict[str, Any] | None,
    prompt: str,
    answer: str,
    *,
    cutoff_len: int,
    sample_id: str = "?",
    resized: bool = True,
) -> Encoded:
    """One training sample. ``video``: uint8 frames (T,C,H,W) already sized by vmeta.video (``resized``)."""
    import torch

    tok = processor.tokenizer
    text = processor.apply_chat_template(prompt_messages(prompt), tokenize=False, add_generation_prompt=True)
    kwargs: dict[str, Any] = {"text": [text], "videos": [video], "return_tensors": "pt"}
    if video_metadata is not None:
        kwargs["video_metadata"] = [video_metadata]
    if resized:
        kwargs["videos_kwargs"] = {"do_resize": False}
    try:
        batch = processor(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"sample {sample_id}: the processor rejected its video ({exc}).") from None
    prompt_ids = batch["input_ids"][0]
    video_token_id = getattr(processor, "video_token_id", None)
    if video_token_id is None:
        video_token_id = tok.convert_tokens_to_ids(getattr(processor, "video_token", "<|video_pad|>"))
    n_vision = int((prompt_ids == video_token_id).sum())
    n_prompt = int(prompt_ids.shape[0])
    if n_prompt + 1 > cutoff_len:
        raise UserError(
            f"sample {sample_id}: its prompt is {n_prompt} tokens ({n_vision} of them vision tokens), longer than "
            f"data.cutoff_len={cutoff_len}, and vision tokens are never cut. Raise data.cutoff_len to at least "
            f"{n_prompt + 64} (e.g. --set data.cutoff_len={n_prompt + 64}), or lower the frame settings "
            "(--set data.frames.max_pixels=... / data.frames.fps=... / data.frames.max_frames=...)."
        )
    trained, untrained = answer_suffix(processor)
    ans_ids = tok(answer + trained, add_special_tokens=False)["input_ids"]
    tail_ids = tok(untrained, add_special_tokens=False)["input_ids"] if untrained else []
    room = cutoff_len - n_prompt
    truncated = len(ans_ids) + len(tail_ids) > room
    if truncated:
        ans_ids = ans_ids[:room]
        tail_ids = []
    ans = torch.tensor(ans_ids + tail_ids, dtype=prompt_ids.dtype)
    input_ids = torch.cat([prompt_ids, ans])
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[n_prompt : n_prompt + len(ans_ids)] = torch.tensor(ans_ids, dtype=prompt_ids.dtype)
    feats: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": torch.ones_like(input_ids),
    }
    if "mm_token_type_ids" in batch:
        mm = batch["mm_token_type_ids"][0]
        feats["mm_token_type_ids"] = torch.cat([mm, torch.zeros(len(ans), dtype=mm.dtype)])
    for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        if key in batch:
            feats[key] = batch[key]
    return Encoded(feats, n_prompt, n_vision, len(ans_ids), truncated)


class SupervisedCollator:
    """Right-pads token tensors (input ids with the pad id, labels with -100, masks with 0) and concatenates
    the vision tensors of the batch (Qwen2-VL takes all patches of a batch in one tensor)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(int(f["input_ids"].shape[0]) for f in features)
        pad_values = {
            "input_ids": self.pad_token_id,
            "labels": IGNORE_INDEX,
            "attention_mask": 0,
            "mm_token_type_ids": 0,
        }
        out: dict[str, Any] = {}
        for key, value in pad_values.items():
            if key not in features[0]:
                continue
            rows = []
            for f in features:
                t = f[key]
                rows.append(torch.cat([t, torch.full((longest - t.shape[0],), value, dtype=t.dtype)]))
            out[key] = torch.stack(rows)
        for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
            if key in features[0]:
                out[key] = torch.cat([f[key] for f in features])
        return out


__all__ = ["IGNORE_INDEX", "Encoded", "SupervisedCollator", "answer_suffix", "encode_sample", "prompt_messages"]
