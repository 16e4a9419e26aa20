"""Device and service-account secrets for the MQTT broker.

A secret is generated here (never chosen by a person), shown once by the CLI, and stored only
as a hash in Mosquitto's own "$7$" format: PBKDF2-HMAC-SHA512 with a random 12-byte salt,
written `$7$<iterations>$<base64 salt>$<base64 hash>`. Storing the broker's format as *the*
hash means `geowarn devices broker-config` can rebuild the password file at any time without
knowing a secret, and Python verifies the same string.

Iterations: secrets are 192-bit random tokens, so key stretching buys no resistance to guessing
(2^192 candidates is out of reach at any speed); the salt still defeats precomputation. The
cost, on the other hand, is paid by Mosquitto's single thread on every CONNECT: at 200k
iterations (~0.12 s each) a thousand devices reconnecting after a broker restart would stall
the broker for two minutes. DEFAULT_ITERATIONS is therefore ~100x Mosquitto's default (101)
but far below password-grade counts; the count is stored in each hash, so changing it later
only affects new and rotated secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

import psycopg

from devices.device_lock import lock_device
from geowarn.errors import InvalidInput

DEFAULT_ITERATIONS = 10_000
_SALT_BYTES = 12  # what mosquitto_passwd uses
_PREFIX = "$7$"


def generate_secret() -> str:
    """A new random secret: 24 random bytes, URL-safe base64 (32 characters), never starting
    with "-": `mosquitto_pub -P -x...` or `--password -x...` would read it as an option."""
    while True:
        secret = secrets.token_urlsafe(24)
        if not secret.startswith("-"):
            return secret


def hash_secret(secret: str, *, iterations: int = DEFAULT_ITERATIONS,
                salt: bytes | None = None) -> str:
    """The Mosquitto `$7$` hash of `secret` (a fresh random salt unless one is given)."""
    if not secret:
        raise InvalidInput("a secret must not be empty")
    if iterations < 1:
        raise InvalidInput(f"iterations must be positive, got {iterations}")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return (f"{_PREFIX}{iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def _parse(stored: str) -> tuple[int, bytes, bytes]:
    parts = stored.split("$")
    # "$7$101$salt$hash".split("$") -> ["", "7", "101", "salt", "hash"]
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        raise InvalidInput("not a Mosquitto $7$ (PBKDF2-SHA512) password hash")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        digest = base64.b64decode(parts[4], validate=True)
    except ValueError as exc:
        raise InvalidInput(f"malformed $7$ password hash: {exc}") from None
    if iterations < 1 or not salt or len(digest) != 64:
        raise InvalidInput("malformed $7$ password hash: bad iterations, salt or digest length")
    return iterations, salt, digest


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the `$7$` hash `stored` (constant-time comparison)."""
    iterations, salt, digest = _parse(stored)
    candidate = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)


# --- storage -------------------------------------------------------------------------------

def _audit(conn: psycopg.Connection, actor: str, action: str, device_id: str) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, object_type, object_id) "
        "VALUES (%s, %s, 'device', %s)", (actor, action, device_id))


def issue_secret(conn: psycopg.Connection, device_id: str, *, actor: str = "system",
                 iterations: int = DEFAULT_ITERATIONS) -> str:
    """Give `device_id` a new secret (first issue or rotation); returns it, for showing once.

    The old secret stops working once the broker's password file is regenerated.
    """
    with conn.transaction():
        if lock_device(conn, device_id) == "retired":
            raise InvalidInput(f"device {device_id!r} is retired; it cannot get a secret")
        secret = generate_secret()
        existed = conn.execute(
            """INSERT INTO device_credentials (device_id, secret_hash) VALUES (%s, %s)
               ON CONFLICT (device_id) DO UPDATE
               SET secret_hash = EXCLUDED.secret_hash, rotated_at = now(), revoked_at = NULL
               RETURNING (xmax <> 0)""",
            (device_id, hash_secret(secret, iterations=iterations))).fetchone()
        _audit(conn, actor, "rotate_secret" if existed and existed[0] else "issue_secret",
               device_id)
    return secret


def revoke(conn: psycopg.Connection, device_id: str) -> None:
    """Forget a device's secret hash (retirement); the row records when."""
    conn.execute("UPDATE device_credentials SET secret_hash = NULL, revoked_at = now() "
                 "WHERE device_id = %s", (device_id,))


def check_device_secret(conn: psycopg.Connection, device_id: str, secret: str) -> bool:
    """True when `secret` is the current secret of an unretired device."""
    row = conn.execute(
        """SELECT c.secret_hash FROM device_credentials c JOIN devices d USING (device_id)
           WHERE c.device_id = %s AND d.status <> 'retired'""", (device_id,)).fetchone()
    return bool(row and row[0] and verify_secret(secret, row[0]))


def credential_info(conn: psycopg.Connection, device_id: str
                    ) -> tuple[datetime, datetime | None, datetime | None] | None:
    """(created_at, rotated_at, revoked_at) of a device's credential, or None if never issued."""
    row = conn.execute("SELECT created_at, rotated_at, revoked_at FROM device_credentials "
                       "WHERE device_id = %s", (device_id,)).fetchone()
    return (row[0], row[1], row[2]) if row else None
