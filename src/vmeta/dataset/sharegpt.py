"""Export the dataset as LLaMA-Factory / ms-swift ShareGPT JSON (importing such files: `sharegpt_import`).

Output (``DATASET/export/sharegpt/`` by default)::

    train.json  val.json  test.json     # or all.json when the dataset has not been split yet
    dataset_info.json                   # entries vmeta_train / vmeta_val / vmeta_test (or vmeta_all)
    vmeta_index.json                    # per file, per sample: record id and category (not read by trainers)
    vmeta_export.json                   # how it was made: prompt + hash, dataset hash, split hash, counts

Each file is a JSON list of samples in the OpenAI-style multimodal ShareGPT layout that LLaMA-Factory's
``mllm_video_demo`` uses and ms-swift's standard ``messages`` format accepts::

    {"messages": [{"role": "user", "content": "<video>" + prompt},
                  {"role": "assistant", "content": label}],
     "videos": ["relative/or/absolute/path.mp4"]}

Using it
--------
* LLaMA-Factory: ``dataset_dir: DATASET/export/sharegpt`` and ``dataset: vmeta_train`` (``eval_dataset:
  vmeta_val``) in the training YAML. LLaMA-Factory joins each video path with ``media_dir``, which defaults to
  ``dataset_dir``; that is why relative paths are written relative to the export folder. (If you set
  ``media_dir`` elsewhere, export with ``--video-paths absolute``: an absolute path survives the join.)
* ms-swift: ``swift sft --dataset DATASET/export/sharegpt/train.json --val_dataset .../val.json``. ms-swift
  resolves relative media paths against the current working directory, so either run it from the export
  folder or export with ``--video-paths absolute``.

Checked against the real loaders (LLaMA-Factory 0.9.5: ``get_dataset_list`` reading this dataset_info.json and
``align_dataset`` converting every file, videos resolved through ``media_dir`` with the working directory
elsewhere; ms-swift 4.6.0: ``swift.dataset.load_dataset`` on each file, run from the export folder).

With ``context`` (``vmeta data export --context screen_text``) the user turn is ``"<video>" + block + "\n" +
prompt``, the block being ``vmeta.dataset.context.context_block`` of what the record stores (``画面文字：line1 /
line2``; nothing for a video without text), and vmeta_export.json records the context and the on-screen text
settings the records were read with. A record with nothing stored stops the export: run ``vmeta data
screen-text DATASET`` first.

Records probed as unreadable, rejected records (unless ``include_rejected``), empty labels and, once the
dataset is split, records in no split are left out and counted by reason in the report and vmeta_export.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmeta.dataset.context import STORED_KINDS, ContextSettings, context_block, record_context, with_context
from vmeta.dataset.prompts import DEFAULT_PROMPT, VIDEO_TOKEN, prompt_hash, user_turn
from vmeta.dataset.records import Dataset, Record, ReviewStatus, now_iso
from vmeta.dataset.split import SPLITS, split_hash
from vmeta.dataset.template import strip_note
from vmeta.errors import UserError
from vmeta.jsonio import read_json, write_json

DATASET_INFO = "dataset_info.json"
INDEX_FILE = "vmeta_index.json"
MANIFEST_FILE = "vmeta_export.json"
DEFAULT_NAME = "vmeta"
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def default_export_dir(dataset: Dataset) -> Path:
    return dataset.root / "export" / "sharegpt"


def dataset_info_entry(file_name: str) -> dict[str, Any]:
    """The LLaMA-Factory dataset_info.json entry for one exported file (same shape as mllm_video_demo)."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": dict(TAGS),
    }


def make_sample(prompt: str, label: str, video: str, context: str = "") -> dict[str, Any]:
    """One sample; `context` (a `context_block`) goes after the video token, before the instruction."""
    user = user_turn(with_context(prompt.removeprefix(VIDEO_TOKEN), context))
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": label}],
        "videos": [video],
    }


def _check_context(
    ctx: ContextSettings, records: list[Record], dataset: Dataset
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every exported record must hold each context kind (the export reads no video). Returns the context as
    the manifest records it (`ContextSettings.to_dict()`; its `screen_text` = the settings the texts were read
    with, when they were all read alike) and every distinct on-screen text setting the records were read with."""
    for kind in ctx.kinds:
        if kind not in STORED_KINDS:
            raise UserError(
                f"--context {kind}: a dataset does not store it and the export reads no video. Train with "
                f"data.context: [{kind}] instead: training and prediction read each video's {kind} (once, cached)."
            )
        lacking = [r.id for r in records if record_context(r).get(kind) is None]
        if lacking:
            shown = ", ".join(lacking[:5]) + (", …" if len(lacking) > 5 else "")
            raise UserError(
                f"--context {kind}: {len(lacking)} of the {len(records)} record(s) to export have no {kind.replace('_', '-')} "
                f"stored ({shown}); run `vmeta data screen-text {dataset.root}` first."
            )
    out = ctx.to_dict()
    read_with: list[dict[str, Any]] = []
    if "screen_text" in ctx.kinds:
        distinct = {json.dumps(r.screen_text.settings, sort_keys=True) for r in records if r.screen_text is not None}
        read_with = [json.loads(x) for x in sorted(distinct)]
        if len(read_with) == 1:  # what a later reading of a new video must use to match (predict, serve)
            from vmeta.video.screen_text import ScreenTextSettings

            defaults = ScreenTextSettings().to_dict()
            out["screen_text"] = {k: v for k, v in read_with[0].items() if defaults.get(k) != v}
    return out, read_with


@dataclass
class ExportReport:
    out_dir: Path
    files: dict[str, Path]  # split (or "all") -> file
    counts: dict[str, int]  # split (or "all") -> samples
    skipped: dict[str, list[str]]  # reason -> ids
    prompt_hash: str
    video_paths: str
    dataset_names: list[str] = field(default_factory=list)
    missing_videos: list[str] = field(default_factory=list)  # ids whose video file is not on disk (still exported)
    context: dict[str, Any] | None = None  # the context given in the prompt (ContextSettings + read settings)
    warnings: list[str] = field(default_factory=list)


def export_sharegpt(
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    prompt: str = DEFAULT_PROMPT,
    video_paths: Literal["relative", "absolute"] = "relative",
    strip_notes: bool = True,
    include_rejected: bool = False,
    name: str = DEFAULT_NAME,
    context: ContextSettings | None = None,
) -> ExportReport:
    """Write per-split ShareGPT files + dataset_info.json. See the module docstring for the layout.

    `context`: kinds put in each user turn before the instruction (`vmeta.dataset.context`), from what the
    records store; a record without it stops the export before anything is written."""
    dataset.require()
    if video_paths not in ("relative", "absolute"):
        raise UserError(f"--video-paths must be 'relative' or 'absolute', not {video_paths!r}.")
    if not (prompt or "").strip():
        raise UserError(
            "the prompt is empty; pass --prompt TEXT or --prompt-file FILE, or leave both out for the default."
        )
    out = Path(out_dir) if out_dir else default_export_dir(dataset)
    out_abs = out.resolve()
    records = dataset.load()
    split_mode = any(r.split in SPLITS for r in records)
    kept: list[tuple[str, Record, str, str]] = []  # (group, record, label, video path)
    skipped: dict[str, list[str]] = {}
    missing: list[str] = []

    def skip(reason: str, r: Record) -> None:
        skipped.setdefault(reason, []).append(r.id)

    for r in sorted(records, key=lambda r: r.id):
        if r.review.status == ReviewStatus.rejected and not include_rejected:
            skip("rejected", r)
            continue
        label = strip_note(r.label) if strip_notes else (r.label or "").strip()
        if not label:
            skip("empty_label", r)
            continue
        if r.video_meta.error and not r.video_meta.readable:  # probed and found broken: a trainer would crash
            skip("unreadable", r)
            continue
        if split_mode and r.split not in SPLITS:
            skip("not_in_a_split", r)
            continue
        video_abs = dataset.video_path(r).resolve()
        if not video_abs.exists():
            missing.append(r.id)
        path = str(video_abs) if video_paths == "absolute" else os.path.relpath(video_abs, out_abs)
        kept.append((r.split if split_mode else "all", r, label, path))

    ctx = context or ContextSettings()
    context_used, read_with = _check_context(ctx, [r for _, r, _, _ in kept], dataset) if ctx.enabled else (None, [])
    warnings = []
    if len(read_with) > 1:
        fps = sorted({s.get("fps") for s in read_with}, key=str)
        warnings.append(
            f"the on-screen text of these records was read with {len(read_with)} different "
            f"settings (fps {', '.join(map(str, fps))}); run `vmeta data screen-text {dataset.root} --fps F` to "
            "read them all with one."
        )
    groups: dict[str, list[tuple[Record, dict[str, Any]]]] = {s: [] for s in SPLITS} if split_mode else {"all": []}
    for key, r, label, path in kept:
        values = {k: v or "" for k, v in record_context(r).items() if k in ctx.kinds}
        block = context_block(values, max_chars=ctx.max_chars) if ctx.enabled else ""
        groups[key].append((r, make_sample(prompt, label, path, block)))

    out.mkdir(parents=True, exist_ok=True)

    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    index: dict[str, list[dict[str, str]]] = {}
    info_path = out / DATASET_INFO
    info = read_json(info_path) if info_path.exists() else {}
    if not isinstance(info, dict):
        raise UserError(
            f"{info_path}: expected a JSON object (LLaMA-Factory dataset_info.json); move it away or fix it."
        )
    previous = read_json(out / MANIFEST_FILE) if (out / MANIFEST_FILE).exists() else {}
    for key in previous.get("files", {}):  # drop our own entries/files from an earlier, differently-split export
        if key not in groups:
            info.pop(f"{name}_{key}", None)
            (out / f"{key}.json").unlink(missing_ok=True)
    names = []
    for key, items in groups.items():
        file = out / f"{key}.json"
        write_json(file, [sample for _, sample in items])
        files[key], counts[key] = file, len(items)
        index[file.name] = [{"id": r.id, "category": r.category, "video": s["videos"][0]} for r, s in items]
        info[f"{name}_{key}"] = dataset_info_entry(file.name)
        names.append(f"{name}_{key}")
    write_json(info_path, info)
    write_json(out / INDEX_FILE, index)
    ids = {k: [r.id for r, _ in v] for k, v in groups.items()}
    write_json(
        out / MANIFEST_FILE,
        {
            "created": now_iso(),
            "dataset": str(dataset.root.resolve()),
            "dataset_hash": dataset.content_hash(),
            "split_hash": split_hash(ids) if split_mode else None,
            "prompt": prompt,
            "prompt_hash": prompt_hash(prompt),
            "video_paths": video_paths,
            "strip_notes": strip_notes,
            "include_rejected": include_rejected,
            "files": {k: f.name for k, f in files.items()},
            "counts": counts,
            "dataset_names": names,
            "skipped": skipped,
            "missing_videos": missing,
            "context": context_used,
            "screen_text_settings": read_with,  # every setting the stored on-screen texts were read with
        },
    )
    return ExportReport(
        out_dir=out,
        files=files,
        counts=counts,
        skipped=skipped,
        prompt_hash=prompt_hash(prompt),
        video_paths=video_paths,
        dataset_names=names,
        missing_videos=missing,
        context=context_used,
        warnings=warnings,
    )
