"""Issue 18, bounded growth, through the real stack: a subject holding thousands of rejected verdicts (as a
client looping on bad uploads leaves them, past one gRPC message of records) still lists, trains and
exports, because ingest pages `ListPhotos` and every caller follows the pages."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import nats

from likeness import ids
from likeness.v1 import ingest_pb2
from likeness_client import LikenessClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT

#: Rejected verdicts written straight into ingest's bucket (uploading thousands of photos through the
#: sanitizer would take an hour here): the records ingest writes, keyed as it keys them.
MANY_VERDICTS = 3000
EXPORT_SCOPES = [*ALL_SCOPES, "subjects:export"]


async def _write_rejected_verdicts(nats_url: str, subject_id: str) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value("photos")
        written = []
        for start in range(0, MANY_VERDICTS, 100):
            batch = []
            for _ in range(min(100, MANY_VERDICTS - start)):
                photo = ingest_pb2.Photo(
                    id=ids.new_id("pho"),
                    tenant=DEV_TENANT,
                    subject_id=subject_id,
                    status=ingest_pb2.PHOTO_STATUS_REJECTED,
                )
                photo.reasons.add(code="no_face", message="We couldn't find a face in this photo. " * 40)
                batch.append(photo)
            await asyncio.gather(
                *(kv.put(f"{DEV_TENANT}.{subject_id}.{p.id}", p.SerializeToString()) for p in batch)
            )
            written += [photo.id for photo in batch]
        return written
    finally:
        await nc.close()


def test_a_subject_with_thousands_of_rejected_verdicts_still_lists_trains_and_exports(
    stack: DevStack,
) -> None:
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=EXPORT_SCOPES), timeout=120) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        uploaded = client.upload_photos(subject.id, sample_photos(2)).photos
        accepted = [photo.id for photo in uploaded if photo.accepted]
        assert len(accepted) == 2
        rejected = asyncio.run(_write_rejected_verdicts(stack.infra.endpoints.nats_url, subject.id))
        expected = sorted([*accepted, *rejected])

        listed = [photo.id for photo in client.iter_photos(subject.id, page_size=100)]
        assert listed == expected, "the public listing holds every photo exactly once, oldest first"

        training = client.create_training(subject.id, steps=4)
        final = list(client.poll_training(training.id, interval=0.5))[-1]
        assert final.status == "succeeded", final

        archive = io.BytesIO()
        client.export_subject(subject.id, archive)
    with zipfile.ZipFile(io.BytesIO(archive.getvalue())) as exported:
        photos = json.loads(exported.read("photos.json"))["photos"]
        crops = [name for name in exported.namelist() if name.startswith("photos/")]
    assert sorted(photo["id"] for photo in photos) == expected
    assert len(crops) == len(accepted)
