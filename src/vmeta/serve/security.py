"""Passwords, tokens, CSRF and the login rate limit.

- Passwords: Argon2id through pwdlib. The cost comes from Settings (argon2_*); the defaults are pwdlib's
  recommended values and only the test suite lowers them. `verify` also tells when a stored hash should be
  re-hashed (cost raised since) and the login route does so.
- Session and API tokens: 32 random bytes (URL-safe); only their SHA-256 is stored, so a leaked database does
  not yield usable tokens. A plain hash (not Argon2) is right here: the tokens are high-entropy.
- CSRF: a synchronizer token per session (stored with it), returned by /api/auth/me and in the readable
  `vmeta_csrf` cookie; every state-changing request authenticated by the session cookie must send it in
  `X-CSRF-Token` and must not come from another site (Origin / Sec-Fetch-Site). Bearer requests are exempt
  (a browser never attaches them by itself).
- Login rate limit: DB-backed (table login_attempts). Chosen over memory because the count must hold across
  several worker processes and restarts, and it doubles as an audit trail; a login is rare enough that one
  indexed COUNT per attempt costs nothing. Failures in the last `login_window_s` are counted per account and
  per client IP; at `login_max_failures` (account) or `login_ip_max_failures` (IP) further attempts get 429
  with Retry-After until the oldest failure leaves the window.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vmeta.config import Settings
from vmeta.serve.tables import LoginAttempt, utcnow

SESSION_COOKIE = "vmeta_session"
CSRF_COOKIE = "vmeta_csrf"
CSRF_HEADER = "X-CSRF-Token"
API_TOKEN_PREFIX = "vmt_"


def password_hasher(settings: Settings) -> PasswordHash:
    return PasswordHash(
        (
            Argon2Hasher(
                time_cost=settings.argon2_time_cost,
                memory_cost=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            ),
        )
    )


# A hash of a random password, verified against when the account does not exist, so a login for an
# unknown e-mail takes as long as one with a wrong password (no account enumeration by timing).
_DUMMY: dict[int, str] = {}


def dummy_hash(hasher: PasswordHash) -> str:
    key = id(hasher)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash(secrets.token_urlsafe(16))
    return _DUMMY[key]


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return bool(a) and bool(b) and secrets.compare_digest(a.encode(), b.encode())


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes (stored as UTC); make them comparable with aware ones."""
    from datetime import UTC

    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


class LoginThrottled(Exception):
    def __init__(self, retry_after: int, scope: str):
        super().__init__(scope)
        self.retry_after = retry_after
        self.scope = scope


def check_login_allowed(db: Session, settings: Settings, email: str, ip: str) -> None:
    """Raise LoginThrottled when the account or the IP already has too many failures in the window."""
    now = utcnow()
    since = now - timedelta(seconds=settings.login_window_s)
    for scope, column, value, limit in (
        ("account", LoginAttempt.email, email, settings.login_max_failures),
        ("ip", LoginAttempt.ip, ip, settings.login_ip_max_failures),
    ):
        count, oldest = db.execute(
            select(func.count(), func.min(LoginAttempt.at)).where(
                column == value, LoginAttempt.success.is_(False), LoginAttempt.at > since
            )
        ).one()
        if count >= limit:
            oldest = aware(oldest) or now
            retry = max(1, int((oldest + timedelta(seconds=settings.login_window_s) - now).total_seconds()) + 1)
            raise LoginThrottled(retry, scope)


def record_login(db: Session, email: str, ip: str, success: bool) -> None:
    db.add(LoginAttempt(email=email, ip=ip, success=success))
    if success:  # a successful login clears the account's failure count
        db.query(LoginAttempt).filter(LoginAttempt.email == email, LoginAttempt.success.is_(False)).delete()


def prune_login_attempts(db: Session, settings: Settings) -> int:
    cutoff = utcnow() - timedelta(seconds=max(settings.login_window_s * 10, 3600))
    return db.query(LoginAttempt).filter(LoginAttempt.at < cutoff).delete()
