"""The API's request and response shapes, apart from the storage rows they are made from."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LevelName = Literal["none", "blue", "yellow", "orange", "red"]
# Text PostgreSQL can store: no NUL byte. Said in the schema, so a generated request the
# schema allows is not then refused (422) by the database.
NO_NUL = r"^[^\x00]*$"


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"username": "duty.xihu", "password": "correct horse battery"}]})
    username: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    username: str
    display_name: str | None
    role: str
    counties: list[str]


class LoginOut(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=10, max_length=1024)


class Target(BaseModel):
    type: Literal["hazard", "site", "device"]
    id: str
    name: str | None
    county_code: str | None


class AlertOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 17, "target": {"type": "hazard", "id": "HP-330110-001", "name": "西湖区某滑坡",
                             "county_code": "330110"},
        "hazard_kind": "deformation", "status": "open", "level": "red", "peak_level": "red",
        "opened_at": "2026-07-01T02:00:00+00:00", "last_data_time": "2026-07-03T06:10:00+00:00",
        "acknowledged_by": None, "acknowledged_at": None, "resolved_by": None,
        "resolved_at": None, "resolve_reason": None, "exercise": None}]})
    id: int
    target: Target
    hazard_kind: str
    status: Literal["open", "acknowledged", "resolved"]
    level: LevelName
    peak_level: LevelName
    opened_at: datetime
    last_data_time: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_reason: str | None
    exercise: str | None = Field(default=None, examples=["flood-drill-2026"], description=(
        "the exercise (演练) this alert is a drill of: show it as a drill, never as a live "
        "warning; null for a live alert"))


class EventOut(BaseModel):
    id: int
    kind: str
    level: LevelName
    previous_level: LevelName
    data_time: datetime
    recorded_at: datetime
    actor: str
    evidence: dict[str, Any]


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class AlertDetailOut(AlertOut):
    events: list[EventOut]
    audit: list[AuditOut]


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"note": "called the monitor, patrol on the way"}]})
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"reason": "site inspected: the crack meter was knocked by a falling "
                                "branch"}]})
    reason: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)


class ErrorOut(BaseModel):
    """Every refusal: a message naming what is wrong (for a bad field, the field)."""
    detail: str
    errors: list[dict[str, Any]] | None = None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# The refusals any authenticated route may give; routers declare them so the OpenAPI schema
# documents every status code the API sends.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("not logged in, or the session ended"),
    403: _error("your role or counties do not allow it"),
    404: _error("no such object"),
    422: _error("a parameter or the body is invalid; the message names the field"),
    429: _error("too many failed logins"),
    503: _error("the database is unreachable; retry"),
}
