"""/api/push: Web Push for console users. The console asks for the VAPID public key,
subscribes with the browser's PushManager, and registers the subscription here; notify's
push channel then sends warnings to it (the user must be linked to a person of the people
directory: `geowarn users add --person ID`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Conn, CurrentUser
from api.schemas import ERRORS
from geowarn import push_subscriptions
from geowarn.settings import get_settings

router = APIRouter(prefix="/api/push", tags=["web push"], responses=ERRORS)
_B64URL = r"^[A-Za-z0-9_-]+=*$"


class Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A P-256 public key is 65 bytes (87 base64url characters), the auth secret 16 (22).
    p256dh: str = Field(min_length=80, max_length=100, pattern=_B64URL)
    auth: str = Field(min_length=16, max_length=44, pattern=_B64URL)


class SubscriptionIn(BaseModel):
    """What the browser's `PushSubscription.toJSON()` gives."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "endpoint": "https://push.example.net/send/abc123",
        "expirationTime": None,
        "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1X"
                           "bjhazAkj7I99e8QcYP7DkM",
                 "auth": "tBHItJI5svbpez7KI4CCXg"}}]})
    endpoint: str = Field(min_length=12, max_length=2000, pattern=r"^https://")
    expirationTime: int | None = None  # noqa: N815 (the browser's name)
    keys: Keys


class SubscriptionOut(BaseModel):
    id: int
    person_id: str
    endpoint: str


class UnsubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(min_length=12, max_length=2000, pattern=r"^https://")


class VapidOut(BaseModel):
    public_key: str


class PushStatusOut(BaseModel):
    configured: bool = Field(description="the server sends Web Push (it has a VAPID key)")
    linked: bool = Field(description="your user is linked to a person of the directory, "
                                     "whom warnings are addressed to")
    endpoints: list[str] = Field(description="your active subscriptions' endpoints: a "
                                             "browser whose own is listed gets your warnings")


@router.get("/status", response_model=PushStatusOut,
            summary="whether this server sends Web Push, whether you can receive it, and "
                    "your active subscriptions (the console's notification switch)")
def push_status(conn: Conn, user: CurrentUser) -> dict[str, Any]:
    path = get_settings().notify_vapid_key_file
    subs = push_subscriptions.subscriptions(conn, f"person:{user.person_id}") \
        if user.person_id is not None else []
    return {"configured": path is not None and path.is_file(),
            "linked": user.person_id is not None,
            "endpoints": [str(s["endpoint"]) for s in subs]}


@router.get("/vapid-public-key", response_model=VapidOut,
            summary="the applicationServerKey to subscribe with")
def vapid_key(user: CurrentUser) -> dict[str, str]:
    path = get_settings().notify_vapid_key_file
    if path is None or not path.is_file():
        raise HTTPException(404, "Web Push is not set up here (GEOWARN_NOTIFY_VAPID_KEY_FILE)")
    return {"public_key": push_subscriptions.vapid_public_key(path)}


def _person(user: CurrentUser) -> str:
    if user.person_id is None:
        raise HTTPException(422, "person: your user is not linked to the people directory "
                                 "(geowarn users add --person ID)")
    return user.person_id


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED,
             response_model=SubscriptionOut, summary="register this browser for warnings")
def subscribe(body: SubscriptionIn, conn: Conn, user: CurrentUser) -> dict[str, Any]:
    person = _person(user)
    sid = push_subscriptions.subscribe(conn, person, body.endpoint, body.keys.p256dh,
                                       body.keys.auth)
    return {"id": sid, "person_id": person, "endpoint": body.endpoint}


@router.post("/subscriptions/remove", status_code=status.HTTP_204_NO_CONTENT,
             summary="stop warnings to this browser")
def unsubscribe(body: UnsubscribeIn, conn: Conn, user: CurrentUser) -> None:
    person = _person(user)
    if not push_subscriptions.deactivate(conn, body.endpoint, person_id=person):
        raise HTTPException(404, "endpoint: no active subscription of yours")
