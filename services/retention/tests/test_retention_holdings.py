"""What is held about a subject and when each item goes (`retention.holdings.describe`): pure logic over
object versions, deadlines and grants as retention reads them (the real-stack test is
tests/test_subject_summary_e2e.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from likeness.timeutil import to_timestamp
from likeness.v1 import retention_pb2
from retention.deadlines import Deadline, DeadlineKind
from retention.holdings import LogHoldings, describe
from retention.storage import Version

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TENANT = "acme"
SUBJECT = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
BASE = f"t/{TENANT}/s/{SUBJECT}/"
PHOTO_A = "pho_01jbz3m2a4c6e8g0j2k4m6p8ra"
PHOTO_B = "pho_01jbz3m2a4c6e8g0j2k4m6p8rb"
TRAINING = "trn_01jbz3m2a4c6e8g0j2k4m6p8rt"
RENDER = "ren_01jbz3m2a4c6e8g0j2k4m6p8rr"
IMAGE = "img_01jbz3m2a4c6e8g0j2k4m6p8ri"


def subject(*, inactivity_days: int = 300, hard_cap_days: int = 1095) -> retention_pb2.Subject:
    return retention_pb2.Subject(
        tenant=TENANT,
        id=SUBJECT,
        status=retention_pb2.SUBJECT_STATUS_ACTIVE,
        created_at=to_timestamp(T0),
        last_activity_at=to_timestamp(T0),
        delete_by=to_timestamp(T0 + timedelta(days=hard_cap_days)),
        retention=retention_pb2.RetentionSchedule(
            photos_days=20,
            photos_deleted_after_training=True,
            models_days=40,
            renders_days=30,
            inactivity_days=inactivity_days,
        ),
    )


def version(key: str, size: int, at: datetime, version_id: str = "v1") -> Version:
    return Version(key=BASE + key, version_id=version_id, size=size, last_modified=at)


def items(answer: retention_pb2.DescribeHoldingsResponse, name: str) -> dict[str, retention_pb2.HeldItem]:
    [category] = [c for c in answer.categories if c.name == name]
    return {item.id: item for item in category.items}


def due(item: retention_pb2.HeldItem) -> datetime:
    return item.delete_by.ToDatetime(tzinfo=UTC)


def test_photos_stored_before_a_training_go_with_it_and_later_ones_on_their_own_deadline() -> None:
    trained = T0 + timedelta(days=2)
    versions = [
        version(f"photos/{PHOTO_A}", 1000, T0),
        version(f"faces/{PHOTO_A}", 600, T0),
        version(f"photos/{PHOTO_B}", 2000, trained + timedelta(hours=1)),
    ]
    deadlines = [
        Deadline(TENANT, SUBJECT, DeadlineKind.PHOTO, PHOTO_A, due=T0 + timedelta(days=20)),
        Deadline(TENANT, SUBJECT, DeadlineKind.PHOTO, PHOTO_B, due=trained + timedelta(days=20)),
        # Due later than now (a reaper that has not run yet): what it will delete shows its date.
        Deadline(
            TENANT,
            SUBJECT,
            DeadlineKind.TRAINED_PHOTOS,
            TRAINING,
            due=trained + timedelta(days=1),
            cutoff=trained,
        ),
    ]
    answer = describe(subject(), versions, deadlines, [], None, T0)
    photos = items(answer, "photos")
    assert photos[PHOTO_A].deletion_rule == "photos_deleted_after_training"
    assert due(photos[PHOTO_A]) == trained + timedelta(days=1)
    assert photos[PHOTO_B].deletion_rule == "photos_days", "stored after the training's cutoff"
    assert due(photos[PHOTO_B]) == trained + timedelta(days=20)
    assert items(answer, "face_templates")[PHOTO_A].deletion_rule == "photos_deleted_after_training"


def test_every_stored_version_counts_and_delete_markers_hold_nothing() -> None:
    versions = [
        version(f"models/{TRAINING}/lora", 5000, T0, "v1"),
        version(f"models/{TRAINING}/lora", 5100, T0 + timedelta(hours=1), "v2"),
        version(f"models/{TRAINING}/ckpt-00000010", 7000, T0),
        version(f"models/{TRAINING}/faces", 900, T0),
        version(f"photos/{PHOTO_A}", 0, T0, "marker"),  # only a delete marker left: nothing held
        version(f"renders/{RENDER}/{IMAGE}", 3000, T0),
        version("scratch/leftover", 10, T0),
    ]
    answer = describe(subject(), versions, [], [], None, T0)
    totals = {category.name: (category.count, category.bytes) for category in answer.categories}
    assert totals["models"] == (1, 5000 + 5100 + 7000), "the LoRA's two versions and its checkpoint"
    assert items(answer, "models")[TRAINING].versions == 3
    assert totals["face_templates"] == (1, 900)
    assert items(answer, "face_templates")[TRAINING].parent_id == TRAINING
    assert totals["photos"] == (0, 0)
    assert totals["renders"] == totals["images"] == (1, 3000)
    assert items(answer, "images")[IMAGE].parent_id == RENDER
    assert totals["other"] == (1, 10), "an object of no known kind is still reported: totals match storage"
    assert (
        sum(b for name, (_, b) in totals.items() if name != "renders") == 5000 + 5100 + 7000 + 900 + 3000 + 10
    )


def test_before_its_deadline_is_recorded_an_item_s_date_comes_from_the_schedule() -> None:
    answer = describe(subject(), [version(f"renders/{RENDER}/{IMAGE}", 3000, T0)], [], [], None, T0)
    image = items(answer, "images")[IMAGE]
    assert (image.deletion_rule, due(image)) == ("renders_days", T0 + timedelta(days=30))


def test_the_subject_s_own_deadline_wins_when_it_comes_first_or_at_the_same_time() -> None:
    versions = [version(f"models/{TRAINING}/lora", 5000, T0), version(f"renders/{RENDER}/{IMAGE}", 3000, T0)]
    deadlines = [Deadline(TENANT, SUBJECT, DeadlineKind.MODEL, TRAINING, due=T0 + timedelta(days=40))]
    answer = describe(subject(inactivity_days=30), versions, deadlines, [], None, T0)
    model = items(answer, "models")[TRAINING]
    assert (model.deletion_rule, due(model)) == ("inactivity", T0 + timedelta(days=30))
    image = items(answer, "images")[IMAGE]
    assert (image.deletion_rule, due(image)) == ("inactivity", T0 + timedelta(days=30)), (
        "a tie: the subject's"
    )
    assert (answer.deletion_rule, answer.delete_by.ToDatetime(tzinfo=UTC)) == (
        "inactivity",
        T0 + timedelta(days=30),
    )


def test_grants_the_log_and_the_last_access() -> None:
    live = retention_pb2.ConsentGrant(id="cns_1", purpose="headshots", granted_at=to_timestamp(T0))
    withdrawn = retention_pb2.ConsentGrant(
        id="cns_2", purpose="instant", granted_at=to_timestamp(T0), withdrawn_at=to_timestamp(T0)
    )
    newest = T0 + timedelta(days=3)
    log = LogHoldings(count=7, bytes=0, newest_at=newest, kept_until=newest + timedelta(days=2190))
    answer = describe(subject(), [], [], [live, withdrawn], log, T0 + timedelta(days=4))
    assert [grant.id for grant in answer.live_grants] == ["cns_1"]
    assert set(items(answer, "consents")) == {"cns_1", "cns_2"}, "the history is held, withdrawn grants too"
    [category] = [c for c in answer.categories if c.name == "processing_log"]
    assert category.count == 7
    assert category.items[0].deletion_rule == "audit_retention"
    assert (answer.last_access_source, answer.last_access_at.ToDatetime(tzinfo=UTC)) == (
        "processing_log",
        newest,
    )

    without_log = describe(subject(), [], [], [], None, T0)
    assert without_log.last_access_source == "activity"
    assert not [c for c in without_log.categories if c.name == "processing_log" and c.items]
