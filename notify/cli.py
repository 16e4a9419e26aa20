"""`geowarn people`, `geowarn duty`, `geowarn notify` and `geowarn notifications`.

Phone numbers are always printed masked (138****0005): the directory is personal data.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geowarn.db import connect, database_url
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings
from geowarn.timeargs import time_arg
from notify import cap_feed, deliveries, escalation, people, setup
from notify.phones import mask, to_e164


def register(sub: argparse._SubParsersAction) -> None:
    pe = sub.add_parser("people", help="the people directory notifications go to")
    psub = pe.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    imp = psub.add_parser("import", help="import id,name,phone,language,roles,county_code CSV")
    imp.add_argument("file", type=Path, help="UTF-8 CSV with a header row (README: People)")
    imp.set_defaults(func=_people_import)
    ls = psub.add_parser("list", help="directory plus monitors/responsible linked from "
                                      "hazard points (numbers masked)")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=_people_list)

    du = sub.add_parser("duty", help="the duty roster")
    dsub = du.add_subparsers(dest="duty_command", metavar="ACTION", required=True)
    di = dsub.add_parser("import", help="import role,county_code,person_id,from,to CSV")
    di.add_argument("file", type=Path, help="UTF-8 CSV with a header row; from/to ISO 8601 "
                    "with an offset")
    di.set_defaults(func=_duty_import)
    dl = dsub.add_parser("list", help="every shift")
    dl.set_defaults(func=_duty_list)
    dn = dsub.add_parser("now", help="who is on duty for a county now (or --at)")
    dn.add_argument("county", help="administrative code (6 digits, e.g. 331122)")
    dn.add_argument("--at", type=time_arg, metavar="T", help="ISO 8601 with an offset, or a "
                    "duration back from now (24h); default now")
    dn.set_defaults(func=_duty_now)

    no = sub.add_parser("notify", help="run the notifier (outbox -> SMS, voice, webhook, "
                                       "file), or one of its tools")
    no.add_argument("--name", default="notifier-1", help="fixed per instance (reconciles "
                    "its own interrupted deliveries at start)")
    no.add_argument("--once", action="store_true", help="handle what is due, then exit")
    no.add_argument("--stats", action="store_true", help="print delivery counts and exit")
    no.add_argument("--callbacks-port", type=int, metavar="PORT",
                    help="also serve Twilio status callbacks and inbound SMS on PORT")
    no.add_argument("--echo", action="store_true", help="print file-channel messages")
    no.set_defaults(func=_notify)
    nsub = no.add_subparsers(dest="notify_command", metavar="TOOL")
    nt = nsub.add_parser("test", help="send a test SMS to PHONE through the configured channel")
    nt.add_argument("phone", help="E.164 (+8613800000000) or a national number (+86 assumed)")
    nt.set_defaults(func=_notify_test)
    na = nsub.add_parser("ack", help="acknowledge an alert and stop its escalation")
    na.add_argument("alert_id", type=int, help="as `geowarn alerts list` shows it")
    na.add_argument("--user", required=True, help="who acknowledges (recorded)")
    na.add_argument("--note", help="a note kept with the acknowledgement")
    na.set_defaults(func=_notify_ack)

    nv = nsub.add_parser("vapid-keys", help="generate the Web Push (VAPID) key pair: private "
                                            "key to FILE (0600), public key printed")
    nv.add_argument("--out", type=Path, required=True, metavar="FILE",
                    help="where the private key (PEM) goes: GEOWARN_NOTIFY_VAPID_KEY_FILE")
    nv.set_defaults(func=_notify_vapid)
    ns = nsub.add_parser("push-subscribe", help="register a browser's Web Push subscription "
                                                "for a directory person")
    ns.add_argument("person_id", help="a directory person's id (`geowarn people list`)")
    ns.add_argument("--endpoint", required=True, help="the subscription's push endpoint URL")
    ns.add_argument("--p256dh", required=True, help="the subscription's p256dh key")
    ns.add_argument("--auth", required=True, help="the subscription's auth secret")
    ns.set_defaults(func=_notify_subscribe)

    nl = sub.add_parser("notifications", help="who was told what, when, by which channel")
    lsub = nl.add_subparsers(dest="notifications_command", metavar="ACTION", required=True)
    nll = lsub.add_parser("list", help="deliveries (numbers masked)")
    nll.add_argument("--alert", type=int, metavar="ID", help="only this alert's deliveries")
    nll.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    nll.add_argument("--json", action="store_true", help="JSON instead of a table")
    nll.set_defaults(func=_notifications_list)
    nc = lsub.add_parser("cap", help="print the CAP 1.2 feed (newest first)")
    nc.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    nc.add_argument("--exercise", action="store_true",
                    help="the drills' messages (status Exercise) instead of the live ones")
    nc.set_defaults(func=_notifications_cap)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None


def _people_import(args: argparse.Namespace) -> int:
    found, problems = people.parse_people_csv(_read(args.file))
    with connect() as conn:
        result = people.import_people(conn, found)
    for p in problems:
        print(f"rejected {p}")
    print(f"people: {result.inserted} added, {result.updated} updated, "
          f"{len(problems)} rejected")
    return 1 if problems else 0


def _people_list(args: argparse.Namespace) -> int:
    with connect() as conn:
        found = people.everyone(conn)
    if args.json:
        print(json.dumps([{"id": c.person_id, "name": c.name, "phone": c.masked_phone,
                           "language": c.language, "roles": list(c.roles),
                           "county_code": c.county_code, "source": c.source}
                          for c in found], ensure_ascii=False, indent=1))
        return 0
    print(f"{'id':<32} {'name':<20} {'phone':<16} {'lang':<4} {'county':<9} roles / source")
    for c in found:
        print(f"{c.person_id:<32} {c.name:<20} {c.masked_phone:<16} {c.language:<4} "
              f"{c.county_code:<9} {','.join(c.roles)} / {c.source}")
    print(f"{len(found)} people")
    return 0


def _duty_import(args: argparse.Namespace) -> int:
    shifts, problems = people.parse_roster_csv(_read(args.file))
    with connect() as conn:
        result = people.import_roster(conn, shifts)
    for p in [*problems, *result.errors]:
        print(f"rejected {p}")
    print(f"shifts: {result.inserted} added, {result.updated} updated, "
          f"{len(problems) + len(result.errors)} rejected")
    return 1 if problems or result.errors else 0


def _duty_list(args: argparse.Namespace) -> int:
    with connect() as conn:
        shifts = people.roster(conn)
    for s in shifts:
        print(f"{s.role:<17} {s.county_code:<9} {s.person_id:<24} "
              f"{s.from_at.isoformat()} .. {s.to_at.isoformat()}")
    print(f"{len(shifts)} shifts")
    return 0


def _duty_now(args: argparse.Namespace) -> int:
    at = args.at or datetime.now(UTC)
    with connect() as conn:
        found = people.on_duty(conn, args.county, at)
    if not found:
        print(f"nobody is on duty for {args.county} at {at.isoformat()}")
        return 1
    for role, c in found:
        print(f"{role:<17} {c.person_id:<24} {c.name:<20} {c.masked_phone}")
    return 0


def _notify(args: argparse.Namespace) -> int:
    settings = get_settings()
    url = database_url()
    if args.stats:
        with connect() as conn:
            counts = deliveries.stats(conn)
        if not counts:
            print("no deliveries yet")
        for channel, states in counts.items():
            print(f"{channel:<8} " + "  ".join(f"{k} {v}" for k, v in states.items()))
        return 0
    from notify.notifier import Notifier

    channels = setup.build_channels(settings, url=url, echo=args.echo,
                                    known_sid=setup.sid_recorder(url),
                                    contenders=setup.voice_contenders(url))
    notifier = Notifier(url, channels, name=args.name, routing=setup.build_routing(settings),
                        templates=setup.build_templates(settings),
                        hotline=settings.notify_hotline)
    server = None
    try:
        if args.callbacks_port:
            from notify.callbacks import serve_in_thread

            server = serve_in_thread(url, settings, port=args.callbacks_port)
        if args.once:
            while notifier.step():
                pass
        else:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                notifier.run(stop)
            except KeyboardInterrupt:
                stop.set()
    finally:
        notifier.close()
        if server is not None:
            server.should_exit = True
    s = notifier.stats
    print(f"events planned {s.planned_events}, deliveries planned {s.deliveries_planned}, "
          f"accepted {s.sent}, reconciled {s.reconciled_found}, outcomes {s.outcomes}")
    return 0


def _notify_test(args: argparse.Namespace) -> int:
    settings = get_settings()
    phone = to_e164(args.phone)
    from notify.channels.base import Outgoing
    from notify.messages import Templates

    channels = setup.build_channels(settings, url=database_url(), echo=True)
    channel = channels["sms"]
    now = datetime.now(UTC)
    text = Templates(settings.notify_templates_dir or Templates().directory).render(
        "test", "zh", {})
    outcome = channel.send(Outgoing(0, "GWTEST", phone, mask(phone), text, "zh",
                                    now.replace(year=now.year + 1), now, "test"))
    print(f"{mask(phone)}: {outcome.kind} {outcome.provider_id or ''} "
          f"{outcome.code or ''} {outcome.message}".rstrip())
    return 0 if outcome.kind == "accepted" else 1


def _notify_ack(args: argparse.Namespace) -> int:
    with connect(autocommit=True) as conn:
        stopped = escalation.acknowledge(conn, args.alert_id, user=args.user, now=datetime.now(
            UTC), note=args.note)
    print(f"alert {args.alert_id} acknowledged by {args.user}"
          + ("; escalation stopped" if stopped else ""))
    return 0


def _notify_vapid(args: argparse.Namespace) -> int:
    from notify.channels.webpush import generate_vapid_keys

    try:
        public = generate_vapid_keys(args.out)
    except FileExistsError as exc:
        raise InvalidInput(str(exc)) from None
    print(f"private key written to {args.out} (mode 0600); set GEOWARN_NOTIFY_VAPID_KEY_FILE "
          "to it")
    print(f"public key (the console's applicationServerKey): {public}")
    return 0


def _notify_subscribe(args: argparse.Namespace) -> int:
    from geowarn import push_subscriptions as push_store

    with connect(autocommit=True) as conn:
        sid = push_store.subscribe(conn, args.person_id, args.endpoint, args.p256dh, args.auth)
    print(f"push subscription {sid} for {args.person_id}")
    return 0


def _row(d: deliveries.Delivery) -> dict[str, Any]:
    return {"delivery_id": d.delivery_id, "alert_id": d.alert_id, "event_id": d.event_id,
            "recipient": d.recipient_id, "name": d.recipient_name, "phone": d.masked_phone,
            "audience": d.audience, "channel": d.channel, "round": d.round,
            "purpose": d.purpose, "state": d.state, "error": d.error_code,
            "error_text": d.error_text, "shelter_id": d.shelter_id,
            "provider_id": d.provider_id, "created_at": d.created_at.isoformat(),
            "accepted_at": d.accepted_at.isoformat() if d.accepted_at else None,
            "text": d.body}


def _notifications_list(args: argparse.Namespace) -> int:
    with connect() as conn:
        found = deliveries.list_deliveries(conn, alert_id=args.alert, limit=args.limit)
    if args.json:
        print(json.dumps([_row(d) for d in found], ensure_ascii=False, indent=1))
        return 0
    for d in found:
        err = f" {d.error_code}" if d.error_code else ""
        print(f"{d.delivery_id:>6} alert {d.alert_id:<5} {d.created_at:%Y-%m-%d %H:%M:%S} "
              f"{d.channel:<7} {d.state:<11}{err} {d.audience:<18} {d.recipient_id} "
              f"{d.masked_phone or '-'}: {d.body[:60]}")
    print(f"{len(found)} deliveries")
    return 0


def _notifications_cap(args: argparse.Namespace) -> int:
    with connect() as conn:
        docs = cap_feed.feed(conn, limit=args.limit, exercise=args.exercise)
    for _identifier, xml in docs:
        print(xml)
    return 0
