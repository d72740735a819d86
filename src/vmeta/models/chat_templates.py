"""Chat templates we ship ourselves (for models built locally, whose tokenizer files come without one).

``QWEN2_VL_CHAT_TEMPLATE`` is the template of Qwen/Qwen2-VL-2B-Instruct (its ``chat_template.json``),
split into pieces only for reading; the joined string is identical. It renders

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n            (when no system turn comes first)
    <|im_start|>user\\n<|vision_start|><|video_pad|><|vision_end|>TEXT<|im_end|>\\n
    <|im_start|>assistant\\n                                                 (add_generation_prompt)

Content parts: ``{"type": "text", "text": ...}``, ``{"type": "image", ...}`` (or any part with an ``image`` /
``image_url`` key) and ``{"type": "video", ...}`` (or a ``video`` key); ``add_vision_id=True`` prefixes
"Picture N: " / "Video N: ". The processor later expands each ``<|video_pad|>`` to one token per merged
patch of that video.
"""

from __future__ import annotations

QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The special tokens the template and the Qwen2-VL model config rely on.
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
