"""A training run's folder before and while it trains: refusing to overwrite a finished run, resuming an
unfinished one from its last complete checkpoint (only with the config it was started with), and the library
versions the manifest records. The manifest itself (run.json) is read and written only by `vmeta.runs`."""

from __future__ import annotations

import platform
import re
import shutil
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.runs import RunManifest, read_run, update_run
from vmeta.train.config import TrainConfig
from vmeta.train.processes import is_main_process, wait_for_everyone

# Settings that may differ when a run is resumed (its length, how often it saves/evaluates).
RESUMABLE_CHANGES = re.compile(r"^training\.(epochs|max_steps|save_steps|save_total_limit|eval_.*|logging_steps)$")
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "galore-torch", "vmeta", "numpy", "av")


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config (frame settings kept whole), to compare a resumed run's config key by key."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "frames":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def info(self) -> RunManifest | None:
        return read_run(self.path)

    def update(self, **fields: Any) -> RunManifest:
        return update_run(self.path, **fields)

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        cks = [
            (int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
        ]
        complete = [(s, p) for s, p in cks if (p / "trainer_state.json").is_file()]
        return max(complete)[1] if complete else None

    def prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
        """Check the folder against --resume / --overwrite; returns the checkpoint to resume from (or None).

        With several processes only the main one checks and changes the folder; the others wait until it is
        done (so none sees a folder half prepared, or the main process's fresh run.json) and then only look up
        the checkpoint to resume from. A refusal ends the main process, and the launcher ends the others."""
        if not is_main_process():
            wait_for_everyone()
            return self.latest_checkpoint() if resume else None
        checkpoint = self._prepare(cfg, resume=resume, overwrite=overwrite)
        wait_for_everyone()
        return checkpoint

    def _prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"{p} is a file; choose another --out folder.")
        exists = p.is_dir() and any(p.iterdir())
        if not exists:
            if resume:
                raise UserError(f"--resume: {p} holds no run to resume; leave out --resume to start it.")
            return None
        info = self.info()
        if overwrite:
            if not info and not (p / "config.yaml").exists():
                raise UserError(
                    f"{p} is not empty and is not a vmeta run folder; --overwrite only replaces run folders. "
                    "Choose another --out."
                )
            shutil.rmtree(p)
            return None
        if not info:
            raise UserError(f"{p} is not empty and is not a vmeta run folder; choose another --out.")
        status = info.status
        if info.is_finished:
            raise UserError(f"{p} holds a finished run; pass --overwrite to replace it, or choose another --out.")
        if not resume:
            raise UserError(
                f"{p} holds an unfinished run (status {status}); pass --resume to continue it from its last "
                "checkpoint, or --overwrite to start over."
            )
        self._check_same_config(cfg)
        ck = self.latest_checkpoint()
        if ck is None:
            # Interrupted before the first checkpoint: start over in place.
            for child in p.iterdir():
                if child.name not in ("logs",):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        return ck

    def _check_same_config(self, cfg: TrainConfig) -> None:
        import yaml

        saved_path = self.path / "config.yaml"
        if not saved_path.is_file():
            return
        saved = _flatten(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
        new = _flatten(cfg.to_yaml_dict())
        diff = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k) and not RESUMABLE_CHANGES.match(k))
        if diff:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])
            raise UserError(
                f"--resume: the config differs from the one {self.path} was started with ({shown}); resume with "
                "the same settings (only the run length and save/eval intervals may change), or use --overwrite."
            )


__all__ = ["RunFolder", "library_versions"]
