"""The issue's security checks: owner isolation swept over every id-taking route, CSRF, Argon2id at rest,
login throttling, bad uploads answered with a clear 4xx while the server stays up."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from serve_helpers import PASSWORD

from vmeta.serve import crud

# Request bodies that pass validation, so the ownership check (not the body) decides the answer.
BODY = {"title": "renamed", "text": "hello", "disabled": False, "name": "x"}


def all_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route: from the OpenAPI schema and from the router tree (hidden routes too)."""
    found = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}

    def walk(routes):
        for r in routes:
            if isinstance(r, APIRoute):
                found.update((m, r.path) for m in r.methods)
            sub = getattr(r, "original_router", None)
            if sub is not None:
                walk(sub.routes)

    walk(app.routes)
    return {(m, p) for m, p in found if m not in ("HEAD", "OPTIONS")}


def test_second_user_gets_404_on_every_id_route(app, make_user, small_clip, tmp_path):
    from PIL import Image

    a = make_user()
    b = make_user()
    assert a.me["user"]["is_admin"] and not b.me["user"]["is_admin"]
    cid = a.conversation("secret")
    a.say(cid, "my secret words")
    conv = a.get(f"/api/conversations/{cid}").json()
    up = a.upload(small_clip)
    assert up.status_code == 201, up.text
    png = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(png)
    with png.open("rb") as fh:
        av = a.post("/api/users/me/avatar", files={"file": ("a.png", fh, "image/png")})
    assert av.status_code == 201, av.text
    a.token()
    ids = {
        "conversation_id": cid,
        "message_id": conv["messages"][-1]["id"],
        "upload_id": up.json()["id"],
        "avatar_id": av.json()["id"],
        "token_id": a.get("/api/tokens").json()[0]["id"],
        "user_id": a.user_id,
    }
    swept = []
    for method, path in sorted(all_routes(app)):
        params = re.findall(r"{(\w+)(?::\w+)?}", path)
        if not params:
            continue
        unknown = [p for p in params if p not in ids]
        assert not unknown, f"{method} {path}: add an owned object for {unknown} to this sweep"
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: ids[m.group(1)], path)
        kw = {"json": BODY} if method in ("POST", "PATCH", "PUT") else {}
        r = b.request(method, url, **kw)
        expected = 403 if path.startswith("/api/admin/") else 404
        assert r.status_code == expected, f"{method} {path} as another user: {r.status_code} {r.text[:200]}"
        assert "secret" not in r.text
        swept.append((method, path))
        if method == "GET":  # the ids are real: the owner can read them
            assert a.get(url).status_code == 200, f"GET {path} as the owner"
    assert len(swept) >= 10, swept
    # and the owner's objects survived the sweep
    assert a.get(f"/api/conversations/{cid}").json()["title"] == "secret"
    assert a.get(f"/api/uploads/{ids['upload_id']}").status_code == 200


def test_bearer_of_other_user_cannot_reach_upload_via_api(app, make_user, small_clip):
    a, b = make_user(), make_user()
    up = a.upload(small_clip).json()
    tok = b.token()
    r = b.http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {tok}"},
        json={
            "model": "echo",
            "messages": [
                {"role": "user", "content": [{"type": "video_url", "video_url": {"url": f"vmeta-upload://{up['id']}"}}]}
            ],
        },
    )
    assert r.status_code == 404 and "upload" in r.json()["error"]["message"]


def test_csrf_less_cookie_posts_are_refused(make_user):
    a = make_user()
    cid = a.conversation()
    token = a.headers.pop("X-CSRF-Token")
    for method, url, body in [
        ("POST", "/api/conversations", {}),
        ("PATCH", f"/api/conversations/{cid}", {"title": "x"}),
        ("DELETE", f"/api/conversations/{cid}", None),
        ("POST", f"/api/conversations/{cid}/messages", {"text": "hi"}),
        ("POST", "/api/tokens", {}),
        ("POST", "/api/auth/logout", None),
        ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "another one"}),
    ]:
        r = a.request(method, url, json=body)
        assert r.status_code == 403, (method, url, r.status_code)
        r = a.request(method, url, json=body, headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
    # right token but another site's page
    r = a.post("/api/conversations", json={}, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = a.post("/api/conversations", json={}, headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # login from another site is refused too
    r = a.post(
        "/api/auth/login", json={"email": a.email, "password": PASSWORD}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert a.post("/api/conversations", json={}, headers={"X-CSRF-Token": token}).status_code == 201
    assert a.get(f"/api/conversations/{cid}").json()["title"] == ""


def test_passwords_only_as_argon2id(app, make_user, settings):
    a = make_user("hashme@example.org")
    with app.state.vmeta.sessions() as db:
        user = crud.user_by_email(db, "hashme@example.org")
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    if app.state.db_engine.dialect.name == "sqlite":
        app.state.db_engine.dispose()  # checkpoint-free read: scan the DB and its WAL
        for f in (settings.data_dir).glob("vmeta.db*"):
            assert PASSWORD.encode() not in f.read_bytes(), f
    else:
        from sqlalchemy import text

        with app.state.db_engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text("select tablename from pg_tables where schemaname='public'"))]
            for t in tables:
                dump = " ".join(str(row) for row in conn.execute(text(f'select * from "{t}"')))
                assert PASSWORD not in dump, t
    assert a.get("/api/auth/me").status_code == 200


def test_sixth_wrong_password_in_a_minute_is_throttled(client, make_user):
    make_user("victim@example.org")
    for _ in range(5):
        r = client.post("/api/auth/login", json={"email": "victim@example.org", "password": "wrong password"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"email": "victim@example.org", "password": "wrong password"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "wait" in r.json()["detail"]
    # even the right password waits now
    r = client.post("/api/auth/login", json={"email": "victim@example.org", "password": PASSWORD})
    assert r.status_code == 429
    # another account from another address is unaffected
    make_user("other@example.org")
    r = client.post(
        "/api/auth/login",
        json={"email": "other@example.org", "password": PASSWORD},
        headers={"X-Forwarded-For": "10.0.0.9"},
    )
    assert r.status_code == 200


def test_per_ip_throttle(app, settings, client):
    limit = settings.login_ip_max_failures
    for i in range(limit):
        r = client.post("/api/auth/login", json={"email": f"nobody{i}@example.org", "password": "x"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"email": "fresh@example.org", "password": "x"})
    assert r.status_code == 429 and "address" in r.json()["detail"]


@pytest.mark.parametrize("kind", ["not_video", "corrupt", "zero_byte", "audio_only", "oversize"])
def test_bad_uploads_get_clear_4xx_and_server_stays_up(app, make_user, bad_videos, small_clip, tmp_path, kind):
    a = make_user()
    if kind == "oversize":
        app.state.vmeta.settings.upload_max_bytes = 2000
        r = a.upload(small_clip)
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        app.state.vmeta.settings.upload_max_bytes = 200 * 1024 * 1024
    else:
        r = a.upload(bad_videos[kind], name=f"my {kind}.mp4")
        assert r.status_code in (400, 415, 422), r.text
        detail = r.json()["detail"]
        assert f"my {kind}.mp4" in detail and str(tmp_path) not in detail and "/" not in detail.split("'")[1]
    assert not [p for p in (app.state.vmeta.uploads_dir / a.user_id).glob("*")], "nothing left on disk"
    assert a.get("/api/uploads").json() == []
    ok = a.upload(small_clip)
    assert ok.status_code == 201, ok.text


def test_oversize_is_aborted_while_streaming(app, make_user):
    """No Content-Length (chunked): the limit is still enforced as the bytes arrive."""
    a = make_user()
    app.state.vmeta.settings.upload_max_bytes = 100_000
    boundary = "XyZ"
    sent = {"n": 0}

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        for _ in range(1000):  # 64 MB if it were all read
            sent["n"] += 1
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = a.post("/api/uploads", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert not list((app.state.vmeta.uploads_dir / a.user_id).glob("*"))


def test_declared_oversize_refused_before_reading(app, make_user):
    a = make_user()
    r = a.post(
        "/api/uploads",
        content=b"x" * 10,
        headers={"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10**12)},
    )
    assert r.status_code == 413
