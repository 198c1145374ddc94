"""Objects copied aside before erasure and put back afterwards cannot be decrypted: the key is gone."""

from __future__ import annotations

import time

import pytest

from likeness.config import CommonSettings
from likeness.object_names import subject_prefix
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.vault_transit import KeyDestroyed, SubjectKeys
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

KINDS = {"photos": "photo", "faces": "face", "models": "lora", "renders": "render"}


def _wait_erased(gateway: GatewayClient, erasure_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = gateway.json("GET", f"/v1/erasures/{erasure_id}")
        if record["status"] == "completed":
            return record
        time.sleep(0.2)
    raise AssertionError("erasure did not complete")


def test_restored_copies_fail_with_key_destroyed(stack: DevStack, gateway: GatewayClient) -> None:
    settings = CommonSettings(
        **{k.removeprefix("LIKENESS_").lower(): v for k, v in stack.infra.endpoints.as_env().items()}
    )
    store = ObjectStore.from_settings(settings)
    sealed = SealedObjects(SubjectKeys.from_settings(settings), store)

    subject = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )
    tenant, subject_id = "dev", subject["id"]
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    uploaded = gateway.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    assert all(p["status"] == "accepted" for p in uploaded)

    prefix = subject_prefix(tenant, subject_id)
    copies = {obj.key: store.get_bytes(obj.key) for obj in store.list_current(prefix)}
    assert len(copies) == 2 * len(uploaded), "each accepted photo stores its crop and its face template"
    refs = [ObjectRef(tenant, subject_id, key, KINDS[key[len(prefix) :].split("/")[0]]) for key in copies]
    assert sealed.get_many(refs), "before erasure the owner can decrypt"

    erasure_id = gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    _wait_erased(gateway, erasure_id)
    assert store.list_versions(prefix) == [], "erasure deletes every version"

    for key, blob in copies.items():
        store.put_bytes(key, blob)  # a backup restored after the fact
    for ref in refs:
        with pytest.raises(KeyDestroyed):
            sealed.get(ref)
    store.delete_all_versions(prefix)
