"""Guest cleanup: guests' users (with their conversations, messages, uploads, avatars and sessions — rows by
ON DELETE CASCADE, files and the engine's prompt state here) are deleted once `guest_expires_at` has passed. A guest who registers gets
`is_guest=False` and no expiry, so their data stays. `create_app` runs `cleanup_loop` in the background."""

from __future__ import annotations

import asyncio
import logging
import shutil

from sqlalchemy import delete, select

from vmeta.serve.db import session_scope
from vmeta.serve.deps import ServeState
from vmeta.serve.security import prune_login_attempts
from vmeta.serve.tables import AuthSession, User, utcnow

log = logging.getLogger("vmeta.serve")


def cleanup_expired(state: ServeState) -> int:
    """Delete expired guests and their files, expired sessions and old login attempts. Returns guests removed."""
    now = utcnow()
    with session_scope(state.sessions) as db:
        ids = list(db.scalars(select(User.id).where(User.is_guest.is_(True), User.guest_expires_at < now)))
        if ids:
            db.execute(delete(User).where(User.id.in_(ids)))
        db.execute(delete(AuthSession).where(AuthSession.expires_at < now))
        prune_login_attempts(db, state.settings)
    forget_user = getattr(state.engine, "forget_user", None)  # engines that keep a person's prompt state
    for uid in ids:
        for base in (state.uploads_dir, state.avatars_dir):
            shutil.rmtree(base / uid, ignore_errors=True)
        if forget_user is not None:
            forget_user(uid)
    if ids:
        log.info("removed %d expired guest(s)", len(ids))
    return len(ids)


async def cleanup_loop(state: ServeState) -> None:
    from starlette.concurrency import run_in_threadpool

    while True:
        try:
            await run_in_threadpool(cleanup_expired, state)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("guest cleanup failed")
        await asyncio.sleep(max(1, state.settings.guest_cleanup_interval_s))
