"""GeoWarn shared plumbing: settings, database pool, migrations, errors and the command line."""

__version__ = "0.1.0"
