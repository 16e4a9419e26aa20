"""`geowarn exercise`: drills (演练) in a throwaway database.

    geowarn exercise start NAME [--title TEXT]
    geowarn exercise participants NAME --add household:HP-1-HH0001 person:town-1 ...
    geowarn exercise participants NAME --file participants.txt   (one recipient id a line)
    geowarn exercise list [--json]
    geowarn exercise end NAME
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geowarn.db import connect
from geowarn.errors import InvalidInput
from notify import exercises


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("exercise", help="drills: alerts raised while an exercise is active "
                        "reach only its participants, each text marked 【演练】/[DRILL]")
    esub = ex.add_subparsers(dest="exercise_command", metavar="ACTION", required=True)
    st = esub.add_parser("start", help="start an exercise in this (throwaway) database: every "
                         "alert opened from now on is a drill of it")
    st.add_argument("name")
    st.add_argument("--title", default="")
    st.set_defaults(func=_start)
    en = esub.add_parser("end", help="end the exercise (its alerts stay drills)")
    en.add_argument("name")
    en.set_defaults(func=_end)
    pa = esub.add_parser("participants", help="add, remove or list who takes part "
                         "(recipient ids as `geowarn notifications list` shows them)")
    pa.add_argument("name")
    pa.add_argument("--add", nargs="+", default=[], metavar="RECIPIENT")
    pa.add_argument("--remove", nargs="+", default=[], metavar="RECIPIENT")
    pa.add_argument("--file", type=Path, help="recipient ids, one a line (# comments)")
    pa.set_defaults(func=_participants)
    ls = esub.add_parser("list", help="exercises with their participants and alerts")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)


def _start(args: argparse.Namespace) -> int:
    with connect() as conn:
        exercises.start(conn, args.name, args.title)
    print(f"exercise {args.name} is active: alerts opened in this database are drills of it")
    return 0


def _end(args: argparse.Namespace) -> int:
    with connect() as conn:
        exercises.end(conn, args.name)
    print(f"exercise {args.name} ended")
    return 0


def _participants(args: argparse.Namespace) -> int:
    add = list(args.add)
    if args.file:
        try:
            lines = args.file.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {args.file}: {exc}") from None
        add += [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]
    with connect() as conn:
        added = exercises.add_participants(conn, args.name, add) if add else 0
        removed = (exercises.remove_participants(conn, args.name, args.remove)
                   if args.remove else 0)
        now = sorted(exercises.participants(conn, args.name))
    for rid in now:
        print(rid)
    print(f"exercise {args.name}: {len(now)} participants ({added} added, {removed} removed)")
    return 0


def _list(args: argparse.Namespace) -> int:
    with connect() as conn:
        found = exercises.list_exercises(conn)
    if args.json:
        print(json.dumps([{"name": e.name, "title": e.title,
                           "started_at": e.started_at.isoformat(),
                           "ended_at": e.ended_at.isoformat() if e.ended_at else None,
                           "participants": e.participants, "alerts": e.alerts}
                          for e in found], ensure_ascii=False, indent=1))
        return 0
    for e in found:
        state = f"ended {e.ended_at:%Y-%m-%d %H:%M}" if e.ended_at else "ACTIVE"
        print(f"{e.name:<24} {state:<22} {e.participants:>5} participants {e.alerts:>5} "
              f"alerts  {e.title}")
    print(f"{len(found)} exercises")
    return 0
