"""The audit read API of v1 (`GET /v1/subjects/{id}/processing-log`, `GET /v1/audit`) as typed models:
each access to a person's data, by which principal, for which purpose."""

from __future__ import annotations

from datetime import datetime

from likeness_client.models import Model


class AuditEntry(Model):
    #: Position in the audit trail (pages resume after it).
    sequence: int
    #: What was done, e.g. "photos.decrypted", "image.downloaded", "consent.granted".
    action: str
    at: datetime | None = None
    #: "subject" (the person's own token), "tenant" or "tenant:<client>", "service:<identity>".
    principal: str
    #: A consent purpose ("headshots", "team_look", "instant") or "export", "erasure", "retention",
    #: "review", "rectification", "deletion", "access".
    purpose: str | None = None
    outcome: str
    resource_id: str | None = None
    #: e.g. "not_a_crypto_erase".
    notice: str | None = None
    #: The service that wrote the record.
    actor: str
    #: The person's pseudonym (the tenant's trail only).
    subject_pseudonym: str | None = None
