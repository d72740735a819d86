"""The hot history endpoints (list, search, get) answer from plain column queries and hand-built JSON, and
authenticate with `deps.resolve_caller` (Core) instead of `resolve_principal` (ORM). These tests pin that the
answers equal what the response models make from the ORM rows, and that the lean auth refuses exactly what the
ORM path refuses: revoked token, disabled account, expired guest, logged-out or password-changed sessions."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from serve_helpers import PASSWORD
from sqlalchemy import select, update

from vmeta.serve import schemas
from vmeta.serve.tables import ApiToken, Conversation, User, utcnow


def _orm_page(app, user_id: str, limit: int, offset: int) -> list[dict]:
    with app.state.vmeta.sessions() as db:
        rows = db.scalars(
            select(Conversation)
            .where(Conversation.user_id == user_id)
            .order_by(Conversation.updated_at.desc(), Conversation.id)
            .limit(limit)
            .offset(offset)
        )
        return [schemas.ConversationOut.model_validate(r).model_dump(mode="json") for r in rows]


def test_history_answers_equal_the_response_models(app, make_user):
    a = make_user()
    ids = []
    for i in range(5):
        cid = a.conversation(f"话题 {i} cat" if i % 2 else f"topic {i}")
        a.say(cid, f"第{i}轮：这个视频里的“内卷”是什么隐喻？")
        ids.append(cid)
    other = make_user()
    other.say(other.conversation("cat of someone else"), "内卷")

    page = a.get("/api/conversations", params={"limit": 2}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0 and page["next_offset"] == 2
    assert page["items"] == _orm_page(app, a.user_id, 2, 0)
    last = a.get("/api/conversations", params={"limit": 2, "offset": 4}).json()
    assert last["total"] == 5 and last["next_offset"] is None and last["items"] == _orm_page(app, a.user_id, 2, 4)
    past = a.get("/api/conversations", params={"limit": 2, "offset": 50}).json()
    assert past == {"items": [], "total": 5, "limit": 2, "offset": 50, "next_offset": None}

    found = a.get("/api/conversations", params={"q": "cat"}).json()  # titles 1, 3 (not the other user's)
    assert found["total"] == 2 and {c["title"] for c in found["items"]} == {"话题 1 cat", "话题 3 cat"}
    assert a.get("/api/conversations", params={"q": "内卷"}).json()["total"] == 5  # message text
    assert a.get("/api/conversations", params={"q": "100%"}).json()["total"] == 0  # LIKE wildcards escaped
    assert a.get("/api/conversations", params={"q": "_"}).json()["total"] == 0
    assert a.get("/api/conversations", params={"q": "   "}).json()["total"] == 5  # blank: no filter

    got = a.get(f"/api/conversations/{ids[0]}")
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    with app.state.vmeta.sessions() as db:
        conv = db.get(Conversation, ids[0])
        expected = schemas.ConversationDetail.model_validate(conv).model_dump(mode="json")
    assert got.json() == expected
    assert [m["role"] for m in expected["messages"]] == ["user", "assistant"]
    assert expected["messages"][1]["model"] and expected["messages"][1]["timings"]
    assert other.get(f"/api/conversations/{ids[0]}").status_code == 404


def test_history_headers(make_user):
    a = make_user()
    r = a.get("/api/conversations")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert "content-security-policy" not in r.headers  # only on HTML pages
    page = a.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_bearer_refusals_on_the_fast_path(app, make_user):
    admin = make_user()  # the first account is the admin
    bob = make_user()
    tok = bob.token()
    token_id = bob.get("/api/tokens").json()[0]["id"]
    api = TestClient(app, headers={"Authorization": f"Bearer {tok}"})
    assert api.get("/api/conversations").status_code == 200
    # last_used_at is stamped (at most once a minute)
    with app.state.vmeta.sessions() as db:
        used = db.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == bob.user_id))
    assert used is not None

    r = TestClient(app).get("/api/conversations", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "vmt_" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    assert TestClient(app).get("/api/conversations").status_code == 401  # nobody

    assert admin.patch(f"/api/admin/users/{bob.user_id}", json={"disabled": True}).status_code == 200
    r = api.get("/api/conversations")
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    assert api.get("/api/conversations/whatever").status_code == 403
    assert admin.patch(f"/api/admin/users/{bob.user_id}", json={"disabled": False}).status_code == 200
    assert api.get("/api/conversations").status_code == 200

    assert api.delete(f"/api/tokens/{token_id}").status_code == 204  # (disabling ended bob's cookie session)
    assert api.get("/api/conversations").status_code == 401


def test_cookie_refusals_on_the_fast_path(app, make_user):
    a = make_user()
    assert a.get("/api/conversations").status_code == 200
    second = TestClient(app)
    assert second.post("/api/auth/login", json={"email": a.email, "password": PASSWORD}).status_code == 200
    assert second.get("/api/conversations").status_code == 200
    # a password change logs out the other sessions at once
    r = a.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "another password 2"})
    assert r.status_code == 204
    assert second.get("/api/conversations").status_code == 401
    assert a.get("/api/conversations").status_code == 200
    assert a.post("/api/auth/logout").status_code == 204
    assert a.get("/api/conversations").status_code == 401


def test_expired_guest_is_refused_on_the_fast_path(app, make_user):
    g = make_user(guest=True)
    cid = g.conversation("guest chat")
    assert g.get(f"/api/conversations/{cid}").status_code == 200
    with app.state.vmeta.sessions.begin() as db:
        db.execute(update(User).where(User.id == g.user_id).values(guest_expires_at=utcnow() - timedelta(seconds=1)))
    for path in ("/api/conversations", f"/api/conversations/{cid}"):
        r = g.get(path)
        assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_sqlite_reads_answer_on_the_event_loop_within_a_time_budget(app, make_user, monkeypatch):
    """SQLite: list/search/get run on the event loop (no thread hop); a read over its time budget is
    interrupted, rolled back and answered from a worker thread, with the same answer. PostgreSQL: always a
    worker thread (its queries wait on the network)."""
    import threading

    from vmeta.serve import deps
    from vmeta.serve.routes import conversations as routes

    a = make_user()
    cid = a.conversation("budget cat")
    a.say(cid, "内卷 of a cat")
    threads: list[str] = []

    def spy(fn):
        def wrapped(*args):
            threads.append(threading.current_thread().name)
            return fn(*args)

        return wrapped

    monkeypatch.setattr(routes, "conversation_page", spy(routes.conversation_page))
    monkeypatch.setattr(routes, "conversation_detail", spy(routes.conversation_detail))
    calls = [("/api/conversations", None), ("/api/conversations", {"q": "内卷"}), (f"/api/conversations/{cid}", None)]
    expected = [a.get(path, params=params).json() for path, params in calls]
    sqlite = app.state.db_engine.dialect.name == "sqlite"
    assert app.state.vmeta.inline_reads is sqlite
    in_workers = ["AnyIO worker thread" in name for name in threads]
    assert in_workers == [not sqlite] * len(calls), threads

    # Over budget: every statement is interrupted at its first check -> the same answers, from worker threads.
    monkeypatch.setattr(deps, "INLINE_BUDGET_S", -1.0)
    monkeypatch.setattr(deps, "INLINE_CHECK_EVERY", 1)
    threads.clear()
    assert [a.get(path, params=params).json() for path, params in calls] == expected
    assert all("AnyIO worker thread" in name for name in threads) and len(threads) == len(calls), threads
    # ... and nothing is left behind on the pooled connections: back within budget, inline again
    monkeypatch.setattr(deps, "INLINE_BUDGET_S", 5.0)
    threads.clear()
    assert a.get("/api/conversations").json() == expected[0]
    assert ("AnyIO worker thread" in threads[0]) is not sqlite
