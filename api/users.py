"""API users, sessions and API keys in the database (migration 0120).

Passwords: argon2id (argon2-cffi's defaults, RFC 9106's second recommended profile), rehashed
on login when the parameters change. Session tokens and API keys: 256-bit random secrets
handed out once; only their SHA-256 is stored, so a copy of the table opens nothing. A
session ends at its expiry, on logout, when the password changes, or when the user is
disabled. Logins are throttled per username and per client address over a sliding window,
so guessing costs hours, not seconds.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from api.scope import check_code, check_role
from geowarn.errors import GeoWarnError, InvalidInput, NotFound

_hasher = PasswordHasher()


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Swap the argon2 parameters (tests use cheap ones); returns the previous hasher."""
    global _hasher
    previous, _hasher = _hasher, hasher
    return previous

MIN_PASSWORD = 10
# At most this many failed logins per username, and per client, in the window.
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = timedelta(minutes=15)
# A session's last_used_at is kept to this precision (see user_for_token).
TOUCH_EVERY = timedelta(minutes=1)


class AuthError(GeoWarnError):
    """Wrong credentials, an expired or revoked token, or a disabled user."""


class Throttled(GeoWarnError):
    """Too many failed logins; try again later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    display_name: str | None
    role: str
    counties: tuple[str, ...]
    disabled: bool
    person_id: str | None = None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    return password


_USER_COLUMNS = "user_id, username, display_name, role, counties, disabled_at IS NOT NULL, " \
                "person_id"
# The same columns read through a join, qualified by the users table's alias.
_USER_COLUMNS_U = ", ".join("u." + c.strip() for c in _USER_COLUMNS.split(","))


def _user(row: Sequence[Any]) -> User:
    uid, name, display, role, counties, disabled, person = row
    return User(int(uid), str(name), None if display is None else str(display), str(role),
                tuple(counties), bool(disabled), None if person is None else str(person))


def add_user(conn: psycopg.Connection, username: str, password: str, role: str,
             counties: list[str], *, display_name: str | None = None,
             person_id: str | None = None, hazard_ids: Sequence[str] = ()) -> User:
    check_role(role)
    if not counties:
        raise InvalidInput("a user needs at least one county (administrative code)")
    for c in counties:
        check_code(c)
    check_password(password)
    try:
        row = conn.execute(
            f"INSERT INTO api_users (username, display_name, role, counties, password_hash, "
            f"person_id, hazard_ids) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_USER_COLUMNS}",
            (username, display_name, role, counties, _hasher.hash(password), person_id,
             list(hazard_ids))
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise InvalidInput(f"user {username!r} exists already") from None
    except psycopg.errors.CheckViolation:
        raise InvalidInput(f"user name {username!r}: 2-64 letters, digits and _ . @ -") from None
    assert row is not None
    return _user(row)


def get_user(conn: psycopg.Connection, username: str) -> User:
    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM api_users WHERE username = %s",
                       (username,)).fetchone()
    if row is None:
        raise NotFound(f"no user {username!r}")
    return _user(row)


def list_users(conn: psycopg.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(
        f"SELECT {_USER_COLUMNS} FROM api_users ORDER BY username").fetchall()]


def disable_user(conn: psycopg.Connection, username: str) -> User:
    user = get_user(conn, username)
    conn.execute("UPDATE api_users SET disabled_at = coalesce(disabled_at, now()) "
                 "WHERE user_id = %s", (user.user_id,))
    _end_sessions(conn, user.user_id)
    return get_user(conn, username)


def set_password(conn: psycopg.Connection, username: str, password: str) -> None:
    user = get_user(conn, username)
    check_password(password)
    conn.execute("UPDATE api_users SET password_hash = %s, password_changed_at = now() "
                 "WHERE user_id = %s", (_hasher.hash(password), user.user_id))
    _end_sessions(conn, user.user_id)


def _end_sessions(conn: psycopg.Connection, user_id: int) -> None:
    conn.execute("UPDATE api_sessions SET revoked_at = now() WHERE user_id = %s "
                 "AND revoked_at IS NULL", (user_id,))


def _throttle(conn: psycopg.Connection, username: str, client: str, now: datetime) -> None:
    since = now - THROTTLE_WINDOW
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE username = %s), count(*) FILTER (WHERE client = %s), "
        "min(at) FROM api_login_attempts WHERE NOT ok AND at > %s "
        "AND (username = %s OR client = %s)",
        (username, client, since, username, client)).fetchone()
    assert row is not None
    by_user, by_client, oldest = row
    if by_user >= THROTTLE_FAILURES or by_client >= THROTTLE_FAILURES * 4:
        retry = int(((oldest + THROTTLE_WINDOW) - now).total_seconds()) + 1 if oldest else 60
        raise Throttled(max(retry, 1))


def login(conn: psycopg.Connection, username: str, password: str, client: str, *,
          session_hours: float, now: datetime | None = None) -> tuple[str, User, datetime]:
    """A new session token for correct credentials (AuthError otherwise, the same message
    whether the user exists or not)."""
    now = now or datetime.now(UTC)
    _throttle(conn, username, client, now)
    row = conn.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM api_users "
                       "WHERE username = %s", (username,)).fetchone()
    ok = False
    if row is not None:
        try:
            ok = _hasher.verify(str(row[-1]), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    else:
        _hasher.hash(password)  # the same work either way: no user enumeration by timing
    conn.execute("INSERT INTO api_login_attempts (username, client, at, ok) "
                 "VALUES (%s, %s, %s, %s)", (username, client, now, ok))
    if not ok or row is None:
        raise AuthError("wrong user name or password")
    user = _user(row[:-1])
    if user.disabled:
        raise AuthError("this user is disabled")
    if _hasher.check_needs_rehash(str(row[-1])):
        conn.execute("UPDATE api_users SET password_hash = %s WHERE user_id = %s",
                     (_hasher.hash(password), user.user_id))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=session_hours)
    conn.execute("INSERT INTO api_sessions (token_hash, user_id, created_at, expires_at) "
                 "VALUES (%s, %s, %s, %s)", (_digest(token), user.user_id, now, expires))
    return token, user, expires


def user_for_token(conn: psycopg.Connection, token: str, now: datetime | None = None) -> User:
    now = now or datetime.now(UTC)
    row = conn.execute(
        f"SELECT {_USER_COLUMNS_U}, "
        "s.last_used_at FROM api_sessions s JOIN api_users u USING (user_id) "
        "WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s "
        "AND u.disabled_at IS NULL",
        (_digest(token), now)).fetchone()
    if row is None:
        raise AuthError("the session has expired or was ended: log in again")
    # last_used_at to the minute, and never waiting: the row lock lasts as long as the
    # request's transaction, so updating it on every request made a console's parallel
    # requests with one token queue behind each other (bench/api: the map's 2 MB build
    # held up every other request of the session). Within the minute nothing is written.
    *user_row, last_used = row
    if last_used is None or last_used < now - TOUCH_EVERY:
        conn.execute(
            "UPDATE api_sessions SET last_used_at = %s WHERE token_hash = (SELECT token_hash "
            "FROM api_sessions WHERE token_hash = %s AND (last_used_at IS NULL OR "
            "last_used_at < %s) FOR UPDATE SKIP LOCKED)",
            (now, _digest(token), now - TOUCH_EVERY))
    return _user(user_row)


def user_for_api_key(conn: psycopg.Connection, key: str) -> User:
    row = conn.execute(
        f"SELECT {_USER_COLUMNS_U} "
        "FROM api_keys k JOIN api_users u USING (user_id) WHERE k.key_hash = %s "
        "AND k.revoked_at IS NULL AND u.disabled_at IS NULL", (_digest(key),)).fetchone()
    if row is None:
        raise AuthError("unknown or revoked API key")
    return _user(row)


def logout(conn: psycopg.Connection, token: str) -> None:
    conn.execute("UPDATE api_sessions SET revoked_at = now() WHERE token_hash = %s "
                 "AND revoked_at IS NULL", (_digest(token),))


def create_api_key(conn: psycopg.Connection, username: str, name: str) -> str:
    user = get_user(conn, username)
    key = "gwk_" + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO api_keys (key_hash, user_id, name) VALUES (%s, %s, %s)",
                 (_digest(key), user.user_id, name))
    return key
