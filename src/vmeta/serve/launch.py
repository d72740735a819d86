"""Start `vmeta serve`: build the engine named on the command line and run uvicorn, in one process or several.

One process (the default) holds the engine: with `--engine local` that is the model, which must exist once.
`--workers N` runs N uvicorn worker processes on one port, for the web/API tier when the model lives elsewhere
(`--engine remote` forwarding to vLLM, SGLang or another `vmeta serve`; or `--engine echo`). Each Python
process serves about one core of requests (the GIL), so the history endpoints scale with the workers
(bench/serve_load.py (a)). Workers share everything through the database (sessions, login throttling,
conversations); the migration runs once, in the parent, before they start. What each worker keeps in memory
(the guest-start limiter, the remote model list cache) is per worker.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from vmeta.config import Settings
from vmeta.errors import UserError

# Where the parent hands the worker processes their settings and engine (JSON; the processes are spawned,
# so nothing else crosses). Same-user only: /proc/PID/environ is private to the owner.
SPEC_ENV = "VMETA_SERVE_WORKER_SPEC"
ENGINES = ("local", "echo", "remote")


@dataclass
class EngineSpec:
    """What the command line says about the engine; enough to build it again in a worker process."""

    kind: str = "local"
    models: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    remote_url: str | None = None
    remote_key: str | None = None
    runs_dir: str | None = None
    exports_dir: str | None = None
    device: str | None = None
    dtype: str | None = None
    runtime: str | None = None
    echo_delay_s: float | None = None  # echo only; None = the EchoEngine's default


def check_spec(spec: EngineSpec, workers: int = 1) -> None:
    """Refuse impossible combinations before anything is loaded."""
    if spec.kind not in ENGINES:
        raise UserError(f"--engine {spec.kind!r}: choose local, echo or remote.")
    if spec.kind == "remote" and not spec.remote_url:
        raise UserError("--engine remote needs --remote-url URL (an OpenAI-compatible server, e.g. vLLM's /v1).")
    if spec.kind == "local" and len(spec.models) > 1:
        raise UserError(
            "--engine local serves one base model (--model NAME once); fine-tuned variants come from "
            "--adapter NAME=PATH, runs/ and exports/."
        )
    if workers < 1:
        raise UserError(f"--workers {workers}: use 1 or more.")
    if workers > 1 and spec.kind == "local":
        raise UserError(
            f"--workers {workers} with --engine local would load the model {workers} times (once per process). "
            "Keep the model in one process (`vmeta serve --engine local --port 8001`, or vLLM) and run the "
            "web workers in front of it: `vmeta serve --engine remote --remote-url http://127.0.0.1:8001/v1 "
            f"--remote-key TOKEN --workers {workers}`."
        )


def build_engine(spec: EngineSpec, settings: Settings):
    """The inference engine the spec names (echo: no model; local: one base + adapters; remote: forward).
    The spec was checked by `check_spec` (the CLI, `run`) before any engine is built."""
    if spec.kind == "echo":
        from vmeta.serve.echo_engine import EchoEngine

        kw: dict[str, Any] = {} if spec.echo_delay_s is None else {"delay_s": spec.echo_delay_s}
        return EchoEngine(model_ids=tuple(spec.models) or ("echo", "echo:lora"), **kw)
    if spec.kind == "remote":
        from vmeta.serve.remote_engine import ForwardingEngine

        return ForwardingEngine(spec.remote_url, api_key=spec.remote_key, models=spec.models or None)  # type: ignore[arg-type]
    try:
        from vmeta.serve import model_catalog
        from vmeta.serve.engine import LocalEngine
    except ImportError as exc:
        raise UserError(
            f"the local engine needs the model extras ({exc.name} is missing): pip install -e '.[all]', "
            "or run with --engine echo."
        ) from None
    named = dict(model_catalog.parse_adapter_option(a) for a in spec.adapters)
    return LocalEngine(
        settings,
        spec.models[0] if spec.models else None,
        adapters=named,
        runs_dir=Path(spec.runs_dir) if spec.runs_dir else None,
        exports_dir=Path(spec.exports_dir) if spec.exports_dir else None,
        device=spec.device,
        dtype=spec.dtype,
        runtime=spec.runtime,
    )


def _settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings' explicitly set fields as JSON data, secrets included (model_dump would mask them)."""
    out = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return json.loads(json.dumps(out, default=str))


def worker_app():
    """uvicorn's app factory in each worker process: the parent's settings and engine spec, no migration."""
    from vmeta.serve.app import create_app

    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise RuntimeError(f"{SPEC_ENV} is not set: worker_app is started by vmeta serve --workers N")
    payload = json.loads(raw)
    settings = Settings(**payload["settings"])
    return create_app(settings, build_engine(EngineSpec(**payload["engine"]), settings), migrate=False)


def run(settings: Settings, spec: EngineSpec, host: str, port: int, workers: int = 1, engine=None) -> None:
    """Serve until interrupted. `engine`: an already built engine for the one-process case."""
    import uvicorn

    check_spec(spec, workers)
    uv: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        from vmeta.serve.app import create_app

        uvicorn.run(create_app(settings, engine or build_engine(spec, settings)), **uv)
        return
    from vmeta.serve import db as dbmod

    sa_engine = dbmod.make_engine(dbmod.database_url(Path(settings.data_dir), settings.database_url))
    try:
        dbmod.upgrade(sa_engine)  # once, here: N workers migrating at once would race
    finally:
        sa_engine.dispose()
    os.environ[SPEC_ENV] = json.dumps({"settings": _settings_payload(settings), "engine": asdict(spec)})
    uvicorn.run("vmeta.serve.launch:worker_app", factory=True, workers=workers, **uv)
