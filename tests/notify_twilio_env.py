"""The real twilio client pointed at the local fake, and the callbacks app on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from notify.callbacks import create_app
from notify.channels.base import Channel
from notify.channels.file import FileChannel
from notify.channels.twilio_client import make_client
from notify.channels.twilio_sms import TwilioSms
from notify.channels.twilio_voice import TwilioVoice
from notify.notifier import Notifier
from notify.setup import sid_recorder
from tests.fixtures.fake_twilio import ACCOUNT, TOKEN, FakeTwilio

SENDER = "+8610690000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def callbacks_server(db_url: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(create_app(db_url, auth_token=TOKEN,
                                                      public_base=base),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # uvicorn offers no event to wait on
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("callbacks server did not start")
        time.sleep(0.02)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def channels(fake: FakeTwilio, db_url: str, callback: str | None, tmp: Path, *,
             timeout: float = 5.0) -> dict[str, Channel]:
    client, http = make_client(ACCOUNT, TOKEN, api_base=fake.base_url, timeout=timeout)
    return {"sms": TwilioSms(client, http, SENDER, callback_url=callback),
            "voice": TwilioVoice(client, http, SENDER, callback_url=callback,
                                 known_sid=sid_recorder(db_url)),
            "file": FileChannel(tmp / "file.jsonl")}


def notifier(fake: FakeTwilio, db_url: str, callback: str | None, tmp: Path, *,
             timeout: float = 5.0, **kw: object) -> Notifier:
    return Notifier(db_url, channels(fake, db_url, callback, tmp, timeout=timeout),
                    **kw)  # type: ignore[arg-type]
