"""What only retention asks of the object store: versions with their age, deleting chosen versions, and
the subjects that have a prefix in the bucket (for the orphan sweep).

A subclass of the shared ObjectStore on the same client. (Candidates for `likeness.store` once another
service needs them.)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import urllib3
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from likeness.store import ObjectStore, StoreError, _translate


@dataclass(frozen=True)
class Version:
    key: str
    version_id: str | None
    size: int
    last_modified: datetime | None


#: Object kinds by the first path segment after the subject prefix (metrics labels: a fixed set).
KINDS = {"photos": "photo", "faces": "face", "models": "model", "renders": "render"}


def kind_of(key: str) -> str:
    """`t/<tenant>/s/<subject>/photos/...` -> "photo"; anything else -> "other"."""
    parts = key.split("/")
    return KINDS.get(parts[4], "other") if len(parts) > 4 else "other"


class RetentionStore(ObjectStore):
    @classmethod
    def of(cls, store: ObjectStore) -> RetentionStore:
        # No retries inside: erasures, the reaper and the orphan sweep retry on their own cadence and
        # record each attempt, which a call blocking through an outage would hide.
        return cls(store._client, store.bucket, retry_seconds=0.0)

    def versions(self, prefix: str) -> list[Version]:
        """Every version and delete marker under `prefix`."""
        try:
            return [
                Version(
                    key=str(o.object_name),
                    version_id=o.version_id,
                    size=int(o.size or 0),
                    last_modified=o.last_modified,
                )
                for o in self._client.list_objects(
                    self.bucket, prefix=prefix, recursive=True, include_version=True
                )
            ]
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, prefix) from None  # the cause names the object key

    def delete_versions(self, versions: Sequence[Version]) -> tuple[int, int]:
        """Deletes exactly these versions; returns (distinct objects, bytes)."""
        if not versions:
            return 0, 0
        targets = [DeleteObject(v.key, v.version_id) for v in versions]
        try:
            errors = list(self._client.remove_objects(self.bucket, targets))
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, versions[0].key) from None  # the cause names the object key
        if errors:
            raise StoreError(f"S3 could not delete {len(errors)} object versions")
        return len({v.key for v in versions}), sum(v.size for v in versions)

    def delete_under(self, prefixes: Sequence[str], cutoff: datetime | None = None) -> list[Version]:
        """Deletes every version under the prefixes (only those written by `cutoff`, when given); returns
        what it deleted."""
        chosen = [
            version
            for prefix in prefixes
            for version in self.versions(prefix)
            if cutoff is None or version.last_modified is None or version.last_modified <= cutoff
        ]
        self.delete_versions(chosen)
        return chosen

    def subjects_with_objects(self, tenants: Collection[str] | None = None) -> list[tuple[str, str]]:
        """(tenant, subject) of every subject prefix in the bucket, listed by delimiter (not per object)."""
        found = []
        try:
            for tenant in tenants if tenants is not None else self._children("t/"):
                for subject in self._children(f"t/{tenant}/s/"):
                    found.append((tenant, subject))
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, "t/") from None  # the cause names the object key
        return found

    def _children(self, prefix: str) -> list[str]:
        names = []
        for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=False):
            name = str(o.object_name)
            if name.endswith("/"):
                names.append(name[len(prefix) :].rstrip("/"))
        return names
