"""Building the notifier's channels and tables from the settings (one place)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import psycopg

from geowarn.settings import Settings
from notify import messages
from notify.channels.base import Channel, Outgoing
from notify.channels.file import FileChannel
from notify.routing import RoutingTable, load_routing


def twilio_configured(s: Settings) -> bool:
    return bool(s.twilio_account_sid and s.twilio_auth_token and s.twilio_from)


def build_channels(s: Settings, *, url: str, echo: bool = False,
                   known_sid: Callable[[str], bool] | None = None,
                   contenders: Callable[[Outgoing], int] | None = None) -> dict[str, Channel]:
    path = s.notify_file or s.data_dir / "notifications.jsonl"
    channels: dict[str, Channel] = {"file": FileChannel(path, echo=echo)}
    if twilio_configured(s):
        from notify.channels.twilio_client import make_client
        from notify.channels.twilio_sms import TwilioSms
        from notify.channels.twilio_voice import TwilioVoice
        from notify.pacing import TokenBucket

        assert s.twilio_account_sid and s.twilio_auth_token and s.twilio_from
        client, http = make_client(s.twilio_account_sid, s.twilio_auth_token.get_secret_value(),
                                   api_base=s.twilio_api_base)
        # One bucket per sender number, shared by SMS and calls from it.
        bucket = TokenBucket(s.twilio_rate_per_s, burst=max(1, int(s.twilio_rate_per_s)))
        channels["sms"] = TwilioSms(client, http, s.twilio_from,
                                    callback_url=s.notify_callback_url, pacing=bucket)
        channels["voice"] = TwilioVoice(client, http, s.twilio_from,
                                        callback_url=s.notify_callback_url, pacing=bucket,
                                        known_sid=known_sid or sid_recorder(url),
                                        contenders=contenders or voice_contenders(url))
    else:
        # Without a provider, phone messages are written to the file channel.
        channels["sms"] = channels["voice"] = channels["file"]
    if s.notify_vapid_key_file:
        from geowarn import push_subscriptions as push_store
        from notify.channels.webpush import WebPush

        def subs(recipient_id: str) -> list[dict[str, object]]:
            with psycopg.connect(url) as conn:
                return list(push_store.subscriptions(conn, recipient_id))

        def gone(endpoint: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                push_store.deactivate(conn, endpoint)

        channels["push"] = WebPush(s.notify_vapid_key_file, s.notify_vapid_subject, subs,
                                   gone=gone)
    if s.notify_webhook_url:
        from notify.channels.webhook import Webhook

        secret = s.notify_webhook_secret.get_secret_value() if s.notify_webhook_secret else None
        channels["webhook"] = Webhook(s.notify_webhook_url, preset=s.notify_webhook_preset,
                                      secret=secret)
    return channels


def build_routing(s: Settings) -> RoutingTable:
    table = load_routing(s.notify_routing_file)
    return dataclasses.replace(table, duty_room_webhook=bool(s.notify_webhook_url),
                               web_push=bool(s.notify_vapid_key_file))


def build_templates(s: Settings) -> messages.Templates:
    return messages.Templates(s.notify_templates_dir or messages.SHIPPED)


def sid_recorder(url: str) -> Callable[[str], bool]:
    """Whether a provider id is already recorded on some delivery (voice reconciliation)."""
    def known(sid: str) -> bool:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT 1 FROM deliveries WHERE provider_id = %s",
                                (sid,)).fetchone() is not None
    return known


def voice_contenders(url: str) -> Callable[[Outgoing], int]:
    """How many other voice deliveries to the same recipient or (masked) number are in an
    uncertain attempt too (voice reconciliation cannot tell their calls apart)."""
    def count(msg: Outgoing) -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM deliveries WHERE channel = 'voice' AND state = 'sending' "
                "AND delivery_id <> %s AND (recipient_id = %s OR masked_phone = %s)",
                (msg.delivery_id, msg.recipient_id, msg.masked_to)).fetchone()
        return int(row[0]) if row else 0
    return count
