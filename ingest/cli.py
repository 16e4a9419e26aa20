"""`geowarn ingest` (run a gateway, or --stats) and `geowarn deadletters`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from devices.redaction import redact_text
from devices.text import printable
from geowarn.db import connect
from geowarn.errors import InvalidInput
from geowarn.settings import get_settings
from geowarn.shutdown import stop_on_signals
from geowarn.timeargs import parse_time
from ingest.deadletters import list_dead_letters, payload_excerpt
from ingest.stats import summary_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="run the MQTT ingest gateway (or show its counters)")
    p.add_argument("--name", help="gateway instance name = fixed MQTT client id "
                                  "(default GEOWARN_GATEWAY_NAME)")
    p.add_argument("--group", help="shared-subscription group (default GEOWARN_GATEWAY_GROUP); "
                                   "'' subscribes without sharing")
    p.add_argument("--stats", action="store_true",
                   help="print the counters the running gateways last saved, and exit")
    p.add_argument("--json", action="store_true", help="with --stats or --peers: JSON output")
    p.add_argument("--log-interval", type=float, default=60.0, metavar="SECONDS",
                   help="log a summary line (rates, lag, queue, dead letters) this often "
                   "(default 60; the full counters are logged at debug level, -v)")
    p.add_argument("--peers", action="store_true",
                   help="list the gateways that announced themselves (alive, served by a "
                        "peer, or silent), and exit")
    p.add_argument("--forget-peer", metavar="NAME",
                   help="forget a gateway that is gone for good (e.g. a mistyped --name): "
                        "nobody adopts it again; a gateway serving its session drains and "
                        "deletes it")
    p.set_defaults(func=_ingest)

    d = sub.add_parser("deadletters", help="rejected messages with their reasons")
    d.add_argument("--since", help="ISO 8601 time or a duration back from now (30m, 24h, 7d)")
    d.add_argument("--device", help="only this device")
    d.add_argument("--reason", help="only this reason code")
    d.add_argument("--limit", type=int, default=50)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_deadletters)


def _ingest(args: argparse.Namespace) -> int:
    if args.stats:
        return _print_stats(args.json)
    if args.peers:
        return _print_peers(args.json)
    if args.forget_peer:
        return _forget_peer(args.forget_peer)
    from ingest.gateway import Gateway, GatewayConfig

    settings = get_settings()
    if settings.mqtt_url is None:
        raise InvalidInput("set GEOWARN_MQTT_URL (e.g. mqtt://127.0.0.1:1883) for the gateway")
    overrides: dict[str, Any] = {}
    if args.name:
        overrides["name"] = args.name
    if args.group is not None:
        overrides["group"] = args.group or None
    if args.log_interval <= 0:
        raise InvalidInput(f"--log-interval must be positive, got {args.log_interval:g}")
    overrides["log_interval_s"] = args.log_interval
    gateway = Gateway(GatewayConfig.from_settings(settings, **overrides))
    name = gateway.config.name
    with stop_on_signals(gateway._stop, "geowarn ingest", f"the ingest gateway {name} (the "
                         "batch in hand is committed or left unacknowledged at the broker, "
                         "nothing is lost)"):
        print(f"gateway {name} ingesting from {gateway.config.host}:{gateway.config.port}; "
              f"a summary line every {args.log_interval:g} s (full counters: geowarn ingest "
              "--stats, or -v); SIGTERM or Ctrl-C stops", file=sys.stderr)
        gateway.run_forever()
    snap = gateway.stats.snapshot()
    print(f"gateway {name} stopped after {snap['uptime_s']:.0f} s: "
          f"{snap.get('messages_received', 0)} messages received, "
          f"{snap.get('readings_stored', 0)} readings stored, "
          f"{snap.get('dead_letters', 0)} dead letters", file=sys.stderr)
    return 0


def _print_peers(as_json: bool) -> int:
    from ingest.takeover import list_peers

    settings = get_settings()
    now = datetime.now(UTC)
    with connect() as conn:
        peers = list_peers(conn)
    rows = []
    for p in peers:
        silent_s = (now - p.seen_at).total_seconds()
        if silent_s < settings.gateway_takeover_s:
            state = "alive"
        elif p.alive:
            state = "gone, served by a peer"
        else:
            state = "gone, not served"
        if silent_s >= settings.gateway_peer_expiry_s:
            state += ", expired"
        rows.append({"name": p.name, "group": p.group, "seen_at": p.seen_at.isoformat(),
                     "silent_s": round(silent_s, 1), "state": state})
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no gateway has announced itself yet")
    else:
        print(f"{'gateway':<24} {'group':<12} {'last seen (UTC)':<20} state")
    for r in rows:
        seen = datetime.fromisoformat(str(r["seen_at"])).astimezone(UTC)
        print(f"{r['name']:<24} {r['group'] or '-':<12} {seen:%Y-%m-%d %H:%M:%S}  {r['state']}")
    return 0


def _forget_peer(name: str) -> int:
    from ingest.takeover import forget_peer, list_peers

    settings = get_settings()
    with connect(autocommit=True) as conn:
        peer = next((p for p in list_peers(conn) if p.name == name), None)
        if peer is None:
            raise InvalidInput(f"no gateway named {name!r} has announced itself "
                               "(see `geowarn ingest --peers`)")
        silent_s = (datetime.now(UTC) - peer.seen_at).total_seconds()
        if silent_s < settings.gateway_takeover_s:
            raise InvalidInput(f"gateway {name!r} is alive (seen {silent_s:.0f} s ago); stop "
                               "it before forgetting it")
        forget_peer(conn, name)
    served = " the gateway serving its session drains it, then deletes it;" if peer.alive else ""
    print(f"forgot gateway {name}:{served} no gateway adopts it again")
    return 0


def _print_stats(as_json: bool) -> int:
    with connect() as conn:
        rows = conn.execute(
            "SELECT gateway, updated_at, started_at, counters FROM ingest_stats "
            "ORDER BY gateway").fetchall()
    if as_json:
        print(json.dumps([{"gateway": g, "updated_at": u.isoformat(),
                           "started_at": s.isoformat(), "counters": c}
                          for g, u, s, c in rows], indent=1))
        return 0
    if not rows:
        print("no gateway has reported yet (a running `geowarn ingest` saves its counters "
              "every 10 s)")
    now = datetime.now(UTC)
    for gateway, updated, _started, counters in rows:
        age = (now - updated).total_seconds()
        print(f"{gateway}: saved {updated.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z ({age:.0f} s "
              f"ago{'; not running?' if age > 60 else ''}), up {counters.get('uptime_s', 0):.0f} s")
        print(f"  since start: {summary_line(None, counters)}")
        for key in sorted(counters):
            value = counters[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in sorted(value.items())) or "none"
            print(f"  {key}: {value}")
    return 0


def _deadletters(args: argparse.Namespace) -> int:
    with connect() as conn:
        since = parse_time(args.since, datetime.now(UTC)) if args.since else None
        rows = list_dead_letters(conn, since=since, device_id=args.device,
                                 reason=args.reason, limit=args.limit)
    if args.json:
        print(json.dumps([{**{k: v for k, v in r.items() if k != "payload"},
                           "detail": redact_text(r["detail"] or ""),
                           "received_at": r["received_at"].isoformat(),
                           "reading_ts": r["reading_ts"].isoformat() if r["reading_ts"] else None,
                           "payload_excerpt": payload_excerpt(bytes(r["payload"]))}
                          for r in rows], ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        where = r["device_id"] or "?"
        if r["channel"]:
            where += f"/{r['channel']}"
        print(f"{r['received_at']:%Y-%m-%d %H:%M:%S} {r['reason']:<20} {where:<28} "
              f"{printable(r['topic'], 120)}\n    {printable(redact_text(r['detail'] or ''), 1000)}"
              f"\n    {payload_excerpt(bytes(r['payload']))}")
    if not rows:
        print("no dead letters")
    return 0
