"""The API contract: /openapi.json declares every status and body each operation really answers with.

The fast tests check the schema itself (every operation has its row in `vmeta.serve.api_errors`, no FastAPI
list-shaped 422 left, every error body is ours) and two answers that once broke it. The `fuzz` tests run
Schemathesis (a property-based API fuzzer, Hypothesis underneath) against the app with the echo engine on every
operation, with the checks `not_a_server_error`, `status_code_conformance` and `response_schema_conformance`:

- its command line against the app on a real (uvicorn) server, as the administrator with a bearer token: the
  coverage (boundary and missing values), fuzzing (`FUZZ_EXAMPLES` cases per operation, valid and invalid
  data) and stateful phases — what `st run http://127.0.0.1:8000/openapi.json -H "Authorization: Bearer vmt_…"
  -c not_a_server_error,status_code_conformance,response_schema_conformance` does against `vmeta serve --engine
  echo`;
- in process, as the other callers: a registered user who is not an admin, a token that is not one, no token;
  and as the administrator with the ids of things that exist (a conversation with messages, an upload, an
  avatar, a token, a user), so the success answers of the id routes are checked too, deletes last.

Bounded and reproducible: deterministic / derandomized generation (the same cases every run), no shrinking, no
example database; ~40 s on 2 cores (pytest-timeout stops each test at 5 min). A failure names the operation,
the check and a curl command that reproduces it. The pytest plugin's `schemathesis.pytest.from_fixture` is not
used: it writes a pytest-internal attribute that pytest 9.2 no longer has.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import schemathesis  # the dev extra: a missing install fails here rather than skipping the contract
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.generation import GenerationMode
from serve_helpers import UserClient, fast_settings

from vmeta.serve.api_errors import OPERATION_ERRORS
from vmeta.serve.app import create_app
from vmeta.serve.echo_engine import EchoEngine
from vmeta.testing import media

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FUZZ_EXAMPLES = 100  # fuzzed cases per operation and generation mode (positive, negative) as the administrator
OTHER_EXAMPLES = 10  # ... as each other caller, and with existing ids
FUZZ_SETTINGS: dict[str, Any] = {
    "derandomize": True,  # the same cases on every run and machine
    "database": None,
    "deadline": timedelta(seconds=10),  # one request; the echo engine answers in milliseconds
    "phases": [Phase.explicit, Phase.generate],  # no shrinking: a bounded run (the report has a curl command)
    "suppress_health_check": list(HealthCheck),
}


# ------------------------------------------------------------------------------------------ the schema
@pytest.fixture(scope="module")
def plain_app(tmp_path_factory):
    app = create_app(fast_settings(tmp_path_factory.mktemp("contract") / "data"), EchoEngine(), background_tasks=False)
    yield app
    app.state.db_engine.dispose()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", path, op


def test_every_operation_declares_its_errors(plain_app):
    doc = plain_app.openapi()
    keys = {key for key, _, _ in _operations(doc)}
    assert keys - set(OPERATION_ERRORS) == set(), "add a row to vmeta.serve.api_errors.OPERATION_ERRORS"
    assert set(OPERATION_ERRORS) - keys == set(), "OPERATION_ERRORS names operations the app no longer has"
    assert "HTTPValidationError" not in str(doc)  # FastAPI's list-shaped 422 is not what the app sends
    for key, path, op in _operations(doc):
        declared = {int(s) for s in op["responses"] if int(s) >= 400}
        assert declared == set(OPERATION_ERRORS[key]), key
        model = "OpenAIErrorOut" if path.startswith("/v1/") else "ErrorOut"
        for status, answer in op["responses"].items():
            if int(status) >= 400 and status != "416":
                assert answer["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert doc["components"]["schemas"]["ErrorOut"]["required"] == ["detail"]
    assert doc["components"]["schemas"]["OpenAIErrorOut"]["required"] == ["error"]
    login = doc["paths"]["/api/auth/login"]["post"]["responses"]["429"]
    assert "Retry-After" in login["headers"]


def test_v1_body_limit_answers_in_openai_shape(tmp_path):
    """The body-size guard runs before the app: under /v1 it answers in OpenAI's shape too (it used to send
    {"detail"} there, which the schema — and the `openai` client — do not expect)."""
    app = create_app(fast_settings(tmp_path / "data", api_max_body_bytes=1000), EchoEngine(), background_tasks=False)
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]}
    with TestClient(app) as c:
        r = c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["message"] == "the request body is larger than the limit of 1000 bytes."
        assert r.json()["error"]["type"] == "invalid_request_error"
        r = c.post("/api/auth/login", json={"email": "a@b.c", "password": "x" * 2000})
        assert r.status_code == 413 and set(r.json()) == {"detail"}
    app.state.db_engine.dispose()


def test_huge_offset_is_refused_not_a_server_error(plain_app):
    """An offset past SQLite's 64-bit integers used to be a 500 (OverflowError); now it is a 422 like any
    invalid query parameter."""
    u = UserClient(plain_app, "offset@example.org")
    try:
        for url in ("/api/conversations", "/api/admin/users"):
            r = u.get(url, params={"offset": 2**70})
            assert r.status_code == 422, r.text
            assert set(r.json()) == {"detail"} and "offset" in r.json()["detail"]
            assert u.get(url, params={"offset": 10**6}).status_code == 200
    finally:
        u.close()


# ----------------------------------------------------------------------------------------- the fuzzer
@dataclass
class World:
    """The app and what exists in it: an administrator (the first account) with a bearer token, a plain user
    with one, and the administrator's things, by path parameter name."""

    app: Any
    tokens: dict[str, str | None]
    ids: dict[str, str] = field(default_factory=dict)
    clients: list[UserClient] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    app = create_app(fast_settings(root / "data"), EchoEngine(), background_tasks=False)
    admin = UserClient(app, "admin@example.org")
    plain = UserClient(app, "plain@example.org")
    spare = UserClient(app, "spare@example.org")  # the target of PATCH /api/admin/users/{user_id}
    w = World(
        app,
        {"admin": admin.token(), "user": plain.token(), "bad token": "vmt_not-a-token", "no token": None},
        clients=[admin, plain, spare],
    )
    conv = admin.conversation("fuzzed")
    events = admin.say(conv, "hello")
    clip = media.make_clip(root / "clip.mp4", 64, 48, 5, 0.6, audio=False)
    up = admin.upload(clip)
    assert up.status_code == 201, up.text
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    av = admin.post("/api/users/me/avatar", files={"file": ("me.png", png.getvalue(), "image/png")})
    assert av.status_code == 201, av.text
    spare_token = admin.post("/api/tokens", json={"name": "spare"}).json()["id"]  # the one DELETE may revoke
    w.ids = {
        "conversation_id": conv,
        "message_id": events["done"][0]["message_id"],
        "upload_id": up.json()["id"],
        "avatar_id": av.json()["id"],
        "token_id": spare_token,
        "user_id": spare.user_id,
    }
    yield w
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # the app's lifespan, started by Schemathesis' in-process client
    for c in w.clients:
        c.close()
    app.state.db_engine.dispose()


@pytest.fixture(scope="module")
def api_schema(world):
    return schemathesis.openapi.from_asgi("/openapi.json", world.app)


@pytest.mark.fuzz
@pytest.mark.timeout(300)
def test_api_keeps_its_contract(world, tmp_path):
    """Schemathesis' command line, as a user would run it, against the app on a real server: every operation as
    the administrator, in its examples, coverage (boundary and missing values), fuzzing and stateful (following
    the links between operations) phases, with valid and invalid data. Deterministic: the same cases every run.
    DELETE /api/tokens/{token_id} is left to the test below (the stateful phase would revoke its own token)."""
    from vmeta.testing.browser import serve_in_thread

    checks = ",".join(c.__name__ for c in CHECKS)
    with serve_in_thread(world.app) as url:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--checks", checks,
             "--header", f"Authorization: Bearer {world.tokens['admin']}",
             "--max-examples", str(FUZZ_EXAMPLES), "--generation-deterministic", "--no-shrink",
             "--workers", "1", "--request-timeout", "10", "--exclude-path", "/api/tokens/{token_id}",
             "--warnings", "off", "--no-color"],
            capture_output=True, text=True, timeout=280, env={**os.environ, "COLUMNS": "120"},
            cwd=tmp_path,  # its cache folder (.schemathesis/) goes there, not into the checkout
        )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and m[1] == m[2] and int(m[1]) > 1000, out[-3000:]
    print(m[0])


@pytest.mark.fuzz
@pytest.mark.timeout(300)
def test_api_keeps_its_contract_for_every_caller(world, api_schema):
    """Every operation as a user who is not an admin, with a bad token and without one; and as the
    administrator with ids of things that exist (deletes last, so the others still find them)."""
    runs = [(who, False) for who in ("user", "bad token", "no token")] + [("admin", True)]
    operations = sorted(
        (r.ok() for r in api_schema.get_all_operations()), key=lambda op: (op.method.upper() == "DELETE", op.label)
    )
    failures: dict[tuple[str, str, int, str], str] = {}
    count = 0
    for who, existing in runs:
        for op in operations:
            names = set(re.findall(r"{(\w+)}", op.path))
            if existing and not names:
                continue
            token = world.tokens[who]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            known = {n: world.ids[n] for n in names} if existing else None
            count += _check_operation(op, who, headers, known, failures)
    assert count > 100
    print(count, "requests")
    assert not failures, f"{len(failures)} contract violations:\n\n" + "\n\n".join(
        f"{label} as {who} -> {status}: {title}\n{text}" for (label, who, status, title), text in failures.items()
    )


def _check_operation(op, who: str, headers: dict[str, str], known: dict[str, str] | None, failures: dict) -> int:
    """Run positive cases of `op` (path parameters `known` when given) with `headers`; record what the checks
    find in `failures` (one entry per operation, caller, status and check). Returns how many requests it sent."""
    sent = 0

    @given(case=op.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
    @settings(max_examples=OTHER_EXAMPLES, **FUZZ_SETTINGS)
    def run(case):
        nonlocal sent
        sent += 1
        response = case.call(headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseException as exc:  # a FailureGroup of what the checks found
            for one in getattr(exc, "exceptions", [exc]):
                title = getattr(one, "title", type(one).__name__)
                failures.setdefault(
                    (op.label, who, response.status_code, title),
                    f"{one}\n    {response.text[:300]}\n    {case.as_curl_command(headers=headers)}",
                )

    with contextlib.suppress(Unsatisfiable):  # nothing to generate for this operation
        run()
    return sent
