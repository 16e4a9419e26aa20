"""A logging filter that masks phone numbers in records of libraries we do not control.

urllib3 logs every request line at DEBUG, query string included: a Twilio Messages list
filtered by To=%2B8613900000001 would put a resident's number in the log. The filter
rewrites such records (plain or URL-encoded E.164, and 11-digit Chinese mobiles) to the
masked form before any handler sees them.
"""

from __future__ import annotations

import logging
import re

from notify.phones import mask

_NUMBER = re.compile(r"(?:%2B|\+)[1-9][0-9]{6,14}|(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def mask_numbers(text: str) -> str:
    return _NUMBER.sub(lambda m: mask(m.group(0).replace("%2B", "+")), text)


class PhoneMaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = PhoneMaskFilter()


def install(*logger_names: str) -> None:
    """Attach the filter (once) to the named loggers."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
