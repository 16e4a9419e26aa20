"""`geowarn engine`: run the warning engine; `geowarn engine rules …`: manage rule overrides.

    geowarn engine [--name N] [--clock wall|data] [--period S] [--quiet-hours H]
                   [--backfill-days D] [--search-period S]
                   [--partitions N [--member NAME] [--takeover-after S]]
    geowarn engine rules set SCOPE ID '{"warning_m": 15.2}'
    geowarn engine rules list
    geowarn engine rules delete SCOPE ID
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from psycopg.types.json import Jsonb

from alerts.engine.data import load_channels, load_overrides
from alerts.engine.leadership import PartitionedService
from alerts.engine.rules import SCOPES, resolve, validate_override
from alerts.engine.service import EngineConfig, Service
from geowarn.db import connect, database_url
from geowarn.errors import InvalidInput, NotFound
from geowarn.shutdown import stop_on_signals


def register(sub: Any) -> None:
    p = sub.add_parser("engine", help="run the warning engine (readings -> alerts)")
    p.add_argument("--name", default="engine", help="engine name (its saved state's key)")
    p.add_argument("--clock", choices=("wall", "data"), default="wall",
                   help="judge silence and validity at the wall clock or the newest data")
    p.add_argument("--period", type=float, default=30.0, help="periodic tick, seconds")
    p.add_argument("--quiet-hours", type=float, default=6.0,
                   help="auto-resolve alerts cleared for this long (data time)")
    p.add_argument("--backfill-days", type=float, default=7.0,
                   help="wall clock: how far back a never-judged channel starts")
    p.add_argument("--search-period", type=float, default=300.0,
                   help="seconds between searches of the whole registry for readings no "
                        "NOTIFY announced (the gateway announces all of its own)")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="split the registry into N partitions (by county) shared by every "
                        "`geowarn engine --partitions N` of this --name: each partition has one "
                        "leader, the others stand by (default: one engine leads everything)")
    p.add_argument("--member", default=None,
                   help="with --partitions: this process's name in the group (default "
                        "host-pid); partitions go round robin over the members' names")
    p.add_argument("--takeover-after", type=float, default=15.0, metavar="S",
                   help="with --partitions: a leader whose heartbeat is this old is fenced "
                        "and replaced (a killed one is replaced within a second)")
    p.set_defaults(func=_run)
    # Optional: without a rule command `geowarn engine` runs the engine.
    rules = p.add_subparsers(dest="engine_command", required=False,
                             title="rule commands (optional; without one the engine runs)",
                             metavar="[rules-set|rules-list|rules-delete]")
    s = rules.add_parser("rules-set", help="set the rule override of a scope")
    s.add_argument("scope", choices=SCOPES)
    s.add_argument("scope_id")
    s.add_argument("params", help="JSON object of alerts.engine.rule_params.RuleParams fields")
    s.set_defaults(func=_rules_set)
    ls = rules.add_parser("rules-list", help="list rule overrides as JSON")
    ls.set_defaults(func=_rules_list)
    d = rules.add_parser("rules-delete", help="delete the rule override of a scope")
    d.add_argument("scope", choices=SCOPES)
    d.add_argument("scope_id")
    d.set_defaults(func=_rules_delete)


def _run(args: argparse.Namespace) -> int:
    config = EngineConfig(name=args.name, clock=args.clock, period_s=args.period,
                          quiet_s=args.quiet_hours * 3600.0,
                          backfill_s=args.backfill_days * 86400.0,
                          search_period_s=args.search_period)
    if args.partitions is None and (args.member or args.takeover_after != 15.0):
        raise InvalidInput("--member and --takeover-after need --partitions")
    stop = threading.Event()
    with stop_on_signals(stop, "geowarn engine", f"the warning engine {args.name} (the tick "
                         "in hand finishes; a standby engine, if one runs, takes the lead)"):
        if args.partitions is None:
            Service(database_url(), config).run(stop)
        else:
            PartitionedService(database_url(), config, args.partitions, member=args.member,
                               takeover_after_s=args.takeover_after).run(stop)
    print(f"geowarn engine: {args.name} stopped", file=sys.stderr)
    return 0


def _rules_set(args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"rule params are not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise InvalidInput("rule params must be a JSON object")
    with connect() as conn:
        validate_override(args.scope, args.scope_id, params,
                          _channel_method(conn, args.scope_id) if args.scope == "channel"
                          else None)
        conn.execute(
            "INSERT INTO engine_rules (scope, scope_id, params, updated_by) VALUES "
            "(%s, %s, %s, current_user) ON CONFLICT (scope, scope_id) DO UPDATE SET "
            "params = excluded.params, updated_by = excluded.updated_by, updated_at = now()",
            (args.scope, args.scope_id, Jsonb(params)))
    return 0


def _channel_method(conn: Any, scope_id: str) -> str | None:
    """The method that judges a channel under the other scopes' rules (None: no such
    channel yet, so nothing to check against)."""
    if not scope_id.isdigit():
        return None  # validate_override explains
    channels = [c for c in load_channels(conn) if c.channel_id == int(scope_id)]
    if not channels:
        return None
    others = {k: v for k, v in load_overrides(conn).items() if k != ("channel", scope_id)}
    return resolve(channels, others)[0].method


def _rules_list(args: argparse.Namespace) -> int:
    with connect() as conn:
        rows = conn.execute("SELECT scope, scope_id, params FROM engine_rules "
                            "ORDER BY scope, scope_id").fetchall()
    print(json.dumps([{"scope": s, "scope_id": i, "params": p} for s, i, p in rows], indent=2))
    return 0


def _rules_delete(args: argparse.Namespace) -> int:
    with connect() as conn:
        cur = conn.execute("DELETE FROM engine_rules WHERE scope = %s AND scope_id = %s",
                           (args.scope, args.scope_id))
        if cur.rowcount == 0:
            raise NotFound(f"no rule override for {args.scope} {args.scope_id!r}")
    return 0
