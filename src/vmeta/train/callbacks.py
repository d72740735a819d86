"""Trainer callbacks: rich progress with ETA, metrics.jsonl + loss.csv + loss.png, evaluation on val with
generation metrics and the best checkpoint."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vmeta.jsonio import append_jsonl, iter_jsonl


def _is_main(state: Any) -> bool:
    return bool(getattr(state, "is_world_process_zero", True))


class RichProgressCallback(TrainerCallback):
    """One rich progress bar over optimizer steps with loss, lr and ETA (replaces the default tqdm bar)."""

    def __init__(self, description: str = "training", enabled: bool = True):
        self.description = description
        self.enabled = enabled
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if not (self.enabled and _is_main(state)):
            return
        from rich.progress import TextColumn

        from vmeta.progress import progress_bar

        self.progress = progress_bar(TextColumn("{task.fields[info]}"))
        self.progress.start()
        self.task = self.progress.add_task(
            self.description, total=state.max_steps, completed=state.global_step, info=""
        )

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.task, info=f"loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.2e}")

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class MetricsFileCallback(TrainerCallback):
    """Every log line -> metrics.jsonl; training loss -> loss.csv (step, epoch, loss, lr); loss.png at the end.

    On resume the files are cut back to the checkpoint's step, so they never hold a step twice.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.metrics = self.run_dir / "metrics.jsonl"
        self.loss_csv = self.run_dir / "loss.csv"
        self.started = time.time()

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_main(state):
            return
        self._truncate(state.global_step)
        if not self.loss_csv.exists():
            self.loss_csv.write_text("step,epoch,loss,learning_rate,grad_norm\n", encoding="utf-8")

    def _truncate(self, step: int) -> None:
        """Drop rows after ``step`` (left by an interrupted run that is now resumed from an earlier checkpoint)."""
        from vmeta.jsonio import write_jsonl

        if self.metrics.exists():
            rows = [r for r in iter_jsonl(self.metrics) if int(r.get("step", 0)) <= step]
            write_jsonl(self.metrics, rows)
        if self.loss_csv.exists():
            with self.loss_csv.open(encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
            keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step] if rows else []
            with self.loss_csv.open("w", encoding="utf-8", newline="") as fh:
                csv.writer(fh).writerows(keep)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not (_is_main(state) and logs):
            return
        row = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            **logs,
            "time": round(time.time() - self.started, 3),
        }
        append_jsonl(self.metrics, row)
        if "loss" in logs:
            with self.loss_csv.open("a", encoding="utf-8", newline="") as fh:
                csv.writer(fh).writerow(
                    [
                        state.global_step,
                        row["epoch"],
                        logs["loss"],
                        logs.get("learning_rate", ""),
                        logs.get("grad_norm", ""),
                    ]
                )

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if _is_main(state):
            plot_loss(self.loss_csv, self.run_dir / "loss.png", self.metrics)


def plot_loss(loss_csv: Path, out_png: Path, metrics: Path | None = None) -> Path | None:
    """Training loss per step (and eval metrics when present) as a PNG (matplotlib, Agg)."""
    if not loss_csv.exists():
        return None
    from vmeta.plotting import pyplot

    plt = pyplot()
    steps, losses = [], []
    with loss_csv.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                steps.append(int(row["step"]))
                losses.append(float(row["loss"]))
            except (TypeError, ValueError):
                continue
    evals: dict[str, list[tuple[int, float]]] = {}
    if metrics is not None and metrics.exists():
        for r in iter_jsonl(metrics):
            for k, v in r.items():
                if k.startswith("eval_") and k != "eval_samples" and isinstance(v, int | float) and math.isfinite(v):
                    evals.setdefault(k, []).append((int(r["step"]), float(v)))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, marker="o" if len(steps) < 40 else None, ms=3, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if evals:
        ax2 = ax.twinx()
        for k, pts in evals.items():
            if k in ("eval_runtime",):
                continue
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", ls="--", label=k)
        ax2.set_ylabel("eval score")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{out_png.parent.name}: training loss")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


class StopAfterStep(TrainerCallback):
    """Ask the trainer to stop (cleanly, with a checkpoint) after ``step`` steps — for tests and smoke runs."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


class GenerationEvalCallback(TrainerCallback):
    """Generate on the val split (vmeta.models.generate.generate_batch), score with vmeta.evaluate's metrics,
    log ``eval_<metric>``, and save the best model/adapter to ``best/`` by ``best_metric``."""

    def __init__(self, evaluator: Any, eval_steps: int | None, each_epoch: bool, on_best: Any):
        self.evaluator = evaluator
        self.eval_steps = eval_steps
        self.each_epoch = each_epoch
        self.on_best = on_best
        self.best: dict[str, Any] | None = None
        self._last_step = -1

    def _run(self, args, state, model) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
        if state.global_step == self._last_step:
            return None
        self._last_step = state.global_step
        scores = self.evaluator(model)
        logs = {f"eval_{k}": v for k, v in scores.items()}
        state.log_history.append({**logs, "step": state.global_step})
        return scores

    def _maybe(self, args, state, control, model, *, epoch_end: bool) -> None:  # type: ignore[no-untyped-def]
        due = (epoch_end and self.each_epoch) or (
            not epoch_end and self.eval_steps and state.global_step % self.eval_steps == 0
        )
        if not due or not _is_main(state) or model is None:
            return
        scores = self._run(args, state, model)
        if scores is None:
            return
        self.on_best(state, scores, self)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self._maybe(args, state, control, model, epoch_end=False)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self._maybe(args, state, control, model, epoch_end=True)


__all__ = ["GenerationEvalCallback", "MetricsFileCallback", "RichProgressCallback", "StopAfterStep", "plot_loss"]
