"""Commands: `vmeta data split`, `vmeta data export`, `vmeta data import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app, err_console
from vmeta.dataset.context import DEFAULT_MAX_CHARS
from vmeta.dataset.split import DEFAULT_SEED, DEFAULT_TEST_PER_CATEGORY, DEFAULT_VAL_FRACTION, SPLITS
from vmeta.errors import UserError

DatasetArg = Annotated[Path, typer.Argument(help="Dataset folder (holds records.jsonl).", show_default=False)]


@data_app.command("split")
def split_cmd(
    dataset: DatasetArg,
    test_per_category: Annotated[
        int | None,
        typer.Option(
            "--test-per-category",
            help=f"Test items per category (default: the previous split's, else {DEFAULT_TEST_PER_CATEGORY} as in the thesis).",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            help="Validation share of the non-test items, apportioned by largest remainder "
            f"(default: the previous split's, else {DEFAULT_VAL_FRACTION}: the thesis' 679/119/100 on 898 videos).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help=f"Seed of the per-category order (default: the previous split's, else {DEFAULT_SEED}).",
            show_default=False,
        ),
    ] = None,
    reviewed_only: Annotated[
        bool, typer.Option("--reviewed-only", help="Only records a person accepted or edited.")
    ] = False,
    reshuffle: Annotated[
        bool, typer.Option("--reshuffle", help="Recompute every assignment from the seed instead of keeping them.")
    ] = False,
    allow_test_to_train: Annotated[
        bool,
        typer.Option("--allow-test-to-train", help="With --reshuffle: accept moving test items into train/val."),
    ] = False,
) -> None:
    """Stratified, seeded train/val/test split (thesis defaults: 20 test per category, 679/119/100)."""
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.split import load_splits, split_dataset

    ds = Dataset(dataset).require()
    previous = load_splits(ds) or {}
    prev_params = previous.get("parameters") or {}
    reused = []

    def pick(given, key, default, source):
        if given is not None:
            return given
        if source.get(key) is not None:
            reused.append(f"{key}={source[key]}")
            return source[key]
        return default

    seed = pick(seed, "seed", DEFAULT_SEED, previous)
    test_per_category = pick(test_per_category, "test_per_category", DEFAULT_TEST_PER_CATEGORY, prev_params)
    val_fraction = pick(val_fraction, "val_fraction", DEFAULT_VAL_FRACTION, prev_params)
    if reused:
        console.print(f"using the previous split's {', '.join(reused)} (splits.json); pass the options to change them")
    report = split_dataset(
        ds,
        test_per_category=test_per_category,
        val_fraction=val_fraction,
        seed=seed,
        reviewed_only=reviewed_only,
        reshuffle=reshuffle,
        allow_test_to_train=allow_test_to_train,
    )
    table = Table(title=f"split of {dataset} (seed {seed})")
    table.add_column("category")
    for s in SPLITS:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for c in report.categories:
        row = [report.counts[s].get(c, 0) for s in SPLITS]
        table.add_row(c, *map(str, row), str(sum(row)))
    totals = report.totals
    table.add_row("[bold]total", *(f"[bold]{totals[s]}" for s in SPLITS), f"[bold]{sum(totals.values())}")
    console.print(table)
    excluded = {k: v for k, v in report.excluded.items() if v}
    if excluded:
        console.print("excluded: " + ", ".join(f"{k} {len(v)}" for k, v in excluded.items()))
    console.print(f"kept {report.kept} earlier assignments, assigned {report.assigned}; hash {report.hash}")
    if report.dropped:
        console.print(
            f"[yellow]{len(report.dropped)} record(s) lost their split (now excluded):[/] "
            + ", ".join(d["id"] for d in report.dropped[:20])
        )
    if report.moved:
        console.print(f"{len(report.moved)} record(s) changed split (listed in splits.json under 'moved')")
    if report.test_to_train:
        console.print(f"[yellow]moved out of test ({len(report.test_to_train)}):[/] " + ", ".join(report.test_to_train))
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    console.print(f"wrote {report.path}")


@data_app.command("export")
def export_cmd(
    dataset: DatasetArg,
    format: Annotated[str, typer.Option("--format", help="Output format (sharegpt).")] = "sharegpt",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default DATASET/export/sharegpt).")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="User instruction (default: thesis §4.2).")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the user instruction from this UTF-8 file.")
    ] = None,
    video_paths: Annotated[
        str, typer.Option("--video-paths", help="relative (to the export folder) or absolute.")
    ] = "relative",
    keep_notes: Annotated[
        bool, typer.Option("--keep-notes", help="Keep appended LLM notes such as （说明：…） in labels.")
    ] = False,
    include_rejected: Annotated[bool, typer.Option("--include-rejected", help="Also export rejected records.")] = False,
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context",
            help="Put this context before the instruction in each prompt: screen_text (the on-screen text the "
            "records store, `vmeta data screen-text`). Repeatable or comma-separated.",
            show_default=False,
        ),
    ] = None,
    context_max_chars: Annotated[
        int, typer.Option("--context-max-chars", help="Longest text of one context kind in the prompt (characters).")
    ] = DEFAULT_MAX_CHARS,
) -> None:
    """ShareGPT JSON per split + dataset_info.json (LLaMA-Factory / ms-swift load it unchanged)."""
    from vmeta.dataset.context import ContextSettings, check_kinds
    from vmeta.dataset.prompts import DEFAULT_PROMPT, prompt_from_options
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.sharegpt import export_sharegpt

    kinds = check_kinds([k.strip() for c in context or [] for k in c.split(",") if k.strip()], "--context")
    ctx = ContextSettings(kinds=tuple(dict.fromkeys(kinds)), max_chars=context_max_chars)

    if format.lower() != "sharegpt":
        raise UserError(f"--format {format!r} is not supported; use --format sharegpt.")
    text = prompt_from_options(prompt, prompt_file)
    if text is None:
        text = DEFAULT_PROMPT
    report = export_sharegpt(
        Dataset(dataset),
        out,
        prompt=text,
        video_paths=video_paths,  # type: ignore[arg-type]
        strip_notes=not keep_notes,
        include_rejected=include_rejected,
        context=ctx,
    )
    table = Table(title=f"ShareGPT export -> {report.out_dir}")
    table.add_column("dataset name")
    table.add_column("file")
    table.add_column("samples", justify="right")
    for (key, file), name in zip(report.files.items(), report.dataset_names, strict=True):
        table.add_row(name, file.name, str(report.counts[key]))
    console.print(table)
    for reason, ids in report.skipped.items():
        console.print(f"skipped {len(ids)} ({reason})")
    if report.missing_videos:
        err_console.print(
            f"[yellow]warning:[/] {len(report.missing_videos)} video file(s) not found on disk: "
            + ", ".join(report.missing_videos[:10])
        )
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    given = f"; context {', '.join(report.context['kinds'])}" if report.context else ""
    console.print(f"prompt hash {report.prompt_hash}; video paths {report.video_paths}{given}")
    console.print(
        f"LLaMA-Factory: dataset_dir: {report.out_dir}  dataset: {report.dataset_names[0]}"
        + (f"  eval_dataset: {report.dataset_names[1]}" if len(report.dataset_names) > 1 else "")
    )


@data_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A ShareGPT .json/.jsonl file (one video per sample).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to add the samples to (created if new).")],
    category: Annotated[
        str | None, typer.Option("--category", help="Category for every sample (else taken from the path).")
    ] = None,
    category_from: Annotated[
        str, typer.Option("--category-from", help="path (folder or file-name prefix) or field ('category' key).")
    ] = "path",
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not open the videos to read their metadata.")
    ] = False,
) -> None:
    """Read a ShareGPT file back into records (assistant turn = label; reviewed labels are never overwritten)."""
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.sharegpt_import import import_sharegpt

    report = import_sharegpt(
        file,
        Dataset(out),
        category=category,
        category_from=category_from,
        probe_videos=not no_probe,  # type: ignore[arg-type]
    )
    table = Table(title=f"import {file} -> {out}")
    table.add_column("result")
    table.add_column("records", justify="right")
    for k, v in report.counts.items():
        table.add_row(k, str(v))
    console.print(table)
    for s in report.skipped[:20]:
        err_console.print(f"[yellow]skipped[/] {file} sample {s['row']}: {s['reason']}")
    if report.conflicts:
        err_console.print(
            f"[yellow]{len(report.conflicts)} reviewed label(s) differ from the file and were kept[/] "
            "(flag import_differs): " + ", ".join(report.conflicts[:20])
        )
