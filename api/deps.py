"""Typed dependencies of the API's routes: a database connection in a transaction, the
current user (session token or API key), and permission checks by role and county."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Header, HTTPException, Request, status

from api.scope import allowed, covers
from api.users import AuthError, User, user_for_api_key, user_for_token
from geowarn.db import transaction


def get_conn() -> Iterator[psycopg.Connection]:
    """One pooled connection and one transaction per request (committed when the route
    returns, rolled back when it raises)."""
    with transaction() as conn:
        yield conn


# scope="function": the transaction ends when the route returns, before the response is
# sent. With the default ("request") it would commit only after the body went out, and a
# browser's next request (the console's, right after a login or an acknowledgement) could
# arrive first and not see it (tests/test_console_api.py).
Conn = Annotated[psycopg.Connection, Depends(get_conn, scope="function")]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Server-sent events (EventSource) cannot set headers: the console passes the token in
    # a cookie set at login.
    return request.cookies.get("geowarn_session") or None


def current_user(request: Request, conn: Conn,
                 x_api_key: Annotated[str | None, Header()] = None) -> User:
    return authenticate(conn, request, x_api_key)


def current_user_brief(request: Request,
                       x_api_key: Annotated[str | None, Header()] = None) -> User:
    """The user, from a connection held only while checking: for long responses (event
    streams) that must not keep a pooled connection for hours."""
    with transaction() as conn:
        return authenticate(conn, request, x_api_key)


def authenticate(conn: psycopg.Connection, request: Request, x_api_key: str | None) -> User:
    try:
        if x_api_key:
            return user_for_api_key(conn, x_api_key)
        token = bearer_token(request)
        if token is None:
            raise AuthError("log in first (Authorization: Bearer TOKEN or X-API-Key)")
        return user_for_token(conn, token)
    except AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                            headers={"WWW-Authenticate": "Bearer"}) from None


CurrentUser = Annotated[User, Depends(current_user)]
StreamingUser = Annotated[User, Depends(current_user_brief)]


def require(user: User, action: str, county: str | None = None, *,
            check_county: bool = True) -> None:
    """403 unless the user's role allows `action` and, when `check_county`, the object's
    county lies in the user's scope."""
    if not allowed(user.role, action):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"role {user.role} may not {action.replace('_', ' ')}")
    if check_county and not covers(user.counties, county):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"outside your counties ({', '.join(user.counties)})")
