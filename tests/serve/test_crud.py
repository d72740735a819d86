"""vmeta.serve.crud on the app's database (SQLite, and PostgreSQL where one answers): the rows the routes and
the CLI create, look up and change — owner filtering, the guest upgrade, sessions logged out, answers stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from vmeta.serve import crud
from vmeta.serve.db import session_scope
from vmeta.serve.security import API_TOKEN_PREFIX, hash_token
from vmeta.serve.tables import AuthSession, Usage


def test_users_admins_guests_and_sessions(app):
    sessions = app.state.vmeta.sessions
    with session_scope(sessions) as db:
        assert not crud.has_admin(db) and not crud.email_taken(db, "a@example.org")
        alice = crud.create_user(db, email="a@example.org", password_hash="h1", is_admin=True)
        guest = crud.create_guest(db, ttl_s=60)
        assert guest.is_guest and guest.guest_expires_at is not None and guest.id
    with session_scope(sessions) as db:
        assert crud.has_admin(db) and crud.email_taken(db, "a@example.org")
        assert crud.user_by_email(db, "a@example.org").id == alice.id
        guest = crud.get_user(db, guest.id)
        crud.upgrade_guest(guest, email="g@example.org", password_hash="h2", name="", is_admin=False)
    with session_scope(sessions) as db:
        g = crud.user_by_email(db, "g@example.org", registered=True)
        assert g is not None and g.id == guest.id and not g.is_guest and g.guest_expires_at is None
        kept, _ = crud.create_session(db, g, 3600)
        crud.create_session(db, g, 3600)
    with session_scope(sessions) as db:  # a new password logs out every other session
        crud.set_password(db, crud.get_user(db, guest.id), "h3", keep_session_id=kept.id)
    with session_scope(sessions) as db:
        assert list(db.scalars(select(AuthSession.id).where(AuthSession.user_id == guest.id))) == [kept.id]
        crud.update_user(db, crud.get_user(db, guest.id), disabled=True)  # disabling logs out everywhere
    with session_scope(sessions) as db:
        assert db.scalar(select(func.count()).select_from(AuthSession).where(AuthSession.user_id == guest.id)) == 0
        assert [u.email for u in crud.list_users(db, include_guests=False, limit=10, offset=0)] == [
            "a@example.org",
            "g@example.org",
        ]
        promoted = crud.make_admin(crud.get_user(db, guest.id))
        assert promoted.is_admin and not promoted.disabled and promoted.password_hash == "h3"
    with pytest.raises(IntegrityError), session_scope(sessions) as db:  # a taken e-mail fails at the flush
        crud.create_user(db, email="a@example.org", password_hash="x")
        db.flush()


def test_tokens_and_conversations_are_filtered_by_owner(app):
    sessions = app.state.vmeta.sessions
    with session_scope(sessions) as db:
        alice = crud.create_user(db, email="alice@example.org", password_hash="h")
        bob = crud.create_user(db, email="bob@example.org", password_hash="h")
        db.flush()
        row, token = crud.create_api_token(db, alice.id, "ci")
        assert token.startswith(API_TOKEN_PREFIX) and row.prefix == token[:10]
        assert row.token_hash == hash_token(token) and token not in row.token_hash
        conv = crud.create_conversation(db, alice.id, "  ")
        up = crud.add_upload(db, alice.id, filename="clip.mp4", stored_name="x.mp4", size_bytes=3)
        db.flush()
    with session_scope(sessions) as db:
        assert [t.id for t in crud.list_api_tokens(db, alice.id)] == [row.id]
        assert crud.owned_api_token(db, bob.id, row.id) is None
        assert crud.owned_conversation(db, bob.id, conv.id) is None
        assert crud.owned_upload(db, bob.id, up.id) is None and crud.uploads_by_id(db, bob.id, {up.id}) == {}
        assert crud.uploads_by_id(db, alice.id, {up.id})[up.id].filename == "clip.mp4"
        mine = crud.owned_conversation(db, alice.id, conv.id)
        parts = [{"type": "video", "upload_id": up.id, "filename": "clip.mp4"}]
        first, before = crud.add_user_message(db, mine, alice.id, "", parts, "echo")
        assert (first.seq, before, mine.title) == (1, [], "clip.mp4")  # untitled: named after the video
        second, before = crud.add_user_message(db, mine, alice.id, "why?\nmore", [], "echo")
        assert second.seq == 2 and [m.id for m in before] == [first.id] and mine.title == "clip.mp4"
        answer = crud.add_answer(
            db, conv.id, alice.id, 3, content="ok", model="echo", status="complete", completion_tokens=1, timings={}
        )
        assert answer is not None and crud.owned_message(db, bob.id, answer.id) is None
    with session_scope(sessions) as db:
        assert crud.owned_message(db, alice.id, answer.id).content == "ok"
        usage = db.scalars(select(Usage)).all()
        assert [(u.user_id, u.source, u.model, u.completion_tokens) for u in usage] == [(alice.id, "chat", "echo", 1)]
        db.delete(crud.owned_conversation(db, alice.id, conv.id))
    with session_scope(sessions) as db:  # the conversation was deleted while the answer was being written
        assert crud.add_answer(db, conv.id, alice.id, 4, content="late", model="echo", status="complete") is None
