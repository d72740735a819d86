"""What a training run recorded for its model to see (prompt, frame settings, context), so `vmeta predict --run`
shows it the same; an explicit setting still overrides them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmeta import runs
from vmeta.errors import UserError


def run_inputs(run: Path | None) -> dict[str, Any]:
    """The prompt, frame settings and context a training run recorded in its run.json (what its model was trained
    to see); empty without --run or without them (a bare adapter folder, a merged export)."""
    if run is None:
        return {}
    manifest = runs.read_run(Path(run).expanduser())
    if manifest is None:
        return {}
    out: dict[str, Any] = {}
    if manifest.prompt and manifest.prompt.strip():
        out["prompt"] = manifest.prompt
    try:
        frames = manifest.frame_settings(runs.run_json(Path(run).expanduser()))
    except UserError as exc:
        raise UserError(f"{exc} Or predict with --model and --adapter instead of --run.") from None
    if frames is not None:
        out["frames"] = frames
    if manifest.context and manifest.context.get("kinds"):  # a run trained with context (on-screen text, speech)
        from vmeta.dataset.context import ContextSettings

        out["context"] = ContextSettings.from_dict(manifest.context)
    return out
