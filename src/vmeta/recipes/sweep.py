"""`vmeta sweep GRID.yaml`: run a planned sweep (:mod:`vmeta.recipes.sweep_plan`) — each run trained (or
resumed, or skipped), then predicted and evaluated when the grid asks — and write its tables
(:mod:`vmeta.recipes.sweep_table`).

Runs go one after another in this process, or with ``gpus=[0, 1, ...]`` one per GPU in parallel (a worker process
per run with ``CUDA_VISIBLE_DEVICES``). Finished runs are skipped, unfinished ones resumed, evaluations already
written kept, so running the same command again continues a sweep. One failed run does not stop the others; it is
reported at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.jsonio import read_json, write_json
from vmeta.models.load import free_memory
from vmeta.recipes.sweep_plan import EvalSettings, PlannedRun, SweepSpec, plan_status, run_info, write_plan
from vmeta.recipes.sweep_table import write_tables
from vmeta.runs import FINISHED, RunManifest

JOBS_DIR = ".sweep"


TrainFn = Callable[[Any, bool], Path]  # (TrainConfig, resume) -> run folder


def _default_train(cfg: Any, resume: bool, settings: Any = None, progress: bool = False) -> Path:
    from vmeta.train.run import run_training

    return run_training(cfg, resume=resume, progress=progress, settings=settings)


@dataclass
class RunOutcome:
    name: str
    status: str  # finished | skipped | failed
    seconds: float = 0.0
    error: str | None = None
    evaluated: bool = False


def run_one(
    spec_base: Path | None,
    planned: PlannedRun,
    eval_settings: EvalSettings | None,
    *,
    train_fn: TrainFn | None = None,
    settings: Any = None,
    progress: bool = False,
) -> RunOutcome:
    """Train (or resume, or skip) one run, then evaluate it when asked. Errors are returned, not raised."""
    from vmeta.train.config import load_config

    t0 = time.perf_counter()
    status = plan_status(planned.path)
    try:
        if status != FINISHED:
            if status == "restart":
                _clear_stub(planned.path)
            cfg = load_config(spec_base, planned.overrides)
            if train_fn is not None:
                train_fn(cfg, status == "resume")
            else:
                _default_train(cfg, status == "resume", settings, progress)
            info = run_info(planned.path)
            if info is None or not info.is_finished:
                raise RuntimeError(f"training ended with status {info.status if info else None!r}")
        evaluated = False
        if eval_settings is not None:
            try:
                evaluated = evaluate_run(planned.path, eval_settings, settings=settings)
            except Exception as exc:
                raise RuntimeError(f"trained, but the evaluation failed: {type(exc).__name__}: {exc}") from exc
        return RunOutcome(planned.name, "skipped" if status == FINISHED else "finished",
                          time.perf_counter() - t0, evaluated=evaluated)  # fmt: skip
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed run does not stop the sweep; it is reported at the end
        return RunOutcome(planned.name, "failed", time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")


def _clear_stub(path: Path) -> None:
    """A folder without run.json: a run interrupted before it wrote anything worth keeping (only logs/config)."""
    leftovers = {p.name for p in path.iterdir()}
    if leftovers <= {"logs", "config.yaml", "checkpoints"}:
        shutil.rmtree(path)
    else:
        raise UserError(
            f"{path} exists but holds no run.json and other files ({', '.join(sorted(leftovers))}); "
            "move it away or delete it, then run the sweep again."
        )


def evaluate_run(run: Path, ev: EvalSettings, *, settings: Any = None) -> bool:
    """predict + eval on ``ev.split`` into run/eval/ (resumable; skipped when results.json exists)."""
    out = run / "eval"
    if (out / "results.json").is_file():
        return True
    try:
        from vmeta.evaluate.report import EvalConfig, run_eval
        from vmeta.models.generate import GenerationSettings
        from vmeta.predict import PredictConfig, predict
    except ImportError as exc:  # pragma: no cover - the modules ship together
        raise UserError(f"evaluation needs vmeta's predict and evaluate modules ({exc}).") from None
    import yaml as _yaml

    cfg = _yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    info = run_info(run) or RunManifest()
    data = (info.dataset.path if info.dataset else None) or (cfg.get("data") or {}).get("path")
    if not data:
        raise UserError(f"{run / 'config.yaml'}: no data.path, so the {ev.split} split cannot be predicted.")
    # Predict with what the model saw in training: the run's frame settings and prompt.
    frames = info.frame_settings(run / "run.json")
    prompt = info.prompt or (cfg.get("data") or {}).get("prompt")
    out.mkdir(parents=True, exist_ok=True)
    preds = out / "predictions.jsonl"
    pc = PredictConfig(
        data=Path(data),
        out=preds,
        run=run,
        split=ev.split,
        limit=ev.limit,
        batch_size=ev.batch_size,
        generation=GenerationSettings(max_new_tokens=ev.max_new_tokens),
        frames=frames,
        device=ev.device,
        prompt=prompt,
    )
    summary = predict(pc, settings=settings)
    if summary.errors:
        raise RuntimeError(f"{summary.errors} prediction(s) failed in {preds} (ids {summary.error_ids[:5]})")
    run_eval(preds, out, EvalConfig(metrics=ev.metrics, bert=ev.bert_config(settings), n_boot=ev.bootstrap))
    from vmeta.models.load import clear_model_cache

    clear_model_cache()
    return True


def _job_file(spec: SweepSpec, planned: PlannedRun) -> Path:
    path = spec.out_dir / JOBS_DIR / f"{planned.name}.json"
    write_json(
        path,
        {
            "base": str(spec.base) if spec.base else None,
            "name": planned.name,
            "path": str(planned.path),
            "overrides": planned.overrides,
            "varied": planned.varied,
            "eval": spec.eval.__dict__ if spec.eval else None,
        },
    )
    return path


def worker_command(job: Path) -> list[str]:
    """The process that runs one job on one GPU (the same code as the sequential path)."""
    return [sys.executable, "-m", "vmeta.recipes.sweep", str(job)]


def _run_parallel(
    spec: SweepSpec, todo: list[PlannedRun], gpus: list[str], log: Callable[[str], None]
) -> list[RunOutcome]:
    """One worker process per GPU slot; each slot takes the next run when its previous one ends."""
    logs = spec.out_dir / JOBS_DIR
    queue = list(todo)
    active: dict[str, tuple[subprocess.Popen, PlannedRun, float, Any]] = {}
    outcomes: list[RunOutcome] = []
    try:
        while queue or active:
            for gpu in gpus:
                if gpu not in active and queue:
                    planned = queue.pop(0)
                    job = _job_file(spec, planned)
                    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
                    fh = open(logs / f"{planned.name}.log", "ab")  # noqa: SIM115 - closed when the process ends
                    proc = subprocess.Popen(worker_command(job), env=env, stdout=fh, stderr=subprocess.STDOUT)
                    active[gpu] = (proc, planned, time.perf_counter(), fh)
                    log(f"[gpu {gpu}] started {planned.name}")
            time.sleep(0.2)
            for gpu, (proc, planned, t0, fh) in list(active.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del active[gpu]
                result_path = logs / f"{planned.name}.result.json"
                if result_path.is_file():
                    r = read_json(result_path)
                    outcome = RunOutcome(**r)
                    result_path.unlink()
                else:
                    outcome = RunOutcome(planned.name, "failed", time.perf_counter() - t0,
                                         error=f"worker exited with code {proc.returncode}; see {logs / (planned.name + '.log')}")  # fmt: skip
                outcomes.append(outcome)
                log(f"[gpu {gpu}] {outcome.status} {planned.name}" + (f": {outcome.error}" if outcome.error else ""))
    except BaseException:
        for proc, *_ in active.values():
            proc.terminate()
        for proc, _, _, fh in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
        raise
    return outcomes


@dataclass
class SweepResult:
    spec: SweepSpec
    outcomes: list[RunOutcome]
    table_md: Path | None
    table_csv: Path | None

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_sweep(
    spec: SweepSpec,
    *,
    gpus: list[str] | None = None,
    train_fn: TrainFn | None = None,
    settings: Any = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run every planned run (skipping finished ones), evaluate if asked, then write the comparison table."""
    say = log or (lambda _m: None)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    (spec.out_dir / JOBS_DIR).mkdir(exist_ok=True)
    write_plan(spec)
    outcomes: list[RunOutcome] = []
    if gpus:
        if train_fn is not None:
            raise ValueError("train_fn only applies to sequential sweeps (the GPU workers run vmeta's training)")
        outcomes = _run_parallel(spec, spec.runs, gpus, say)
    else:
        for i, planned in enumerate(spec.runs, 1):
            say(f"[{i}/{len(spec.runs)}] {planned.name} ({plan_status(planned.path)})")
            outcome = run_one(spec.base, planned, spec.eval, train_fn=train_fn, settings=settings, progress=progress)
            outcomes.append(outcome)
            say(
                f"[{i}/{len(spec.runs)}] {outcome.status} {planned.name}"
                + (f": {outcome.error}" if outcome.error else "")
            )
            free_memory()
    order = {r.name: i for i, r in enumerate(spec.runs)}
    outcomes.sort(key=lambda o: order.get(o.name, 0))
    md, csv_path = write_tables(spec, outcomes)
    return SweepResult(spec, outcomes, md, csv_path)


# ---------------------------------------------------------------------------------------------------------------
# Worker entry point: python -m vmeta.recipes.sweep JOB.json (one run on the GPU CUDA_VISIBLE_DEVICES names)


def _worker(job_path: str) -> int:
    job = read_json(job_path)
    planned = PlannedRun(job["name"], Path(job["path"]), job["overrides"], job["varied"], [])
    ev = EvalSettings(**job["eval"]) if job.get("eval") else None
    outcome = run_one(Path(job["base"]) if job.get("base") else None, planned, ev)
    write_json(Path(job_path).with_name(f"{planned.name}.result.json"), outcome.__dict__)
    if outcome.error:
        print(outcome.error, file=sys.stderr)
    return 0 if outcome.status != "failed" else 1


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    raise SystemExit(_worker(sys.argv[1]))


__all__ = ["RunOutcome", "SweepResult", "evaluate_run", "run_one", "run_sweep", "worker_command"]
