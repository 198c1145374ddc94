"""Per-item deletion names what it removes from the kind and the ids alone (`retention.item_purge`)."""

from __future__ import annotations

import pytest

from likeness import ids
from likeness.v1 import retention_pb2
from retention.item_purge import InvalidItem, item_prefixes

K = retention_pb2.ItemKind
SUBJECT = "sub_01m93b45ex719ydgk2wswt94fq"  # fixed: parametrized test ids include it
BASE = f"t/t1/s/{SUBJECT}/"


def test_each_kind_names_its_objects_under_the_subjects_prefix() -> None:
    photo, training, render, image = (ids.new_id(p) for p in ("pho", "trn", "ren", "img"))
    assert item_prefixes("t1", SUBJECT, K.ITEM_KIND_PHOTO, photo).prefixes == (
        f"{BASE}photos/{photo}",
        f"{BASE}faces/{photo}",
    )
    assert item_prefixes("t1", SUBJECT, K.ITEM_KIND_MODEL, training).prefixes == (
        f"{BASE}models/{training}/",
    )
    assert item_prefixes("t1", SUBJECT, K.ITEM_KIND_RENDER, render).prefixes == (f"{BASE}renders/{render}/",)
    assert item_prefixes("t1", SUBJECT, K.ITEM_KIND_IMAGE, image, render).prefixes == (
        f"{BASE}renders/{render}/{image}",
    )


#: Fixed ids for parametrized cases: pytest-xdist requires every worker to collect the same test ids, and
#: parametrized ids include the values.
PHOTO_ID, TRAINING_ID, RENDER_ID, IMAGE_ID = (
    "pho_01m93b45ex719ydgk2wswt94fk",
    "trn_01m93b45ex719ydgk2wswt94fm",
    "ren_01m93b45ex719ydgk2wswt94fn",
    "img_01m93b45ex719ydgk2wswt94fp",
)


@pytest.mark.parametrize(
    ("kind", "item_id", "parent_id"),
    [
        (K.ITEM_KIND_UNSPECIFIED, PHOTO_ID, ""),
        (K.ITEM_KIND_PHOTO, TRAINING_ID, ""),  # an id of another kind
        (K.ITEM_KIND_PHOTO, "", ""),  # nothing: would name every photo
        (K.ITEM_KIND_PHOTO, "pho_", ""),
        (K.ITEM_KIND_MODEL, TRAINING_ID + "\n", ""),
        (K.ITEM_KIND_MODEL, "../../s/other", ""),
        (K.ITEM_KIND_RENDER, RENDER_ID + "/", ""),
        (K.ITEM_KIND_IMAGE, IMAGE_ID, ""),  # an image needs its render
        (K.ITEM_KIND_IMAGE, IMAGE_ID, "../x"),
        (K.ITEM_KIND_RENDER, RENDER_ID, RENDER_ID),  # only an image has a parent
    ],
)
def test_anything_but_whole_ids_of_the_kind_names_nothing(
    kind: retention_pb2.ItemKind.ValueType, item_id: str, parent_id: str
) -> None:
    with pytest.raises(InvalidItem):
        item_prefixes("t1", SUBJECT, kind, item_id, parent_id)


@pytest.mark.parametrize(
    ("tenant", "subject_id"), [("t1", ""), ("t1", "sub_x/.."), ("", SUBJECT), ("t/1", SUBJECT)]
)
def test_the_subject_must_be_a_whole_tenant_and_subject_id(tenant: str, subject_id: str) -> None:
    with pytest.raises(InvalidItem):
        item_prefixes(tenant, subject_id, K.ITEM_KIND_PHOTO, ids.new_id("pho"))
