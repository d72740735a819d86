"""Helpers of the serve tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from vmeta.config import Settings

PASSWORD = "correct horse battery"


def fast_settings(data_dir: Path, database_url: str | None = None, **kw) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        **kw,
    )


def _empty_tables(app) -> None:
    from sqlalchemy import text

    from vmeta.serve.tables import Base

    eng = app.state.db_engine
    if eng.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with eng.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} CASCADE"))


class UserClient:
    """A TestClient logged in as one user, sending the CSRF header on every request."""

    def __init__(self, app, email: str | None, password: str = PASSWORD, guest: bool = False):
        self.http = TestClient(app)
        self.http.__enter__()  # one event loop for all its requests (a new one per request is ~4x slower)
        self.email, self.password = email, password
        r = (
            self.http.post("/api/guest")
            if guest
            else self.http.post("/api/auth/register", json={"email": email, "password": password})
        )
        assert r.status_code == 201, r.text
        self.me = r.json()
        self.user_id = self.me["user"]["id"]
        self.http.headers["X-CSRF-Token"] = self.me["csrf_token"]

    def close(self) -> None:
        self.http.__exit__(None, None, None)

    def __getattr__(self, name):
        return getattr(self.http, name)

    def token(self) -> str:
        r = self.http.post("/api/tokens", json={"name": "test"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def conversation(self, title: str = "") -> str:
        r = self.http.post("/api/conversations", json={"title": title})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def say(self, conversation_id: str, text: str, **kw) -> dict[str, list[dict]]:
        """POST a message; returns {event name: [data, ...]} of the SSE answer."""
        return sse_events(self.http.post(f"/api/conversations/{conversation_id}/messages", json={"text": text, **kw}))

    def upload(self, path: Path, name: str | None = None):
        with open(path, "rb") as fh:
            return self.http.post("/api/uploads", files={"file": (name or path.name, fh, "video/mp4")})


def sse_events(response) -> dict[str, list[dict]]:

    assert response.status_code == 200, response.text
    out: dict[str, list[dict]] = {}
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in lines:
            out.setdefault(lines["event"], []).append(json.loads(lines["data"]))
    return out
