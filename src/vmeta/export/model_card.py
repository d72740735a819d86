"""The export's README.md (a Hugging Face model card): what the model is, how it was trained, its scores, and how
to load and serve it — written from the run folder and the export manifest, so it never disagrees with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmeta import runs
from vmeta.export.source import RunInfo


def eval_results(info: RunInfo) -> dict[str, Any] | None:
    """The run's evaluation (eval/results.json, or results.json beside run.json), if it has one."""
    for p in (info.path / "eval" / "results.json", info.path / "results.json"):
        if p.is_file():
            data = runs.read_json_object(p)
            return data if "metrics" in data else None
    return None


_CARD_METRICS = {"bertscore": "BERTScore F1", "bleu4": "BLEU-4", "rougeL": "ROUGE-L"}


def _fmt_metric(entry: Any) -> str:
    from vmeta.evaluate.report import fmt_ci

    if isinstance(entry, int | float):
        return f"{entry:.2f}"
    return fmt_ci(entry if isinstance(entry, dict) else None)


def _settings_rows(info: RunInfo) -> list[tuple[str, Any]]:
    """The training settings worth a line in the card (the method's own group only)."""
    keys: list[tuple[str, tuple[str, ...]]] = [
        ("epochs", ("training.epochs",)),
        ("max steps", ("training.max_steps",)),
        ("learning rate", ("training.lr", "training.learning_rate")),
        ("batch size per device", ("training.batch_size",)),
        ("gradient accumulation", ("training.grad_accum",)),
        ("scheduler", ("training.scheduler",)),
        ("precision", ("training.precision",)),
        ("seed", ("training.seed",)),
    ]
    if info.is_adapter:
        keys += [
            ("LoRA rank", ("lora.r",)),
            ("LoRA alpha", ("lora.alpha",)),
            ("LoRA dropout", ("lora.dropout",)),
            ("LoRA targets", ("lora.target_modules",)),
        ]
        if info.method == "loraplus":
            keys.append(("LoRA+ learning-rate ratio", ("lora.loraplus_lr_ratio",)))
    elif info.method == "freeze":
        keys += [
            ("trainable decoder layers", ("freeze.trainable_layers",)),
            ("extra modules", ("freeze.extra_modules",)),
        ]
    elif info.method == "galore":
        keys += [("GaLore rank", ("galore.rank",)), ("GaLore update interval", ("galore.update_proj_gap",)),
                 ("GaLore scale", ("galore.scale",))]  # fmt: skip
    keys += [("vision tower trained", ("train_vision_tower",)), ("merger trained", ("train_merger",))]
    rows = []
    for label, ks in keys:
        v = next((x for k in ks if (x := runs.lookup(info.config, k)) is not None), None)
        if v is not None:
            rows.append((label, v))
    for label, key in (("trainable parameters", "trainable_parameters"), ("steps", "global_step"),
                       ("samples/s", "samples_per_s")):  # fmt: skip
        v = info.manifest.get(key)
        if v is not None:
            rows.append((label, f"{v:,}" if isinstance(v, int) else v))
    return rows


def model_card(info: RunInfo, manifest: dict[str, Any], results: dict[str, Any] | None, out: Path) -> str:
    """README.md of the export: what it is, how it was trained, its scores, how to load and serve it."""
    base = manifest["base_model"]
    tiny = bool(manifest.get("not_a_real_model"))
    hub_base = manifest.get("base_model_hub_id") or (
        base if isinstance(base, str) and "/" in base and not Path(base).exists() else None
    )
    front = ["---", "library_name: transformers", "pipeline_tag: video-text-to-text"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "  - vmeta", "  - video-metaphor", f"  - {info.method}", "---", ""]
    name = out.name
    lines = [*front, f"# {name}", ""]
    if manifest.get("demo_model"):
        lines += [
            "> **Demo test model**: exported from a run on vmeta's demo Qwen2-VL (the tiny architecture trained on "
            "a few sample labels, which it recites). Not a real model.",
            "",
        ]
    elif tiny:
        lines += ["> **Random-weight test model**: exported from a run on vmeta's tiny Qwen2-VL. Not a real model.", ""]
    lines += [
        f"A video LLM fine-tuned with **{info.method}** by vmeta to explain the metaphor of a "
        "short video (thesis template: content, core concept, origin, reason, emotion), merged into one "
        "self-contained transformers checkpoint.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | `{base}`" + (f" ({hub_base})" if hub_base and hub_base != base else "") + " |",
        f"| fine-tuning method | {info.method} ({'adapter merged into the base' if manifest['merged_from'] == 'adapter' else 'full weights'}) |",
        f"| training run | `{info.name}` |",
        f"| dataset hash | `{manifest.get('dataset_hash') or 'not recorded'}` |",
        f"| prompt hash | `{manifest.get('prompt_hash') or 'not recorded'}` |",
        f"| dtype | {manifest['dtype']} |",
        f"| weights | {len(manifest['shards']['files'])} safetensors file(s), each ≤ {manifest['shard_size']} |",
        f"| exported | {manifest['exported_at']} with transformers {manifest['versions'].get('transformers')}, peft {manifest['versions'].get('peft')} |",
        "",
    ]
    rows = _settings_rows(info)
    if rows:
        lines += ["## Training settings", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | `{v}` |" for k, v in rows]
        lines.append("")
    if results:
        metrics = results.get("metrics", {})
        cols = [c for c in _CARD_METRICS if c in metrics]
        if cols:
            split = results.get("split") or "test"
            lines += [f"## Evaluation ({split} split)", ""]
            lines.append("| " + " | ".join(_CARD_METRICS[c] for c in cols) + " |")
            lines.append("|" + "|".join("---:" for _ in cols) + "|")
            lines.append("| " + " | ".join(_fmt_metric(metrics[c]) for c in cols) + " |")
            lines += ["", "Mean over the samples ×100 [95% bootstrap CI], computed by `vmeta eval`.", ""]
    else:
        lines += ["## Evaluation", "", "No evaluation was recorded in the run folder (`eval/results.json`).", ""]
    fr = manifest.get("frames")
    if fr:
        lines += ["## Video frames", "", f"Frames were sampled with `{json.dumps(fr, ensure_ascii=False)}`; use the "
                  "same settings at inference.", ""]  # fmt: skip
    path = str(out)
    lines += [
        "## Use it",
        "",
        "With transformers:",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{path}", dtype="auto", device_map="auto")',
        f'processor = AutoProcessor.from_pretrained("{path}")',
        'messages = [{"role": "user", "content": [{"type": "video", "path": "clip.mp4"},',
        '                                         {"type": "text", "text": "请解释这个视频中的隐喻。"}]}]',
        "inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,",
        '                                       return_dict=True, return_tensors="pt").to(model.device)',
        "out = model.generate(**inputs, max_new_tokens=256)",
        'print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])',
        "```",
        "",
        "With vmeta (CLI and web app):",
        "",
        "```bash",
        f"vmeta predict --model {path} --data dataset --split test --out predictions.jsonl",
        f"vmeta serve --model {path}",
        "```",
        "",
        "With vLLM (OpenAI-compatible server; `--tensor-parallel-size N` splits the model over N GPUs), with the "
        "vmeta web app in front of it:",
        "",
        "```bash",
        f"vllm serve {path} --served-model-name {name} --port 8001 --limit-mm-per-prompt '{{\"video\": 1}}'",
        f"vmeta serve --engine remote --remote-url http://127.0.0.1:8001/v1 --model {name}",
        "```",
        "",
    ]
    return "\n".join(lines)


__all__ = ["eval_results", "model_card"]
