"""Fixtures for the serve tests: the app over SQLite AND PostgreSQL, users with their own clients, videos.

PostgreSQL: VMETA_TEST_DATABASE_URL or postgresql+psycopg://postgres@127.0.0.1:5432/test (trust auth on this
machine kind; `scripts/ci-postgres.sh` starts one elsewhere). A fresh database `vmeta_test_<random>` is created
for the test session and dropped after; tables are emptied between tests. Unreachable -> the PostgreSQL
variants are skipped with the reason, unless env CI is set (then they fail).

Argon2 is made cheap here (time 1, 1 MiB) to keep the suite fast — only in tests; production keeps pwdlib's
recommended cost (Settings.argon2_* defaults).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import UserClient, _empty_tables, fast_settings

from vmeta.config import Settings
from vmeta.serve.app import create_app
from vmeta.serve.echo_engine import EchoEngine
from vmeta.testing import media
from vmeta.testing.needs import skip_or_fail

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from vmeta.serve.db import database_url

    base = database_url(Path("."), os.environ.get("VMETA_TEST_DATABASE_URL") or DEFAULT_PG)
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        reason = f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} is unreachable ({type(exc).__name__}: {str(exc).splitlines()[0][:150]}); run scripts/ci-postgres.sh or set VMETA_TEST_DATABASE_URL"
        skip_or_fail(reason)
    name = f"vmeta_test_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture
def echo_engine() -> EchoEngine:
    return EchoEngine()


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return fast_settings(tmp_path / "data", db_url)


@pytest.fixture
def app(settings, echo_engine):
    app = create_app(settings, echo_engine, background_tasks=False)
    yield app
    _empty_tables(app)
    app.state.db_engine.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """An anonymous client (the lifespan runs once here)."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_user(app, client):
    n = {"i": 0}
    made: list[UserClient] = []

    def make(email: str | None = None, guest: bool = False) -> UserClient:
        n["i"] += 1
        made.append(
            UserClient(
                app, None if guest else (email or f"user{n['i']}-{secrets.token_hex(3)}@example.org"), guest=guest
            )
        )
        return made[-1]

    yield make
    for u in made:
        u.close()


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve_clips")
    return media.make_clip(d / "clip.mp4", 160, 120, 10, 1.0, audio=False)


@pytest.fixture
def live(app):
    """The app on a real uvicorn server in a thread (ephemeral port); yields the base URL."""
    from vmeta.testing.browser import serve_in_thread

    with serve_in_thread(app) as url:
        yield url


# the chat page's browser fixtures (tests/serve/chat_page.py), for every browser test of the page
from chat_page import browser, new_page, serve  # noqa: E402, F401
