"""Accounts: register, login, logout, password change, guests (and upgrade in place), tokens, admin."""

from __future__ import annotations

from datetime import timedelta

from serve_helpers import PASSWORD, UserClient
from sqlalchemy import select

from vmeta.serve import crud
from vmeta.serve.guests import cleanup_expired
from vmeta.serve.tables import Conversation, utcnow


def test_register_login_logout_me(app, client, make_user):
    a = make_user("alice@example.org")
    assert a.me["user"]["is_admin"] is True  # the first account is the admin
    b = make_user("bob@example.org")
    assert b.me["user"]["is_admin"] is False
    assert a.get("/api/auth/me").json()["user"]["email"] == "alice@example.org"
    assert a.post("/api/auth/logout").status_code == 204
    assert a.get("/api/auth/me").status_code == 401
    r = a.post("/api/auth/login", json={"email": "ALICE@example.org ", "password": PASSWORD})
    assert r.status_code == 200
    a.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert a.get("/api/auth/me").status_code == 200
    assert (
        client.post("/api/auth/register", json={"email": "alice@example.org", "password": "x" * 9}).status_code == 409
    )
    r = client.post("/api/auth/login", json={"email": "alice@example.org", "password": "wrong password"})
    assert r.status_code == 401 and "wrong" in r.json()["detail"]
    cookie = r.headers.get("set-cookie", "")
    assert "vmeta_session" not in cookie


def test_session_cookie_flags(client):
    r = client.post("/api/auth/register", json={"email": "c@example.org", "password": PASSWORD})
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("vmeta_session="))
    assert "HttpOnly" in session and "samesite=lax" in session.lower() and "Path=/" in session


def test_change_password_logs_out_other_sessions(app, make_user):
    a = make_user("pw@example.org")
    other = UserClient.__new__(UserClient)
    from fastapi.testclient import TestClient

    other.http = TestClient(app)
    r = other.http.post("/api/auth/login", json={"email": "pw@example.org", "password": PASSWORD})
    assert r.status_code == 200
    assert (
        a.post("/api/auth/password", json={"current_password": "nope", "new_password": "new password 1"}).status_code
        == 400
    )
    assert (
        a.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "new password 1"}).status_code
        == 204
    )
    assert a.get("/api/auth/me").status_code == 200
    assert other.http.get("/api/auth/me").status_code == 401
    assert (
        other.http.post("/api/auth/login", json={"email": "pw@example.org", "password": "new password 1"}).status_code
        == 200
    )


def test_guest_chats_then_registers_and_keeps_conversation(app, make_user):
    g = make_user(guest=True)
    assert g.me["user"]["is_guest"] is True and g.me["user"]["guest_expires_at"]
    cid = g.conversation()
    assert "done" in g.say(cid, "hello as a guest")
    assert g.post("/api/tokens", json={}).status_code == 403  # guests get no API tokens
    r = g.post("/api/auth/register", json={"email": "guest-now@example.org", "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["user"]["id"] == g.user_id and r.json()["user"]["is_guest"] is False
    g.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    convs = g.get("/api/conversations").json()["items"]
    assert [c["id"] for c in convs] == [cid]
    # the upgraded account is not removed by the guest cleanup
    cleanup_expired(app.state.vmeta)
    with app.state.vmeta.sessions() as db:
        assert db.get(Conversation, cid) is not None


def test_guest_cleanup_removes_expired_guests_and_files(app, make_user, small_clip, monkeypatch):
    forgotten: list[str] = []  # the engine's prompt state of the person: LocalEngine.forget_user (test_reading.py)
    monkeypatch.setattr(app.state.vmeta.engine, "forget_user", forgotten.append, raising=False)
    g = make_user(guest=True)
    cid = g.conversation()
    g.say(cid, "temporary")
    up = g.upload(small_clip).json()
    state = app.state.vmeta
    stored = state.uploads_dir / g.user_id
    assert any(stored.iterdir())
    assert cleanup_expired(state) == 0  # not expired yet
    with state.sessions.begin() as db:
        crud.get_user(db, g.user_id).guest_expires_at = utcnow() - timedelta(seconds=1)
    assert cleanup_expired(state) == 1
    assert forgotten == [g.user_id]
    with state.sessions() as db:
        assert crud.get_user(db, g.user_id) is None
        assert db.scalar(select(Conversation).where(Conversation.id == cid)) is None
    assert not stored.exists()
    assert g.get(f"/api/uploads/{up['id']}").status_code == 401


def test_tokens_create_list_revoke(make_user):
    a = make_user()
    tok = a.token()
    assert tok.startswith("vmt_")
    listed = a.get("/api/tokens").json()
    assert len(listed) == 1 and "token" not in listed[0] and tok.startswith(listed[0]["prefix"])
    from fastapi.testclient import TestClient

    api = TestClient(a.http.app)
    assert api.get("/api/auth/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    # bearer requests need no CSRF header
    assert api.post("/api/conversations", json={}, headers={"Authorization": f"Bearer {tok}"}).status_code == 201
    assert a.delete(f"/api/tokens/{listed[0]['id']}").status_code == 204
    assert api.get("/api/auth/me", headers={"Authorization": f"Bearer {tok}"}).status_code == 401


def test_admin_lists_disables_and_sees_usage(make_user):
    admin = make_user("root@example.org")
    bob = make_user("bob2@example.org")
    cid = bob.conversation()
    bob.say(cid, "count me")
    assert bob.get("/api/admin/users").status_code == 403
    users = admin.get("/api/admin/users").json()
    assert {u["email"] for u in users} >= {"root@example.org", "bob2@example.org"}
    usage = admin.get("/api/admin/usage").json()
    assert any(u["email"] == "bob2@example.org" and u["source"] == "chat" and u["requests"] == 1 for u in usage)
    assert admin.patch(f"/api/admin/users/{bob.user_id}", json={"disabled": True}).status_code == 200
    assert bob.get("/api/conversations").status_code == 401  # sessions dropped
    r = bob.post("/api/auth/login", json={"email": "bob2@example.org", "password": PASSWORD})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    assert admin.patch(f"/api/admin/users/{admin.user_id}", json={"disabled": True}).status_code == 400


def test_registration_closed(tmp_path, db_url):
    from fastapi.testclient import TestClient
    from serve_helpers import _empty_tables, fast_settings

    from vmeta.serve.app import create_app

    app = create_app(fast_settings(tmp_path / "d", db_url, registration_open=False), background_tasks=False)
    try:
        with TestClient(app) as c:
            r = c.post("/api/auth/register", json={"email": "x@example.org", "password": PASSWORD})
            assert r.status_code == 403 and "closed" in r.json()["detail"]
    finally:
        _empty_tables(app)


def test_guest_sessions_per_ip_are_limited(app, client):
    from fastapi.testclient import TestClient

    app.state.vmeta.settings.guest_per_ip_per_hour = 3
    for _ in range(3):
        assert TestClient(app).post("/api/guest").status_code == 201
    r = TestClient(app).post("/api/guest")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
