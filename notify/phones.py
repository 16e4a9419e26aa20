"""Phone numbers: E.164 normalisation and masking.

Numbers are personal data. The full number exists only where it is needed to send (people,
households, hazard-point monitors); everything printed, logged or kept about a delivery uses
`mask`. A Chinese mobile number written nationally (13800000005) becomes +8613800000005.
"""

from __future__ import annotations

import re

from geowarn.errors import InvalidInput
from gis.model import mask_phone

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_SEPARATORS = re.compile(r"[ \-().]")


class PhoneError(InvalidInput):
    """A number cannot be made E.164; the message shows it masked."""


def to_e164(text: str, *, default_country: str = "86") -> str:
    """`text` as +<country><number>: '+86 138-0000-0005', '008613800000005' and
    '13800000005' all give '+8613800000005'."""
    raw = _SEPARATORS.sub("", text.strip())
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        if not raw.isdigit():
            raise PhoneError(f"phone {mask(text)} has characters other than digits")
        # A national trunk prefix 0 (landlines: 0578-...) is dropped after the country code.
        raw = "+" + default_country + raw.lstrip("0")
    if not _E164.match(raw):
        raise PhoneError(f"phone {mask(text)} is not a valid E.164 number "
                         "(+ country code and 7-15 digits)")
    return raw


def is_e164(text: str) -> bool:
    return bool(_E164.match(text))


def mask(phone: str | None) -> str:
    """+86138****0005; '-' when there is no number."""
    return mask_phone(phone) or "-"
