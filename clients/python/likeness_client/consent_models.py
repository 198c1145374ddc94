"""The consent bodies of the v1 API (`/v1/subjects/{id}/consents`, `/v1/consent-policy`) as typed models."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from likeness_client.models import Model

#: The purposes a person can grant: train and render headshots, renders in a team look, one-photo renders.
PURPOSES = ("headshots", "team_look", "instant")


class ConsentGrant(Model):
    id: str
    purpose: str
    policy_version: str
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    #: "subject" (the person's own token) or "tenant" (a tenant-level token).
    granted_by: str
    #: Neither withdrawn nor expired when the gateway answered.
    live: bool
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None


class ConsentList(Model):
    grants: list[ConsentGrant] = Field(default_factory=list)


class ConsentWithdrawal(Model):
    withdrawn: list[ConsentGrant] = Field(default_factory=list)
    #: Set when the tenant's policy started the subject's erasure.
    erasure_id: str | None = None


class ConsentPolicy(Model):
    grants_need_subject_token: bool = False
    erase_on_withdrawal: bool = False
