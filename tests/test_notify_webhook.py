"""The signed webhook channel and its DingTalk and WeCom robot presets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import pytest

from notify.channels.base import Outgoing
from notify.channels.webhook import Webhook, generic_signature

NOW = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def outgoing(**kw: object) -> Outgoing:
    base = dict(delivery_id=7, tag="GW7", to=None, masked_to="-", text="【地灾预警】测试 #GW7",
                language="zh", valid_until=NOW + timedelta(hours=1), now=NOW,
                recipient_id="webhook:duty-room")
    base.update(kw)
    return Outgoing(**base)  # type: ignore[arg-type]


def recorder(status: int = 200, body: object = None) -> tuple[list[httpx.Request],
                                                               httpx.Client]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body if body is not None else {"errcode": 0})

    return seen, httpx.Client(transport=httpx.MockTransport(handle))


def test_generic_webhook_is_signed_and_tagged() -> None:
    seen, client = recorder()
    hook = Webhook("https://duty.example/hook", secret="s3cret", client=client)
    outcome = hook.send(outgoing())
    assert outcome.kind == "accepted"
    (req,) = seen
    body = req.content
    assert json.loads(body)["text"].endswith("#GW7")
    assert req.headers["X-GeoWarn-Delivery"] == "GW7"
    ts = req.headers["X-GeoWarn-Timestamp"]
    assert req.headers["X-GeoWarn-Signature"] == generic_signature("s3cret", ts, body)
    assert req.headers["X-GeoWarn-Signature"] != generic_signature("other", ts, body)


def test_dingtalk_preset_signs_the_url_as_the_robot_expects() -> None:
    seen, client = recorder()
    hook = Webhook("https://oapi.dingtalk.com/robot/send?access_token=abc", preset="dingtalk",
                   secret="SECabc", client=client)
    url, body, _ = hook.request(outgoing(), now_ms=1_700_000_000_000)
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["abc"] and query["timestamp"] == ["1700000000000"]
    expected = base64.b64encode(hmac.new(b"SECabc", b"1700000000000\nSECabc",
                                         hashlib.sha256).digest()).decode()
    assert unquote_plus(url.split("sign=")[1]) == expected
    assert json.loads(body) == {"msgtype": "text", "text": {"content": outgoing().text}}
    assert hook.send(outgoing()).kind == "accepted" and len(seen) == 1


@pytest.mark.parametrize(("status", "body", "kind"), [
    (200, {"errcode": 310000, "errmsg": "sign not match"}, "failed"),
    (429, {}, "retry"), (502, {}, "retry"), (400, {}, "failed")])
def test_robot_refusals(status: int, body: dict, kind: str) -> None:
    _, client = recorder(status, body)
    hook = Webhook("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", preset="wecom",
                   client=client)
    assert hook.send(outgoing()).kind == kind


def test_expired_and_unanswerable() -> None:
    seen, client = recorder()
    hook = Webhook("https://duty.example/hook", client=client)
    assert hook.send(outgoing(valid_until=NOW)).kind == "expired" and not seen
    assert hook.lookup(outgoing(), NOW).answer == "cannot"
