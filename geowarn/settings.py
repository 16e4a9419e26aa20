"""One settings object for the whole service, read from `GEOWARN_*` environment variables.

`get_settings()` is the only place settings are loaded; tests override them with
`override_settings(...)`. Nothing has a default secret: when no database or broker is
configured the service falls back to embedded ones (see geowarn/embedded.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geowarn.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEOWARN_", env_file=None, extra="ignore")

    # Every field has a description: it is the meaning column of README's settings table,
    # which is generated from this class (`geowarn settings --markdown`, tests/test_settings.py).
    database_url: str | None = Field(default=None, description=(
        "`postgresql://user@host:5432/db` or a libpq `key=value` string; unset: the embedded "
        "demo PostgreSQL in `GEOWARN_DATA_DIR/pgdata` (announced on stderr)"))
    db_pool_min: int = Field(default=1, ge=1, description="connections the pool keeps open")
    db_pool_max: int = Field(default=8, ge=1, description="connections the pool opens at most")

    mqtt_url: str | None = Field(default=None, description=(
        "`mqtt://host:1883`; unset: `geowarn demo` starts its own broker, services refuse "
        "to start"))
    mqtt_username: str | None = Field(default=None, description="the gateway's broker account")
    mqtt_password: SecretStr | None = Field(default=None,
                                            description="password of that account")

    data_dir: Path = Field(default=PROJECT_ROOT / ".geowarn", description=(
        "where embedded services and generated files live"))
    contracts_dir: Path = Field(default=PROJECT_ROOT / "firmware-contracts", description=(
        "the device contract (schemas, catalogue) the decoders validate against"))

    timescaledb: Literal["auto", "require", "off"] = Field(default="auto", description=(
        "`auto`: TimescaleDB when the server can load it (installed but not preloaded is an "
        "error saying how to fix it); `require`: refuse plain PostgreSQL; `off`: never "
        "enable it"))
    chunk_interval: str = Field(default="1 day",
                                description="TimescaleDB chunk interval of `readings`")
    compress_after: str = Field(default="7 days",
                                description="TimescaleDB compresses chunks older than this")
    retention: str | None = Field(default=None, description=(
        "drop raw readings older than this (TimescaleDB; rollups are kept); unset: keep"))

    # A device clock reset to 1970 must not write into the past, nor one set ahead into the
    # future.
    max_clock_skew_s: float = Field(default=300.0, gt=0, description=(
        "readings further ahead of the server clock are refused (seconds)"))
    max_backlog_days: float = Field(default=90.0, gt=0,
                                    description="readings older than this are refused (days)")

    # The client id must be fixed per gateway instance: the broker keeps its persistent
    # session (and the messages queued while it was away) under that id.
    gateway_name: str = Field(default="gateway-1", description=(
        "name of this gateway instance; its fixed MQTT client id (its persistent session) is "
        "`{GEOWARN_MQTT_USERNAME}:{name}`, an id no device may take"))
    gateway_group: str = Field(default="geowarn",
                               description="MQTT shared-subscription group of all gateways")
    gateway_inflight: int = Field(default=1000, ge=1, le=65535, description=(
        "unacknowledged messages at most (the broker's Receive Maximum)"))
    gateway_batch_messages: int = Field(default=1000, ge=1,
                                        description="messages per database batch at most")
    gateway_batch_ms: float = Field(default=50.0, gt=0, description=(
        "a batch gathers messages for at most this long while the previous one is being "
        "committed; with the writer idle it is committed at once (milliseconds)"))
    gateway_takeover_s: float = Field(default=15.0, gt=0, description=(
        "a gateway of the group silent this long (its instance lock free) is adopted by a "
        "live one, which serves its broker session until it returns (seconds)"))
    gateway_peer_expiry_s: float = Field(default=7 * 24 * 3600.0, gt=0, description=(
        "a peer silent this long is forgotten; one being served has its broker session "
        "drained and deleted first (seconds; the broker drops a session after 7 days)"))
    gateway_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, description=(
        "message bytes one gateway holds at most, from receipt to acknowledgement (inbox and "
        "batches); at least 16 x GEOWARN_MAX_PAYLOAD_BYTES"))
    mqtt_keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive (seconds)")
    max_payload_bytes: int = Field(default=256 * 1024, ge=1024, description=(
        "larger messages go to the dead letters; the broker refuses above twice this"))
    duplicate_seq_window_s: float = Field(default=600.0, gt=0, description=(
        "a sequence number reused with another payload within this window is a firmware "
        "fault (seconds)"))

    # Notifications (notify/). Without Twilio settings messages go to the file channel
    # (notify_file). Secrets have no default and are never printed.
    twilio_account_sid: str | None = Field(default=None, description=(
        "Twilio account SID; unset: notifications go to the file channel"))
    twilio_auth_token: SecretStr | None = Field(default=None,
                                                description="Twilio auth token (secret)")
    twilio_from: str | None = Field(default=None, description="E.164 sender number for SMS "
                                                              "and voice")
    twilio_api_base: str | None = Field(default=None, description=(
        "another base URL for Twilio's API (a proxy, a fake); unset: Twilio's own"))
    twilio_rate_per_s: float = Field(default=1.0, gt=0, description=(
        "messages per second per sender (the account's rate)"))
    notify_callback_url: str | None = Field(default=None, description=(
        "externally visible base URL (scheme, host, port, proxy path prefix) serving "
        "`/twilio/status` and `/twilio/inbound`: `geowarn api`, or `geowarn notify "
        "--callbacks-port`; Twilio signs the URL it calls, so signatures are checked "
        "against this, never the local address"))
    notify_file: Path | None = Field(default=None, description=(
        "the file channel; unset: `GEOWARN_DATA_DIR/notifications.jsonl`"))
    notify_routing_file: Path | None = Field(default=None, description=(
        "routing rules per level and audience; unset: the shipped ones"))
    notify_templates_dir: Path | None = Field(default=None, description=(
        "SMS/voice templates; unset: the shipped ones"))
    notify_hotline: str = Field(default="12336", description=(
        "hotline number the messages name"))
    notify_webhook_url: str | None = Field(default=None, description=(
        "webhook channel URL; unset: no webhook"))
    notify_webhook_secret: SecretStr | None = Field(default=None, description=(
        "signing secret of the webhook channel"))
    notify_webhook_preset: str = Field(default="generic", pattern="^(generic|dingtalk|wecom)$",
                                       description="webhook body format: generic, dingtalk "
                                                   "or wecom")
    notify_vapid_key_file: Path | None = Field(default=None, description=(
        "VAPID private key (PEM) for Web Push, from `geowarn notify vapid-keys`; unset: "
        "no Web Push"))
    cap_sender_code: str | None = Field(default=None, pattern=r"^[1-9][0-9]{13}$",
                                        description=(
        "issuing-unit code (14 digits: GB/T 2260 area, GB/T 4657 institution, internal, "
        "extension) for CAP identifiers in the national profile's form "
        "`CODE_YYYYMMDDhhmmss_N`; unset: `geowarn-ALERT-EVENT`"))
    notify_vapid_subject: str = Field(default="mailto:duty@localhost", description=(
        "contact (mailto: or https: URL) sent to push services in the VAPID claims"))

    # The duty officers' API and console (api/, `geowarn api`).
    api_host: str = Field(default="127.0.0.1", description=(
        "address `geowarn api` listens on (0.0.0.0 to serve other machines)"))
    api_port: int = Field(default=8080, ge=1, le=65535, description="port of `geowarn api`")
    api_session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description=(
        "a console login lasts this long (hours; a duty shift)"))
    api_cors_origins: str = Field(default="", description=(
        "comma-separated origins allowed to call the API from a browser; empty: CORS off"))
    production: bool = Field(default=False, description=(
        "production mode: `geowarn api` refuses to start without a database URL, with CORS "
        "`*` or non-https origins, with Twilio but no auth token or https callback URL, a "
        "webhook without secret, or a VAPID key others can read"))

    log_level: str = Field(default="INFO", description=(
        "log level of the services (DEBUG, INFO, WARNING, ...; `-v` is DEBUG)"))

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, v: str) -> str:
        name = v.strip().upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {v!r}; use DEBUG, INFO, WARNING or ERROR")
        return name

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
