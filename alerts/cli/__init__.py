"""Command-line front ends: `geowarn engine ...` and `geowarn alerts ...`."""
