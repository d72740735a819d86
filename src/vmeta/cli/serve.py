"""`vmeta serve`: the chat web app + OpenAI-compatible API; `vmeta serve db|admin|token ...` for its database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmeta.cli.apps import app, console, err_console
from vmeta.errors import UserError

serve_app = typer.Typer(
    help="Run the chat assistant (web page + OpenAI-compatible API); manage its database and accounts.",
    invoke_without_command=True,
)
db_app = typer.Typer(
    help="The serve database (SQLite by default, PostgreSQL via VMETA_DATABASE_URL).", no_args_is_help=True
)
admin_app = typer.Typer(help="Administrator accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for the OpenAI-compatible API.", no_args_is_help=True)
serve_app.add_typer(db_app, name="db")
serve_app.add_typer(admin_app, name="admin")
serve_app.add_typer(token_app, name="token")
app.add_typer(serve_app, name="serve")


@serve_app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; keep 127.0.0.1 unless you mean to share it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Base model (registry name, hub id or folder); with --engine echo/remote: model ids to list.",
        ),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option("--adapter", help="NAME=PATH of a fine-tuned adapter (run folder or adapter folder); repeatable."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (the model in this process), echo (no model, for demos/tests), remote (forward to an OpenAI-compatible server).",
        ),
    ] = "local",
    remote_url: Annotated[
        str | None,
        typer.Option("--remote-url", help="With --engine remote: the server's base URL, e.g. http://gpu:8000/v1."),
    ] = None,
    remote_key: Annotated[str | None, typer.Option("--remote-key", help="With --engine remote: its API key.")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option("--runs-dir", help="Folder of training runs whose adapters are listed.")
    ] = None,
    exports_dir: Annotated[
        Path | None, typer.Option("--exports-dir", help="Folder of merged exports that are listed.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: automatic).")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="float32, bfloat16 or float16 (default: bfloat16 on GPUs and on CPUs that compute it natively, "
            "AVX512-BF16 / AMX; float32 on other CPUs).",
        ),
    ] = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="On a CPU: int8 (linear layers with int8 weights, PyTorch's int8 operators), openvino (the same "
            "in OpenVINO), torch (full weights), or auto (default: VMETA_CPU_RUNTIME; auto = int8 on CPUs).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Web worker processes (one port). More than 1 needs --engine remote or echo: the model lives in one process.",
        ),
    ] = 1,
) -> None:
    """Start the chat assistant: the page at http://HOST:PORT/, the API at /api and /v1 (OpenAPI at /docs).

    Settings (VMETA_* variables or .env): VMETA_DATA_DIR (SQLite DB and uploads), VMETA_DATABASE_URL
    (PostgreSQL), VMETA_UPLOAD_MAX_BYTES, VMETA_GUEST_TTL_S, VMETA_REGISTRATION_OPEN, VMETA_ADMIN_EMAILS,
    VMETA_API_ALLOW_ANONYMOUS, VMETA_ALLOW_REMOTE_URLS, VMETA_COOKIE_SECURE … (see docs/serve-api.md).
    """
    if ctx.invoked_subcommand is not None:
        return
    from vmeta.config import get_settings
    from vmeta.serve import launch
    from vmeta.web.common import is_loopback

    settings = get_settings()
    spec = launch.EngineSpec(
        kind=engine,
        models=list(model or []),
        adapters=list(adapter or []),
        remote_url=remote_url,
        remote_key=remote_key,
        runs_dir=str(runs_dir) if runs_dir else None,
        exports_dir=str(exports_dir) if exports_dir else None,
        device=device,
        dtype=dtype,
        runtime=runtime,
    )
    launch.check_spec(spec, workers)
    eng = launch.build_engine(spec, settings)
    if not is_loopback(host) and not settings.allowed_hosts:
        settings = settings.model_copy(update={"allowed_hosts": ["*"]})
        err_console.print(
            f"[yellow]warning:[/] binding {host}: anyone who can reach it can open the page; "
            "put it behind HTTPS and set VMETA_COOKIE_SECURE=true."
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"[bold]vmeta serve[/]: http://{shown}:{port}/ · API http://{shown}:{port}/v1 · docs http://{shown}:{port}/docs\n"
        f"models: {', '.join(m.id for m in eng.models()) or '(loading)'} · data: {settings.data_dir}"
        + (f" · {workers} worker processes" if workers > 1 else "")
        + "\nPress Ctrl+C to stop.",
        highlight=False,
        soft_wrap=True,
    )
    if hasattr(eng, "dtype_reason"):  # the local engine: say what runs where, and what each variant reads
        console.print(
            f"model on {eng.device} in {str(eng.dtype).replace('torch.', '')}: {eng.dtype_reason}; runtime: "
            + {"torch": "PyTorch, full weights", "int8": "int8 weights (PyTorch's int8 operators)"}.get(
                eng.runtime, "int8 weights in OpenVINO"
            )
            + (" (models under 0.3B parameters keep full weights)" if eng.runtime == "int8" else ""),
            highlight=False,
            soft_wrap=True,
        )
        for info in eng.models():
            if info.frames:
                console.print(f"  {info.id}: {describe_frames(info.frames)}", highlight=False, soft_wrap=True)
    for info, reason in getattr(eng, "unavailable", list)():
        err_console.print(f"[yellow]not served:[/] {info.id} — {reason}", highlight=False, soft_wrap=True)
    # With workers, each process builds its own engine; this one only listed the models (echo/remote: cheap).
    launch.run(settings, spec, host, port, workers, engine=eng if workers == 1 else None)


def describe_frames(frames: dict) -> str:
    """One line for a variant's frame settings summary (vmeta.serve.model_catalog.frames_summary)."""
    if "nframes" in frames:
        count = f"{frames['nframes']} frames"
    else:
        count = f"{frames['fps']:g} fps, {frames['min_frames']}-{frames['max_frames']} frames"
    if "height" in frames:
        size = f"{frames['height']}x{frames['width']}"
    else:
        size = f"<= {frames['max_pixels']:,} px a frame" if frames.get("max_pixels") else "model's pixel range"
    return f"{count}, {size} ({frames['source']})"


def _db():
    from vmeta.config import get_settings
    from vmeta.serve import db as dbmod

    settings = get_settings()
    url = dbmod.database_url(Path(settings.data_dir), settings.database_url)
    return settings, dbmod, dbmod.make_engine(url)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Bring the database schema to the newest revision (also done on every `vmeta serve` start)."""
    _, dbmod, engine = _db()
    dbmod.upgrade(engine, revision)
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} at revision {dbmod.current_revision(engine)}",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("current")
def db_current() -> None:
    """Print the database URL (password hidden) and its schema revision."""
    _, dbmod, engine = _db()
    console.print(
        f"{engine.url.render_as_string(hide_password=True)}: {dbmod.current_revision(engine) or '(empty)'}",
        highlight=False,
        soft_wrap=True,
    )


def _password(password: str | None) -> str:
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters.")
    return password


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Argument(help="Login name (e-mail).")],
    password: Annotated[str | None, typer.Option("--password", help="Default: asked for (hidden).")] = None,
) -> None:
    """Create an administrator, or make an existing account one (its password is replaced when given)."""
    from vmeta.serve import crud
    from vmeta.serve.security import password_hasher

    settings, dbmod, engine = _db()
    dbmod.upgrade(engine)
    email = email.strip().lower()
    with dbmod.session_scope(dbmod.make_sessionmaker(engine)) as db:
        user = crud.user_by_email(db, email)
        if user is None:
            crud.create_user(
                db, email=email, password_hash=password_hasher(settings).hash(_password(password)), is_admin=True
            )
            what = "created"
        else:
            new_hash = password_hasher(settings).hash(_password(password)) if password is not None else None
            crud.make_admin(user, new_hash)
            what = "promoted"
    console.print(f"{email}: administrator ({what})", highlight=False)


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Argument(help="The account the token acts for.")],
    name: Annotated[str, typer.Option("--name", help="A label shown in the token list.")] = "cli",
) -> None:
    """Print a new API token for ACCOUNT (shown once; only its hash is stored)."""
    from vmeta.serve import crud

    _, dbmod, engine = _db()
    dbmod.upgrade(engine)
    with dbmod.session_scope(dbmod.make_sessionmaker(engine)) as db:
        user = crud.user_by_email(db, email.strip().lower())
        if user is None:
            raise UserError(f"no account '{email}'; register on the page or run `vmeta serve admin create {email}`.")
        _, token = crud.create_api_token(db, user.id, name)
    print(token)
