"""What only retention asks of Vault Transit: the subject keys that exist and when each was created (for
destroying keys left without a live subject). Its Vault policy needs `list` on `transit/keys`.

A subclass of the shared SubjectKeys on the same client. (Candidates for `likeness.vault_transit`.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from likeness.vault_transit import KEY_PREFIX, KeyDestroyed, SubjectKeys, _Translate, key_name


class RetentionKeys(SubjectKeys):
    @classmethod
    def of(cls, keys: SubjectKeys) -> RetentionKeys:
        return cls(keys._client, keys._mount)

    def subject_ids(self) -> list[str]:
        """Subject ids of every `likeness-subject-*` key in the transit mount."""
        try:
            with _Translate("list keys"):
                response = self._transit.list_keys(mount_point=self._mount)
        except KeyDestroyed:
            return []  # Vault answers 404 to a LIST with nothing in it
        names = response.get("data", {}).get("keys", []) if isinstance(response, dict) else []
        return [str(name)[len(KEY_PREFIX) :] for name in names if str(name).startswith(KEY_PREFIX)]

    def created_at(self, subject_id: str) -> datetime | None:
        """When the key's first version was made; None if the key is gone."""
        try:
            with _Translate("read key"):
                response = self._transit.read_key(key_name(subject_id), mount_point=self._mount)
        except KeyDestroyed:
            return None
        versions = response["data"].get("keys", {})
        stamps = [value for value in versions.values() if isinstance(value, int | float)]
        return datetime.fromtimestamp(min(stamps), UTC) if stamps else None
