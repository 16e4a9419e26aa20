"""The duty officers' HTTP API (FastAPI)."""
