"""/api/auth: log in (a session token, also set as an HttpOnly cookie for the console's
server-sent events), log out, change one's password, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api import users
from api.deps import Conn, CurrentUser, bearer_token
from api.schemas import ERRORS, LoginIn, LoginOut, PasswordIn, UserOut
from geowarn.settings import get_settings

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERRORS)
COOKIE = "geowarn_session"


def user_out(user: users.User) -> UserOut:
    return UserOut(username=user.username, display_name=user.display_name, role=user.role,
                   counties=list(user.counties))


@router.post("/login", response_model=LoginOut, responses={401: {}, 429: {}})
def login(body: LoginIn, request: Request, response: Response, conn: Conn) -> LoginOut:
    client = request.client.host if request.client else "unknown"
    try:
        token, user, expires = users.login(conn, body.username, body.password, client,
                                           session_hours=get_settings().api_session_hours)
    except users.AuthError:
        conn.commit()  # the failed attempt counts towards the throttle
        raise
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        expires=expires, path="/")
    return LoginOut(token=token, expires_at=expires, user=user_out(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, response: Response, conn: Conn, user: CurrentUser) -> None:
    token = bearer_token(request)
    if token:
        users.logout(conn, token)
    response.delete_cookie(COOKIE, path="/")


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return user_out(user)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT, responses={401: {}})
def change_password(body: PasswordIn, request: Request, conn: Conn,
                    user: CurrentUser) -> None:
    """Every session of the user ends, this one included: log in again."""
    client = request.client.host if request.client else "unknown"
    try:
        users.login(conn, user.username, body.current_password, client, session_hours=0.01)
    except users.AuthError:
        conn.commit()
        raise
    users.set_password(conn, user.username, body.new_password)
