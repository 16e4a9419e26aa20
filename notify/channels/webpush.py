"""Web Push to console users (pywebpush, VAPID), for the duty officers' browsers.

A delivery goes to every active subscription of the person (push_subscriptions); it is
accepted when one push service took it. A push service answering 404 or 410 says the
subscription is gone: it is deactivated. 429 and 5xx are retried (Retry-After honoured). The
payload is JSON {title, body, tag, alert}; the TTL is the delivery's remaining validity, so
a push service drops a stale warning. Push services cannot be asked what they received:
lookup answers "cannot".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from geowarn.push_subscriptions import vapid_public_key
from notify.channels.base import Outgoing
from notify.outcomes import Lookup, Outcome

Subscriptions = Callable[[str], Sequence[dict[str, Any]]]  # recipient id -> subscriptions


def generate_vapid_keys(path: Path) -> str:
    """Write a new VAPID private key (PEM, mode 0600) to `path`; returns the public key as
    the browser's applicationServerKey (base64url of the uncompressed point)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to replace a key in use")
    vapid = Vapid()
    vapid.generate_keys()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(vapid.private_pem())
    return vapid_public_key(path)


class WebPush:
    name = "push"

    def __init__(self, key_file: Path, subject: str, subscriptions: Subscriptions, *,
                 gone: Callable[[str], None] | None = None, timeout: float = 10.0) -> None:
        self.vapid = Vapid.from_file(str(key_file))
        self.subject = subject
        self.subscriptions = subscriptions
        self.gone = gone or (lambda endpoint: None)
        self.timeout = timeout
        self.session = requests.Session()

    def send(self, msg: Outgoing) -> Outcome:
        ttl = int((msg.valid_until - msg.now).total_seconds())
        if ttl < 1:
            return Outcome("expired", code="expired", message="validity period passed")
        subs = list(self.subscriptions(msg.recipient_id))
        if not subs:
            return Outcome("rejected", code="no_subscription",
                           message="no active push subscription")
        data = json.dumps({"title": "GeoWarn", "body": msg.text, "tag": msg.tag,
                           "alert": msg.subject}, ensure_ascii=False)
        accepted, retry, last, uncertain = 0, None, "", False
        for sub in subs:
            try:
                webpush(sub, data=data, vapid_private_key=self.vapid,
                        vapid_claims={"sub": self.subject}, ttl=ttl, timeout=self.timeout,
                        requests_session=self.session)
                accepted += 1
            except WebPushException as exc:
                status = exc.response.status_code if exc.response is not None else 0
                last = f"push service answered {status}"
                if status in (404, 410):
                    self.gone(str(sub["endpoint"]))
                elif status == 429 or status >= 500:
                    after = exc.response.headers.get("Retry-After") \
                        if exc.response is not None else None
                    retry = float(after) if after and after.isdigit() else retry
                    retry = retry if retry is not None else -1.0
            except (requests.ConnectTimeout, requests.ConnectionError) as exc:
                if isinstance(exc, requests.ReadTimeout):
                    uncertain = True  # it may have been taken; push cannot be asked
                last = type(exc).__name__
                retry = retry if retry is not None else -1.0
            except requests.Timeout as exc:
                last, uncertain = type(exc).__name__, True
        if accepted:
            return Outcome("accepted", provider_id=f"push-{msg.tag}", state="sent")
        if uncertain:
            return Outcome("uncertain", code="timeout", message=last)
        if retry is not None:
            return Outcome("retry", code="push_busy", message=last,
                           retry_after_s=retry if retry >= 0 else None)
        return Outcome("rejected", code="subscription_gone", message=last)

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup:
        return Lookup("cannot")
