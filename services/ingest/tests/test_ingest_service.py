"""The ingest service in-process against the real NATS, S3 and OpenBao servers.

Uploads go through a real gRPC server with the user-token interceptor, carrying tenant acme's token (every
scope, `tenant:all`) as the gateway would; what is stored is read back from S3 and decrypted with the
subject's key, so the checks see exactly what the trainer will.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from PIL import Image

import ingest.decode
import ingest.sanitize
from ingest.config import IngestSettings
from ingest.decode import Decoder
from ingest.decoding import start_decoder
from ingest.faces import FaceAnalyzer
from ingest.records import PHOTOS_BUCKET, PhotoRecords
from ingest.sandbox.pool import DecoderPool
from ingest.service import IngestServicer
from ingest.templates import FaceTemplate, SubjectTemplates
from likeness import ids
from likeness.bus import EVENTS_STREAM, event_nats_subject
from likeness.envelope import MAGIC as ENVELOPE_MAGIC
from likeness.grpc_tls import secure_channel, static_server_credentials
from likeness.grpc_user_tokens import user_token_interceptor
from likeness.object_names import photo_key, subject_prefix
from likeness.rpc_errors import status_lost_to_a_late_write
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.v1 import ingest_pb2, ingest_pb2_grpc
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import Infra
from likeness_dev.samples import ACCEPTED, CorpusFile, no_face_photo, other_person_photo, sample_photos
from likeness_dev.tokens import CallerToken

PS = ingest_pb2.PhotoStatus
TENANT = "acme"
CHUNK = 256 * 1024
TOKEN_SECRET = "ingest-service-tests-token-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    stub: ingest_pb2_grpc.IngestServiceStub
    platform: Platform
    servicer: IngestServicer

    async def new_subject(self) -> str:
        subject_id = ids.new_id("sub")
        await asyncio.to_thread(self.platform.keys.create, subject_id)
        return subject_id

    async def upload(self, subject_id: str, data: bytes | Iterable[bytes]) -> ingest_pb2.Photo:
        chunks = (
            [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] if isinstance(data, bytes) else data
        )

        async def requests() -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
            header = ingest_pb2.PhotoUploadHeader(
                tenant=TENANT, subject_id=subject_id, content_type="image/jpeg"
            )
            yield ingest_pb2.SanitizePhotoRequest(header=header)
            for chunk in chunks:
                yield ingest_pb2.SanitizePhotoRequest(chunk=chunk)

        return (await self.stub.SanitizePhoto(requests(), timeout=60)).photo

    def keys_under(self, subject_id: str) -> list[str]:
        prefix = subject_prefix(TENANT, subject_id)
        return sorted(obj.key[len(prefix) :] for obj in self.platform.store.list_current(prefix))

    def crop(self, subject_id: str, photo_id: str) -> bytes:
        ref = ObjectRef(TENANT, subject_id, photo_key(TENANT, subject_id, photo_id), "photo")
        return self.platform.sealed.get(ref)

    def template(self, subject_id: str, photo_id: str) -> FaceTemplate:
        return FaceTemplate.from_bytes(
            self.platform.sealed.get(SubjectTemplates.ref(TENANT, subject_id, photo_id))
        )


ServiceFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def start_service(infra: Infra, analyzer: FaceAnalyzer, dev_ca: DevCertificateAuthority) -> ServiceFactory:
    """start_service(decoder=None, **setting_overrides): an async context manager running IngestServicer
    on gRPC, decoding in the sandbox's workers as the service does (or with the given decoder)."""

    @asynccontextmanager
    async def start(decoder: Decoder | None = None, **overrides: Any) -> AsyncIterator[Service]:
        env = infra.endpoints.as_env()
        values = {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
        settings = IngestSettings.model_validate({**values, "jwt_dev_secret": TOKEN_SECRET, **overrides})
        stop_decoding = None
        if decoder is None:
            decoder, stop_decoding = await asyncio.to_thread(start_decoder, settings)
        platform = await Platform.connect(settings, "ingest-test")
        records = await PhotoRecords.open(platform.bus, settings.rejected_bound())
        servicer = IngestServicer(platform, records, settings, decoder, analyzer)
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
            interceptors=[user_token_interceptor(settings)],
        )
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
        port = _free_port()
        ingest_tls = static_server_credentials(dev_ca.issue("ingest").material)
        server.add_secure_port(f"127.0.0.1:{port}", ingest_tls)
        await server.start()
        caller = CallerToken(TOKEN_SECRET)
        caller.act_as(TENANT)
        gateway_tls = dev_ca.issue("gateway").material
        address = f"127.0.0.1:{port}"
        channel = secure_channel(address, gateway_tls, "ingest", interceptors=caller.interceptors())
        try:
            yield Service(ingest_pb2_grpc.IngestServiceStub(channel), platform, servicer)
        finally:
            await channel.close()
            await server.stop(0)
            await platform.close()
            if stop_decoding is not None:
                await asyncio.to_thread(stop_decoding)

    return start


@pytest.fixture(scope="module")
async def service(start_service: ServiceFactory) -> AsyncIterator[Service]:
    async with start_service() as running:
        yield running


def _refusal(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str | None]:
    codes = [value for key, value in caught.value.trailing_metadata() or () if key == "likeness-error-code"]
    return caught.value.code(), codes[0] if codes else None


# --- what is stored ----------------------------------------------------------------------------------


async def test_every_accepted_corpus_file_is_stored_only_encrypted_and_decrypts_to_pixels_only(
    service: Service, corpus: dict[str, CorpusFile], assert_clean_crop: Callable[[bytes], None]
) -> None:
    accepted = [entry for entry in corpus.values() if entry.verdict == ACCEPTED]
    assert len(accepted) >= 12
    for entry in accepted:
        subject_id = await service.new_subject()  # the corpus files are all one picture: one subject each
        photo = await service.upload(subject_id, entry.data)
        assert photo.status == PS.PHOTO_STATUS_ACCEPTED, (entry.name, photo.reasons)
        assert service.keys_under(subject_id) == [f"faces/{photo.id}", f"photos/{photo.id}"], entry.name
        crop = await asyncio.to_thread(service.crop, subject_id, photo.id)
        stretches = [crop[start : start + 64] for start in range(0, len(crop) - 64, len(crop) // 8)]
        prefix = subject_prefix(TENANT, subject_id)
        for obj in service.platform.store.list_current(prefix):
            raw = service.platform.store.get_bytes(obj.key)
            # Sealed, and no stretch of the crop inside. Not "no PNG signature inside": 4 given bytes turn
            # up in ciphertext by chance (once in 4 GiB; this corpus stores megabytes on every run).
            assert raw.startswith(ENVELOPE_MAGIC), "stored in clear"
            assert not any(stretch in raw for stretch in stretches), "stored in clear"
        assert_clean_crop(crop)
        assert Image.open(io.BytesIO(crop)).size == (photo.width, photo.height) == (512, 512)


async def test_the_template_is_the_photo_embedding_and_hash_and_never_leaves_in_clear(
    service: Service,
) -> None:
    subject_id = await service.new_subject()
    photo = await service.upload(subject_id, sample_photos(1)[0][1])
    assert photo.status == PS.PHOTO_STATUS_ACCEPTED
    template = await asyncio.to_thread(service.template, subject_id, photo.id)
    assert len(template.embedding) == 128
    assert template.perceptual_hash is not None
    secrets = [FaceTemplate(template.embedding, template.perceptual_hash).to_bytes()[16:48]]
    secrets.append(template.perceptual_hash.to_bytes(8, "little"))

    raw_template = service.platform.store.get_bytes(SubjectTemplates.ref(TENANT, subject_id, photo.id).key)
    record = await (await service.platform.bus.kv(PHOTOS_BUCKET)).get(f"{TENANT}.{subject_id}.{photo.id}")
    event = await service.platform.bus.js.get_last_msg(
        EVENTS_STREAM, event_nats_subject(TENANT, subject_id, "photo.accepted")
    )
    for secret in secrets:
        for where, data in (("S3", raw_template), ("KV", record.value or b""), ("event", event.data or b"")):
            assert secret not in data, where
    # The verdict's scores are quality only: nothing about identity or other photos.
    assert set(photo.scores) == {
        "face_score",
        "face_fraction",
        "sharpness",
        "face_brightness",
        "face_clipped",
    }


async def test_a_rejected_photo_stores_nothing_and_says_why(service: Service) -> None:
    subject_id = await service.new_subject()
    photo = await service.upload(subject_id, no_face_photo())
    assert photo.status == PS.PHOTO_STATUS_REJECTED
    assert [r.code for r in photo.reasons] == ["no_face"]
    assert service.keys_under(subject_id) == []
    listed = (
        await service.stub.ListPhotos(ingest_pb2.ListPhotosRequest(tenant=TENANT, subject_id=subject_id))
    ).photos
    assert [(p.id, p.status) for p in listed] == [(photo.id, PS.PHOTO_STATUS_REJECTED)]


# --- checks against the subject's other photos -----------------------------------------------------------


async def test_the_same_picture_again_is_a_duplicate_and_someone_else_is_a_different_person(
    service: Service,
) -> None:
    samples = dict(sample_photos(9))
    subject_id = await service.new_subject()
    first = await service.upload(subject_id, samples["astronaut-01.jpg"])
    assert first.status == PS.PHOTO_STATUS_ACCEPTED

    again = Image.open(io.BytesIO(samples["astronaut-01.jpg"])).convert("RGB")
    re_encoded = io.BytesIO()
    again.resize((again.width * 3 // 4, again.height * 3 // 4)).save(re_encoded, format="WEBP", quality=80)
    for data in (samples["astronaut-01.jpg"], samples["astronaut-09.jpg"], re_encoded.getvalue()):
        duplicate = await service.upload(subject_id, data)
        assert [r.code for r in duplicate.reasons] == ["duplicate"]
        assert duplicate.scores["sharpness"] > 0, "a rejected photo still carries its quality scores"

    stranger = await service.upload(subject_id, other_person_photo())
    assert [r.code for r in stranger.reasons] == ["different_person"]
    second = await service.upload(subject_id, samples["astronaut-02.jpg"])
    assert second.status == PS.PHOTO_STATUS_ACCEPTED
    assert service.keys_under(subject_id) == sorted(
        [f"faces/{first.id}", f"photos/{first.id}", f"faces/{second.id}", f"photos/{second.id}"]
    )

    # A subject whose first photo is the stranger's: now the astronaut is the different person.
    other_subject = await service.new_subject()
    assert (await service.upload(other_subject, other_person_photo())).status == PS.PHOTO_STATUS_ACCEPTED
    assert [r.code for r in (await service.upload(other_subject, samples["astronaut-01.jpg"])).reasons] == [
        "different_person"
    ]


async def test_the_subject_templates_are_decrypted_in_one_vault_call(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = sample_photos(4)
    subject_id = await service.new_subject()
    for _, data in samples[:3]:
        assert (await service.upload(subject_id, data)).status == PS.PHOTO_STATUS_ACCEPTED

    unwrap_calls: list[int] = []
    keys = service.platform.keys
    real_unwrap = keys.unwrap

    def counting_unwrap(subject: str, wrapped: Any) -> list[bytes]:
        unwrap_calls.append(len(wrapped))
        return real_unwrap(subject, wrapped)

    monkeypatch.setattr(keys, "unwrap", counting_unwrap)
    assert (await service.upload(subject_id, samples[3][1])).status == PS.PHOTO_STATUS_ACCEPTED
    assert unwrap_calls == [3], "one batched Vault decrypt of the three earlier templates"


async def test_concurrent_uploads_of_one_picture_accept_it_once(service: Service) -> None:
    subject_id = await service.new_subject()
    data = sample_photos(1)[0][1]
    photos = await asyncio.gather(*(service.upload(subject_id, data) for _ in range(3)))
    verdicts = sorted(
        "accepted" if p.status == PS.PHOTO_STATUS_ACCEPTED else p.reasons[0].code for p in photos
    )
    assert verdicts == ["accepted", "duplicate", "duplicate"]
    assert len(service.servicer.subject_locks) == 0, "locks are dropped when nobody holds them"


async def test_a_full_subject_is_refused_before_the_file_is_read(start_service: ServiceFactory) -> None:
    async with start_service(max_photos_per_subject=2) as small:
        subject_id = await small.new_subject()
        samples = sample_photos(4)
        for _, data in samples[:2]:
            assert (await small.upload(subject_id, data)).status == PS.PHOTO_STATUS_ACCEPTED

        def endless() -> Iterable[bytes]:
            while True:
                yield b"\0" * CHUNK

        for _ in range(5):  # the refusal races the endless writes: grpc.aio may lose it (rpc_errors)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await small.upload(subject_id, endless())
            if not status_lost_to_a_late_write(caught.value):
                break
        assert _refusal(caught) == (grpc.StatusCode.FAILED_PRECONDITION, "too_many_photos")
        assert "(2)" in (caught.value.details() or "")
        assert len(small.keys_under(subject_id)) == 4


async def test_uploads_racing_for_the_last_place_get_a_verdict_each(start_service: ServiceFactory) -> None:
    async with start_service(max_photos_per_subject=2) as small:
        subject_id = await small.new_subject()
        samples = sample_photos(3)
        assert (await small.upload(subject_id, samples[0][1])).status == PS.PHOTO_STATUS_ACCEPTED
        racing = await asyncio.gather(*(small.upload(subject_id, data) for _, data in samples[1:]))
        verdicts = sorted(
            "accepted" if p.status == PS.PHOTO_STATUS_ACCEPTED else p.reasons[0].code for p in racing
        )
        assert verdicts == ["accepted", "too_many_photos"]


# --- limits while streaming ------------------------------------------------------------------------------


async def test_an_endless_upload_is_cut_off_at_the_byte_limit(start_service: ServiceFactory) -> None:
    limit = 600 * 1024
    async with start_service(max_upload_bytes=limit) as strict:
        subject_id = await strict.new_subject()

        def endless() -> Iterable[bytes]:
            while True:
                yield b"\xff\xd8\xff" + b"\0" * (CHUNK - 3)

        # It can only end if ingest stops reading at the limit and answers.
        photo = await asyncio.wait_for(strict.upload(subject_id, endless()), timeout=60)
        assert [r.code for r in photo.reasons] == ["file_too_large"]
        assert "at most 0.6 MB" in photo.reasons[0].message


async def test_uploads_beyond_the_concurrency_limits_wait_their_turn(start_service: ServiceFactory) -> None:
    async with start_service(max_concurrent_uploads=1, max_concurrent=1) as narrow:
        subject_id = await narrow.new_subject()
        samples = sample_photos(3)
        photos = await asyncio.gather(*(narrow.upload(subject_id, data) for _, data in samples))
        assert [p.status for p in photos] == [PS.PHOTO_STATUS_ACCEPTED] * 3


async def test_an_erased_subject_is_refused(service: Service) -> None:
    subject_id = await service.new_subject()
    await asyncio.to_thread(service.platform.keys.destroy, subject_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.upload(subject_id, sample_photos(1)[0][1])
    assert _refusal(caught) == (grpc.StatusCode.FAILED_PRECONDITION, "subject_erased")
    assert service.keys_under(subject_id) == []


async def test_a_malformed_request_is_refused(service: Service) -> None:
    async def no_header() -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
        yield ingest_pb2.SanitizePhotoRequest(chunk=b"\xff\xd8\xff")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.stub.SanitizePhoto(no_header(), timeout=10)
    assert _refusal(caught) == (grpc.StatusCode.INVALID_ARGUMENT, "missing_header")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.upload("not-a-subject", b"\xff\xd8\xff")
    assert _refusal(caught) == (grpc.StatusCode.NOT_FOUND, "subject_not_found")


# --- bounded growth (issue 18) ------------------------------------------------------------------------------

#: Thousands of verdicts, as a client looping on bad uploads would leave: far past one 4 MiB gRPC message.
MANY_VERDICTS = 3000


def _rejected_verdict(subject_id: str) -> ingest_pb2.Photo:
    photo = ingest_pb2.Photo(
        id=ids.new_id("pho"), tenant=TENANT, subject_id=subject_id, status=PS.PHOTO_STATUS_REJECTED
    )
    # A verdict's reasons as sanitization writes them, long enough to make the listing heavy.
    photo.reasons.add(code="no_face", message="We couldn't find a face in this photo. " * 40)
    return photo


async def _every_page(service: Service, subject_id: str, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        request = ingest_pb2.ListPhotosRequest(
            tenant=TENANT, subject_id=subject_id, page_size=page_size, page_token=token
        )
        page = await service.stub.ListPhotos(request, timeout=30)
        pages.append([photo.id for photo in page.photos])
        token = page.next_page_token
        if not token:
            return pages


async def test_list_photos_pages_return_every_photo_exactly_once(start_service: ServiceFactory) -> None:
    """A subject with thousands of rejected verdicts and an accepted photo: each page is at most the size
    asked for, and the pages together hold every photo exactly once, oldest first."""
    async with start_service(max_rejected_per_subject=MANY_VERDICTS + 10) as roomy:
        subject_id = await roomy.new_subject()
        accepted = await roomy.upload(subject_id, sample_photos(1)[0][1])
        assert accepted.status == PS.PHOTO_STATUS_ACCEPTED
        verdicts = [_rejected_verdict(subject_id) for _ in range(MANY_VERDICTS)]
        for start in range(0, MANY_VERDICTS, 100):
            await asyncio.gather(*(roomy.servicer.records.put(v) for v in verdicts[start : start + 100]))
        expected = sorted([accepted.id, *(v.id for v in verdicts)])

        pages = await _every_page(roomy, subject_id, page_size=100)
        assert all(len(page) <= 100 for page in pages)
        listed = [photo_id for page in pages for photo_id in page]
        assert listed == expected, "every photo exactly once, oldest first"
        # The default page (50) and a page token the caller made up.
        assert len((await _every_page(roomy, subject_id, page_size=0))[0]) == 50
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await roomy.stub.ListPhotos(
                ingest_pb2.ListPhotosRequest(tenant=TENANT, subject_id=subject_id, page_token="nope")
            )
        assert _refusal(caught) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await roomy.stub.ListPhotos(
                ingest_pb2.ListPhotosRequest(tenant=TENANT, subject_id=subject_id, page_size=101)
            )
        assert _refusal(caught) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_size")


async def test_rejected_verdicts_are_bounded_per_subject_oldest_out(start_service: ServiceFactory) -> None:
    async with start_service(max_rejected_per_subject=3) as bounded:
        subject_id = await bounded.new_subject()
        accepted = await bounded.upload(subject_id, sample_photos(1)[0][1])
        rejected = [await bounded.upload(subject_id, no_face_photo()) for _ in range(5)]
        assert {photo.status for photo in rejected} == {PS.PHOTO_STATUS_REJECTED}
        listed = [photo_id for page in await _every_page(bounded, subject_id, 10) for photo_id in page]
        assert listed == [accepted.id, *(photo.id for photo in rejected[-3:])]


async def test_rejected_verdicts_expire_and_accepted_photos_stay(start_service: ServiceFactory) -> None:
    async with start_service(rejected_verdict_ttl_seconds=1) as short:
        subject_id = await short.new_subject()
        accepted = await short.upload(subject_id, sample_photos(1)[0][1])
        rejected = await short.upload(subject_id, no_face_photo())
        assert rejected.status == PS.PHOTO_STATUS_REJECTED
        listed: list[str] = []
        for _ in range(60):  # the server removes it about a second after; generous on a busy machine
            listed = [photo_id for page in await _every_page(short, subject_id, 10) for photo_id in page]
            if rejected.id not in listed:
                break
            await asyncio.sleep(0.5)
        assert listed == [accepted.id]


async def test_a_full_photos_bucket_refuses_the_upload_with_storage_full(service: Service) -> None:
    """DiscardNew: at its byte bound the bucket refuses the verdict; the upload fails closed with
    `storage_full` (the gateway's 503) and leaves no crop behind, and old verdicts stay."""
    js = service.platform.bus.js
    stream = f"KV_{PHOTOS_BUCKET}"
    subject_id = await service.new_subject()
    kept = await service.upload(subject_id, no_face_photo())
    info = await js.stream_info(stream)
    original = info.config.max_bytes
    await js.update_stream(info.config.evolve(max_bytes=int(info.state.bytes) + 1))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await service.upload(subject_id, sample_photos(1)[0][1])
        assert _refusal(caught) == (grpc.StatusCode.UNAVAILABLE, "storage_full")
        assert "full" in (caught.value.details() or "")
    finally:
        info = await js.stream_info(stream)
        await js.update_stream(info.config.evolve(max_bytes=original))
    assert service.keys_under(subject_id) == [], "the accepted crop was removed again"
    listed = [photo_id for page in await _every_page(service, subject_id, 10) for photo_id in page]
    assert listed == [kept.id]


# --- the decoding sandbox ----------------------------------------------------------------------------------

HOSTILE_WORKER = Path(__file__).with_name("sandbox_hostile_worker.py")
ATTACK = b"\xff\xd8\xffATTACK "


async def test_uploads_are_parsed_in_the_sandbox_never_in_the_service(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image parser of this process is made to fail: an upload is still judged and stored, so
    nothing of it was parsed here."""

    def parsed_here(*args: object, **kwargs: object) -> Any:
        raise AssertionError("an upload was parsed in the service process")

    monkeypatch.setattr(Image, "open", parsed_here)
    monkeypatch.setattr(ingest.decode, "decode_image", parsed_here)
    monkeypatch.setattr(ingest.sanitize, "decode_image", parsed_here)
    assert isinstance(service.servicer.decoder, DecoderPool)
    subject_id = await service.new_subject()
    photo = await service.upload(subject_id, sample_photos(1)[0][1])
    assert photo.status == PS.PHOTO_STATUS_ACCEPTED, photo.reasons


async def test_a_decoder_that_crashes_is_a_corrupt_image_and_the_service_keeps_serving(
    start_service: ServiceFactory,
) -> None:
    settings = IngestSettings(env="development")
    limits = settings.limits()
    planted = DecoderPool(
        1, limits.max_bytes, limits.max_pixels, settings.sandbox_limits(), entry=(str(HOSTILE_WORKER),)
    )
    await asyncio.to_thread(planted.start)
    try:
        async with start_service(decoder=planted) as running:
            subject_id = await running.new_subject()
            for attack in (b"segfault", b"socket 9", b"read /proc/1/environ"):
                photo = await running.upload(subject_id, ATTACK + attack)
                if attack.startswith(b"read"):  # denied (EPERM): a report, not a face
                    assert [r.code for r in photo.reasons] == ["no_face"], attack
                else:
                    assert [r.code for r in photo.reasons] == ["corrupt_image"], attack
                assert running.keys_under(subject_id) == []
            accepted = await running.upload(subject_id, sample_photos(1)[0][1])
            assert accepted.status == PS.PHOTO_STATUS_ACCEPTED, accepted.reasons
    finally:
        await asyncio.to_thread(planted.close)
