"""Who may do what, where: roles and administrative-code scopes (pure).

A scope is a GB/T 2260 six-digit code. Its trailing zero pairs widen it: a county code
(330110) covers that county only, a city code (330100) every county of the city, a province
code (330000) the whole province. An alert, hazard point or device belongs to the county of
its hazard point; one with no county (a site or device not placed on a hazard point) is seen
only by users whose scope is a whole province.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

from geowarn.errors import InvalidInput

Role = Literal["admin", "duty_officer", "monitor", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)
Action = Literal["read", "read_personal", "act_on_alerts", "confirm_receipt", "report_field",
                 "command_devices", "manage_users", "import_warnings"]

# What each role may do within its counties. Residents' names and phones ("read_personal")
# are for the officers who must call them and the admins who keep the lists.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(get_args(Action)),
    "duty_officer": frozenset({"read", "read_personal", "act_on_alerts", "confirm_receipt",
                               "command_devices", "import_warnings"}),
    "monitor": frozenset({"read", "confirm_receipt", "report_field"}),
    "viewer": frozenset({"read"}),
}
_CODE = re.compile(r"^[1-9][0-9]{5}$")


def check_code(code: str) -> str:
    if not _CODE.match(code):
        raise InvalidInput(f"{code!r} is not a six-digit administrative code (e.g. 330110)")
    return code


def prefix(scope: str) -> str:
    """The part of a scope code that a covered county code must start with."""
    check_code(scope)
    if scope.endswith("0000"):
        return scope[:2]
    if scope.endswith("00"):
        return scope[:4]
    return scope


def covers(scopes: Iterable[str], county: str | None) -> bool:
    if county is None:
        return any(prefix(s) == s[:2] and s.endswith("0000") for s in scopes)
    return any(county.startswith(prefix(s)) for s in scopes)


def sql_prefixes(scopes: Sequence[str]) -> list[str]:
    """LIKE patterns selecting the counties the scopes cover (for `county_code LIKE ANY`)."""
    return [prefix(s) + "%" for s in scopes]


def whole_province(scopes: Iterable[str]) -> bool:
    return any(s.endswith("0000") for s in scopes)


def allowed(role: str, action: str) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return role
