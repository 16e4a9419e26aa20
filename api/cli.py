"""`geowarn users add|list|disable|reset-password|api-key` (`geowarn api` serves the API from
services/api_cli.py, which adds notify's callbacks)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from geowarn.errors import InvalidInput


def register(sub: Any) -> None:
    u = sub.add_parser("users", help="API and console users (roles, counties)")
    us = u.add_subparsers(dest="users_action", metavar="ACTION", required=True)
    add = us.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", required=True,
                     choices=("admin", "duty_officer", "monitor", "viewer"))
    add.add_argument("--county", action="append", required=True, metavar="CODE",
                     help="administrative code of the scope (repeatable): 330110 a county, "
                     "330100 a city, 330000 the province")
    add.add_argument("--name", help="display name")
    add.add_argument("--person", help="the people directory's contact id")
    add.add_argument("--hazard", action="append", default=[], metavar="HAZARD_ID",
                     help="a hazard point this monitor patrols and reports on (repeatable)")
    add.add_argument("--password-env", metavar="VAR", help="read the password from this "
                     "environment variable instead of asking (for scripts)")
    add.set_defaults(func=_add)
    ls = us.add_parser("list", help="list users")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    dis = us.add_parser("disable", help="disable a user and end their sessions")
    dis.add_argument("username")
    dis.set_defaults(func=_disable)
    rp = us.add_parser("reset-password", help="set a new password; ends every session")
    rp.add_argument("username")
    rp.add_argument("--password-env", metavar="VAR")
    rp.set_defaults(func=_reset)
    key = us.add_parser("api-key", help="create an API key for a machine client (shown once)")
    key.add_argument("username")
    key.add_argument("--name", required=True, help="what the key is for")
    key.set_defaults(func=_api_key)


def _password(var: str | None) -> str:
    if var:
        value = os.environ.get(var)
        if not value:
            raise InvalidInput(f"environment variable {var} is not set")
        return value
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask for the password: use --password-env VAR")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the two passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    from api.users import add_user
    from geowarn.db import connect

    password = _password(args.password_env)
    with connect() as conn:
        user = add_user(conn, args.username, password, args.role, args.county,
                        display_name=args.name, person_id=args.person,
                        hazard_ids=args.hazard)
        conn.commit()
    print(f"added {user.username} ({user.role}, counties {', '.join(user.counties)})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from api.users import list_users
    from geowarn.db import connect

    with connect() as conn:
        users = list_users(conn)
    if args.json:
        print(json.dumps([{"username": u.username, "name": u.display_name, "role": u.role,
                           "counties": list(u.counties), "disabled": u.disabled}
                          for u in users], ensure_ascii=False, indent=2))
        return 0
    print(f"{'USERNAME':<20} {'ROLE':<13} {'COUNTIES':<24} STATE")
    for u in users:
        print(f"{u.username:<20} {u.role:<13} {','.join(u.counties):<24} "
              f"{'disabled' if u.disabled else 'active'}")
    return 0


def _disable(args: argparse.Namespace) -> int:
    from api.users import disable_user
    from geowarn.db import connect

    with connect() as conn:
        disable_user(conn, args.username)
        conn.commit()
    print(f"disabled {args.username}; their sessions have ended")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from api.users import set_password
    from geowarn.db import connect

    password = _password(args.password_env)
    with connect() as conn:
        set_password(conn, args.username, password)
        conn.commit()
    print(f"new password set for {args.username}; their sessions have ended")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from api.users import create_api_key
    from geowarn.db import connect

    with connect() as conn:
        key = create_api_key(conn, args.username, args.name)
        conn.commit()
    print(f"API key for {args.username} ({args.name}); shown once, store it now:\n{key}")
    return 0
