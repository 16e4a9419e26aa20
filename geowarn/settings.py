"""One settings object for the whole service, read from `GEOWARN_*` environment variables.

`get_settings()` is the only place settings are loaded; tests override them with
`override_settings(...)`. Nothing has a default secret: when no database or broker is
configured the service falls back to embedded ones (see geowarn/embedded.py).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geowarn.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOWARN_", env_file=None, extra="ignore")

    # PostgreSQL (with or without TimescaleDB). Unset: an embedded PostgreSQL under data_dir.
    database_url: str | None = None
    db_pool_min: int = Field(default=1, ge=1)
    db_pool_max: int = Field(default=8, ge=1)

    # MQTT broker, e.g. mqtt://127.0.0.1:1883. Unset: a local Mosquitto is started, or an
    # in-process broker when Mosquitto is not installed.
    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None

    # Where embedded services and generated files live; inside the project by default.
    data_dir: Path = PROJECT_ROOT / ".geowarn"
    contracts_dir: Path = PROJECT_ROOT / "firmware-contracts"

    # TimescaleDB tuning (ignored on plain PostgreSQL).
    chunk_interval: str = "1 day"
    compress_after: str = "7 days"
    # Keep raw readings this long; empty keeps them for ever (rollups are kept regardless).
    retention: str | None = None

    # Readings more than this far ahead of the server clock, or older than max_backlog, are
    # rejected: a device clock reset to 1970 must not write into the past.
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    max_backlog_days: float = Field(default=90.0, gt=0)

    # Ingest gateway. The client id must be fixed per gateway instance: the broker keeps its
    # persistent session (and the messages queued while it was away) under that id.
    gateway_name: str = "gateway-1"
    gateway_group: str = "geowarn"  # MQTT shared-subscription group of all gateways
    gateway_inflight: int = Field(default=1000, ge=1, le=65535)  # unacked messages at most
    gateway_batch_messages: int = Field(default=1000, ge=1)
    gateway_batch_ms: float = Field(default=50.0, gt=0)
    # A gateway of the group silent this long (and whose instance lock is free) is adopted by
    # a live one, which serves its broker session until it returns (ingest/takeover.py).
    gateway_takeover_s: float = Field(default=15.0, gt=0)
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    # A reused sequence number with another payload within this window is a firmware fault.
    duplicate_seq_window_s: float = Field(default=600.0, gt=0)

    # Notifications (notify/). Without Twilio settings messages go to the file channel
    # (notify_file). Secrets have no default and are never printed.
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None  # E.164 sender number
    twilio_api_base: str | None = None  # another base URL for Twilio's API (a proxy, a fake)
    twilio_rate_per_s: float = Field(default=1.0, gt=0)  # the account's rate per sender
    notify_callback_url: str | None = None  # public base URL of `geowarn notify --callbacks-port`
    notify_file: Path | None = None  # file channel; default data_dir/notifications.jsonl
    notify_routing_file: Path | None = None
    notify_templates_dir: Path | None = None
    notify_hotline: str = "12336"
    notify_webhook_url: str | None = None
    notify_webhook_secret: SecretStr | None = None
    notify_webhook_preset: str = Field(default="generic", pattern="^(generic|dingtalk|wecom)$")

    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if "://" not in v and "=" in v:
            # A libpq key=value string ("host=... dbname=...") is as good as a URL.
            from psycopg import ProgrammingError
            from psycopg.conninfo import conninfo_to_dict

            try:
                conninfo_to_dict(v)
            except ProgrammingError as exc:
                raise ValueError(f"not a valid libpq connection string: {exc}") from None
            return v
        scheme = urlsplit(v).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"must be a postgresql:// URL (got scheme {scheme!r}), "
                "e.g. postgresql://geowarn@127.0.0.1:5432/geowarn"
            )
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp"):
            raise ValueError(f"must be an mqtt:// URL (got scheme {parts.scheme!r})")
        if not parts.hostname:
            raise ValueError("must name a host, e.g. mqtt://127.0.0.1:1883")
        return v

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url or "mqtt://127.0.0.1").hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        parts = urlsplit(self.mqtt_url or "mqtt://127.0.0.1")
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def _load(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "GEOWARN_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        raise ConfigurationError("invalid settings:\n" + "\n".join(lines)) from None


_current: Settings | None = None


def get_settings() -> Settings:
    """The settings in force: loaded from the environment once, or as last overridden."""
    global _current
    if _current is None:
        _current = _load()
    return _current


def override_settings(**overrides: object) -> Settings:
    """Replace the process-wide settings: the environment's values plus `overrides`."""
    global _current
    _current = _load(**overrides)
    return _current


def reset_settings() -> None:
    global _current
    _current = None
