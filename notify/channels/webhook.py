"""A signed webhook, with presets for DingTalk and WeCom group robots (duty rooms).

generic: POST JSON {tag, recipient, text, subject} with X-GeoWarn-Delivery (the tag, so a
    receiver can drop a repeat) and X-GeoWarn-Signature: hex HMAC-SHA256 of
    "<timestamp>.<body>" under the shared secret, X-GeoWarn-Timestamp beside it.
dingtalk: the robot's "加签" scheme: timestamp (ms) and sign = base64(HMAC-SHA256(secret,
    "<timestamp>\\n<secret>")) added to the URL; body {"msgtype": "text", ...}.
wecom: the key is in the URL itself; body {"msgtype": "text", ...}.
A robot cannot be asked what it already received, so after a crash an uncertain webhook
delivery is not resent (lookup answers "cannot").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime
from urllib.parse import quote_plus

import httpx

from notify.channels.base import Outgoing
from notify.outcomes import Lookup, Outcome

PRESETS = ("generic", "dingtalk", "wecom")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def generic_signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()


class Webhook:
    name = "webhook"

    def __init__(self, url: str, *, preset: str = "generic", secret: str | None = None,
                 timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        if preset not in PRESETS:
            raise ValueError(f"webhook preset {preset!r} is not one of {', '.join(PRESETS)}")
        self.url, self.preset, self.secret = url, preset, secret
        self.client = client or httpx.Client(timeout=timeout)

    def request(self, msg: Outgoing, *, now_ms: int | None = None) -> tuple[str, bytes,
                                                                          dict[str, str]]:
        ts_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        url, headers = self.url, {"Content-Type": "application/json"}
        if self.preset == "generic":
            body = json.dumps({"tag": msg.tag, "recipient": msg.recipient_id, "text": msg.text,
                               "subject": msg.subject}, ensure_ascii=False).encode()
            ts = str(ts_ms // 1000)
            headers["X-GeoWarn-Delivery"] = msg.tag
            headers["X-GeoWarn-Timestamp"] = ts
            if self.secret:
                headers["X-GeoWarn-Signature"] = generic_signature(self.secret, ts, body)
        else:
            body = json.dumps({"msgtype": "text", "text": {"content": msg.text}},
                              ensure_ascii=False).encode()
            if self.preset == "dingtalk" and self.secret:
                sep = "&" if "?" in url else "?"
                url = f"{url}{sep}timestamp={ts_ms}&sign={dingtalk_sign(self.secret, ts_ms)}"
        return url, body, headers

    def send(self, msg: Outgoing) -> Outcome:
        if msg.valid_until <= msg.now:
            return Outcome("expired", code="expired", message="validity period passed")
        url, body, headers = self.request(msg)
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.ConnectError:
            return Outcome("retry", code="connect", message="webhook unreachable")
        except httpx.HTTPError as exc:
            return Outcome("uncertain", code="timeout", message=type(exc).__name__)
        if response.status_code == 429 or response.status_code >= 500:
            return Outcome("retry", code=str(response.status_code), message="webhook busy")
        if response.status_code >= 400:
            return Outcome("failed", code=str(response.status_code),
                           message=response.text[:200], tell_officers=True)
        # Robots answer 200 with {"errcode": n}; non-zero is a refusal.
        try:
            errcode = int(response.json().get("errcode", 0))
        except (ValueError, AttributeError):
            errcode = 0
        if errcode:
            return Outcome("failed", code=f"robot {errcode}", message=response.text[:200],
                           tell_officers=True)
        return Outcome("accepted", provider_id=f"webhook-{msg.tag}", state="delivered")

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup:
        return Lookup("cannot")
