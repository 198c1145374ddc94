"""Per-item deletion: every stored version of one item of a subject, named here from its kind and ids.

The owner of the item's record (ingest: photos; trainer: trainings; renderer: renders and images) verifies
the caller's token and marks its record; retention, the only identity that may remove object versions,
then removes them. The prefix is built here from the kind and ids, checked whole, under the subject's own
prefix: a caller names an item, never a path, so no request can reach another item, kind or subject.
Deleting a version that is already gone succeeds, so a retry is harmless and answers 0.

This is not a crypto-erase: the subject's key still opens a restored backup of the item until erasure
destroys the key or the backup expires.
"""

from __future__ import annotations

from dataclasses import dataclass

from likeness import ids
from likeness.object_names import face_template_key, photo_key, render_image_key, subject_prefix
from likeness.v1 import retention_pb2

Kind = retention_pb2.ItemKind


class InvalidItem(ValueError):
    """The kind or an id is not one an item of that kind has."""


@dataclass(frozen=True)
class ItemPrefixes:
    """What one item occupies in the bucket: S3 prefixes whose every version belongs to it alone."""

    prefixes: tuple[str, ...]


#: Which id prefix each kind's `item_id` carries.
_ID_PREFIX = {
    Kind.ITEM_KIND_PHOTO: "pho",
    Kind.ITEM_KIND_MODEL: "trn",
    Kind.ITEM_KIND_RENDER: "ren",
    Kind.ITEM_KIND_IMAGE: "img",
}
#: The scope a caller's token needs to delete an item of each kind (that of the gateway route deleting it).
KIND_SCOPES = {
    Kind.ITEM_KIND_PHOTO: "photos:write",
    Kind.ITEM_KIND_MODEL: "trainings:write",
    Kind.ITEM_KIND_RENDER: "renders:write",
    Kind.ITEM_KIND_IMAGE: "renders:write",
}


def item_prefixes(
    tenant: str, subject_id: str, kind: retention_pb2.ItemKind.ValueType, item_id: str, parent_id: str = ""
) -> ItemPrefixes:
    """The prefixes of one item. Ids have a fixed length, so an object's full name never prefixes another's;
    a directory-like item ends in `/` all the same."""
    id_prefix = _ID_PREFIX.get(kind)
    if id_prefix is None:
        raise InvalidItem("unknown item kind")
    if not ids.is_valid_tenant(tenant) or not ids.is_valid_id(subject_id, "sub"):
        raise InvalidItem("not a subject id")
    if not ids.is_valid_id(item_id, id_prefix):
        raise InvalidItem(f"not a {id_prefix}_ id")
    if kind == Kind.ITEM_KIND_IMAGE:
        if not ids.is_valid_id(parent_id, "ren"):
            raise InvalidItem("an image needs its render's id")
        return ItemPrefixes((render_image_key(tenant, subject_id, parent_id, item_id),))
    if parent_id:
        raise InvalidItem("only an image has a parent")
    base = subject_prefix(tenant, subject_id)
    if kind == Kind.ITEM_KIND_PHOTO:
        # The crop and the face template computed from it: both are the photo.
        return ItemPrefixes(
            (photo_key(tenant, subject_id, item_id), face_template_key(tenant, subject_id, item_id))
        )
    if kind == Kind.ITEM_KIND_MODEL:
        # The LoRA, the face templates sealed beside it and any checkpoint left.
        return ItemPrefixes((f"{base}models/{item_id}/",))
    return ItemPrefixes((f"{base}renders/{item_id}/",))
