"""The JSON bodies of the consent routes (`gateway.routes.consents`), and their conversion from retention's
messages. The purposes are the fixed list of `likeness.consent.PURPOSES`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gateway.convert import timestamp
from gateway.schemas import NOT_BLANK_PATTERN, REQUEST, WHEN, Purpose
from likeness.consent import BY_SUBJECT, is_live
from likeness.v1 import retention_pb2

GRANT_ID = "cns_01jbz3k7q8m2x4v6n9p0r5t7wy"


def _date_time_text(value: object) -> object:
    """An expiry is an ISO 8601 date and time, as text: not a number of seconds (which lax parsing takes)."""
    if value is not None and not isinstance(value, str):
        raise ValueError("expires_at is an ISO 8601 date and time (e.g. 2027-01-01T00:00:00Z)")
    return value


class GrantConsentRequest(BaseModel):
    model_config = ConfigDict(
        **REQUEST, json_schema_extra={"examples": [{"purpose": "headshots", "policy_version": "2026-01"}]}
    )
    purpose: Purpose = Field(
        description="`headshots` (train and render), `team_look` (renders in a team look), `instant` "
        "(one-photo renders without training)"
    )
    policy_version: str = Field(min_length=1, max_length=64, pattern=NOT_BLANK_PATTERN, examples=["2026-01"])
    # Parsed from text (strict mode takes no text for a datetime); a time without a zone is UTC.
    expires_at: Annotated[datetime | None, BeforeValidator(_date_time_text)] = Field(
        default=None, strict=False, description="When the grant lapses (ISO 8601); null: until withdrawn"
    )


class ConsentGrant(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": GRANT_ID,
                    "purpose": "headshots",
                    "policy_version": "2026-01",
                    "granted_at": WHEN,
                    "expires_at": None,
                    "granted_by": "subject",
                    "live": True,
                    "withdrawn_at": None,
                    "withdrawn_by": None,
                }
            ]
        }
    )
    id: str
    purpose: str
    policy_version: str
    granted_at: datetime | None
    expires_at: datetime | None
    granted_by: Literal["subject", "tenant"] = Field(
        description="`subject`: the person's own token; `tenant`: a tenant-level token"
    )
    live: bool = Field(description="Neither withdrawn nor expired now")
    withdrawn_at: datetime | None
    withdrawn_by: Literal["subject", "tenant"] | None


class ConsentList(BaseModel):
    grants: list[ConsentGrant] = Field(description="Every grant, oldest first (withdrawn ones included)")


class ConsentWithdrawal(BaseModel):
    withdrawn: list[ConsentGrant] = Field(description="The grants withdrawn now (empty: none was live)")
    erasure_id: str | None = Field(
        description="Set when the tenant's policy started the subject's erasure (no live grant was left)"
    )


class ConsentPolicy(BaseModel):
    model_config = ConfigDict(
        **REQUEST,
        json_schema_extra={"examples": [{"grants_need_subject_token": False, "erase_on_withdrawal": False}]},
    )
    grants_need_subject_token: bool = Field(
        description="Grants only from the person's own token: your back end cannot grant on their behalf"
    )
    erase_on_withdrawal: bool = Field(
        description="A withdrawal that leaves no live grant starts the erasure of the whole subject"
    )


Grantor = Literal["subject", "tenant"]


def _grantor(kind: str) -> Grantor:
    return "subject" if kind == BY_SUBJECT else "tenant"


def grant(value: retention_pb2.ConsentGrant, now: datetime) -> ConsentGrant:
    return ConsentGrant(
        id=value.id,
        purpose=value.purpose,
        policy_version=value.policy_version,
        granted_at=timestamp(value, "granted_at"),
        expires_at=timestamp(value, "expires_at"),
        granted_by=_grantor(value.granted_by),
        live=is_live(value, now),
        withdrawn_at=timestamp(value, "withdrawn_at"),
        withdrawn_by=_grantor(value.withdrawn_by) if value.withdrawn_by else None,
    )


def policy(value: retention_pb2.ConsentPolicy) -> ConsentPolicy:
    return ConsentPolicy(
        grants_need_subject_token=value.grants_need_subject_token,
        erase_on_withdrawal=value.erase_on_withdrawal,
    )
