"""GeoWarn's own exception hierarchy.

Foreign errors (psycopg SQLSTATEs, paho return codes, Twilio error codes) are translated into
these at one place each, so callers never branch on another library's error types.
"""


class GeoWarnError(Exception):
    """Base of every error GeoWarn raises on purpose."""


class ConfigurationError(GeoWarnError):
    """A setting is missing or invalid; the message says which and how to fix it."""


class DatabaseUnavailable(GeoWarnError):
    """The database cannot be reached (down, restarting, or the network is cut)."""


class MigrationError(GeoWarnError):
    """A migration failed or the schema is in a state the code does not understand."""


class NotFound(GeoWarnError):
    """A named object (device, hazard point, alert, ...) does not exist."""


class InvalidInput(GeoWarnError):
    """Input from a person or a file failed validation; the message says why."""
