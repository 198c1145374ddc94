"""`AsyncLikenessClient`: the v1 API for asyncio; the same calls, retries and models as `LikenessClient`."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from likeness_client import calls
from likeness_client.audit_models import AuditEntry
from likeness_client.calls import Call, PhotoInput
from likeness_client.consent_models import ConsentGrant, ConsentPolicy, ConsentWithdrawal
from likeness_client.deletion_models import ItemDeletion
from likeness_client.errors import (
    LikenessError,
    StreamError,
    TransportError,
    error_from_event,
    error_from_response,
)
from likeness_client.files import AtomicFile, image_file_name
from likeness_client.models import (
    Catalog,
    Erasure,
    ErasureAccepted,
    ErasureReceipt,
    Health,
    JobAccepted,
    Page,
    Photo,
    Readiness,
    ReceiptKeys,
    Render,
    RenderChoices,
    Retention,
    RetentionPolicy,
    Style,
    Subject,
    TeamLook,
    TeamLookSpec,
    Training,
    UploadResult,
)
from likeness_client.retry import RETRYABLE_TRANSPORT_ERRORS, RetryPolicy
from likeness_client.settings import ClientSettings, request_headers
from likeness_client.sse import SSEDecoder
from likeness_client.summary_models import SubjectSummary
from likeness_client.sync_client import CHUNK, IDEMPOTENCY_HEADER
from likeness_client.usage_models import Usage

T = TypeVar("T")
J = TypeVar("J", Training, Render)


class AsyncLikenessClient:
    """See `LikenessClient`; use it as an async context manager, or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        stream_read_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._stream_timeout = httpx.Timeout(timeout, read=stream_read_timeout)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=request_headers(token),
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_env(cls, **options: Any) -> AsyncLikenessClient:
        settings = ClientSettings.from_env()
        return cls(settings.base_url, settings.token, **options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLikenessClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------ plumbing

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        idempotent: bool = False,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if idempotent:
            headers[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
        timeout = self._stream_timeout if stream else self._timeout
        attempt = 0
        while True:
            attempt += 1
            request = self._http.build_request(
                method, path, params=params, json=json, files=files, headers=headers, timeout=timeout
            )
            try:
                response = await self._http.send(request, stream=stream)
            except RETRYABLE_TRANSPORT_ERRORS as exc:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise TransportError(f"cannot reach the gateway: {exc!r}") from exc
                await self._sleep(wait)
                continue
            if response.is_success:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            error = error_from_response(response)
            wait = (
                self.retry.delay(attempt, error.retry_after)
                if self.retry.retries_status(error.status)
                else None
            )
            if wait is None:
                raise error
            await self._sleep(wait)

    async def _run(self, call: Call[T]) -> T:
        response = await self._send(call.route.method, call.path, **call.send_options())
        return call.parse(response)

    async def _iterate(self, page_of: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = await self._run(page_of(cursor))
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise LikenessError("the gateway returned a cursor it had returned before")
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    @asynccontextmanager
    async def _stream(
        self, path: str, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        response = await self._send("GET", path, headers=headers, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _watch(self, path: str, parse: Callable[[str], J]) -> AsyncIterator[J]:
        last_event_id: str | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with self._stream(path, headers) as response:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        last_event_id = decoder.last_event_id
                        if event is not None and event.event == "error":
                            raise error_from_event(event.data)
                        if event is None or event.event not in ("progress", "end"):
                            continue
                        failures = 0
                        state = parse(event.data)
                        yield state
                        if event.event == "end" or state.done:
                            return
            except RETRYABLE_TRANSPORT_ERRORS:
                pass
            failures += 1
            wait = self.retry.delay(failures, None)
            if wait is None:
                raise StreamError(f"the progress stream {path} kept ending before its end event")
            await self._sleep(wait)

    async def _poll(self, get: Callable[[], Awaitable[J]], interval: float) -> AsyncIterator[J]:
        last: J | None = None
        while True:
            state = await get()
            if state != last:
                yield state
                last = state
            if state.done:
                return
            await self._sleep(interval)

    # ------------------------------------------------------------------------------------------ subjects

    async def create_subject(
        self, *, purpose: str, policy_version: str, external_ref: str | None = None
    ) -> Subject:
        return await self._run(calls.create_subject(purpose, policy_version, external_ref))

    async def get_subject(self, subject_id: str) -> Subject:
        return await self._run(calls.get_subject(subject_id))

    async def rectify_subject(self, subject_id: str, *, external_ref: str | None) -> Subject:
        """Corrects the tenant's reference for the person (None forgets it)."""
        return await self._run(calls.rectify_subject(subject_id, external_ref))

    async def get_subject_summary(self, subject_id: str) -> SubjectSummary:
        return await self._run(calls.get_subject_summary(subject_id))

    async def list_processing_log(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[AuditEntry]:
        """The person's processing log, oldest first (their own token only)."""
        return await self._run(calls.list_processing_log(subject_id, limit, cursor))

    def iter_processing_log(
        self, subject_id: str, *, page_size: int | None = None
    ) -> AsyncIterator[AuditEntry]:
        return self._iterate(lambda cursor: calls.list_processing_log(subject_id, page_size, cursor))

    async def list_audit_trail(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[AuditEntry]:
        """The tenant's audit trail, oldest first (a tenant-wide token with `audit:read`)."""
        return await self._run(calls.list_audit_trail(limit, cursor))

    def iter_audit_trail(self, *, page_size: int | None = None) -> AsyncIterator[AuditEntry]:
        return self._iterate(lambda cursor: calls.list_audit_trail(page_size, cursor))

    async def list_subjects(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Subject]:
        return await self._run(calls.list_subjects(limit, cursor))

    def iter_subjects(self, *, page_size: int | None = None) -> AsyncIterator[Subject]:
        return self._iterate(lambda cursor: calls.list_subjects(page_size, cursor))

    async def erase_subject(self, subject_id: str) -> ErasureAccepted:
        return await self._run(calls.erase_subject(subject_id))

    async def get_erasure(self, erasure_id: str) -> Erasure:
        return await self._run(calls.get_erasure(erasure_id))

    async def get_erasure_receipt(self, erasure_id: str) -> ErasureReceipt:
        return await self._run(calls.get_erasure_receipt(erasure_id))

    async def get_receipt_keys(self) -> ReceiptKeys:
        return await self._run(calls.get_receipt_keys())

    @asynccontextmanager
    async def stream_export(self, subject_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._stream(calls.EXPORT_SUBJECT.path(subject_id)) as response:
            yield _chunks(response)

    async def export_subject(self, subject_id: str, destination: str | os.PathLike[str] | IO[bytes]) -> int:
        async with self.stream_export(subject_id) as chunks:
            if isinstance(destination, str | os.PathLike):
                with AtomicFile(Path(destination)) as out:
                    return await _copy(chunks, out)
            return await _copy(chunks, destination)

    # ------------------------------------------------------------------------------------------ photos

    async def upload_photos(
        self, subject_id: str, photos: Sequence[PhotoInput], *, prepare: bool = True
    ) -> UploadResult:
        """As `LikenessClient.upload_photos`; photos are prepared in a thread (decoding is CPU work)."""
        call = await asyncio.to_thread(calls.upload_photos, subject_id, photos, prepare)
        return await self._run(call)

    async def delete_photo(
        self, subject_id: str, photo_id: str, *, with_models: bool = False
    ) -> ItemDeletion:
        """Deletes one photo (every version of its crop and face template); the answer names the models
        trained on it, deleted too with `with_models` (which needs `trainings:write` as well)."""
        return await self._run(calls.delete_photo(subject_id, photo_id, with_models))

    async def list_photos(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Photo]:
        return await self._run(calls.list_photos(subject_id, limit, cursor))

    def iter_photos(self, subject_id: str, *, page_size: int | None = None) -> AsyncIterator[Photo]:
        return self._iterate(lambda cursor: calls.list_photos(subject_id, page_size, cursor))

    # ------------------------------------------------------------------------------------------ trainings

    async def create_training(self, subject_id: str, *, steps: int | None = None) -> JobAccepted:
        return await self._run(calls.create_training(subject_id, steps))

    async def get_training(self, training_id: str) -> Training:
        return await self._run(calls.get_training(training_id))

    async def list_trainings(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Training]:
        return await self._run(calls.list_trainings(subject_id, limit, cursor))

    def iter_trainings(self, subject_id: str, *, page_size: int | None = None) -> AsyncIterator[Training]:
        return self._iterate(lambda cursor: calls.list_trainings(subject_id, page_size, cursor))

    async def cancel_training(self, training_id: str) -> Training:
        return await self._run(calls.cancel_training(training_id))

    async def delete_training(self, training_id: str) -> ItemDeletion:
        """Deletes a training and its model (a training still running is refused: 409)."""
        return await self._run(calls.delete_training(training_id))

    def watch_training(self, training_id: str) -> AsyncIterator[Training]:
        return self._watch(calls.TRAINING_EVENTS.path(training_id), Training.model_validate_json)

    def poll_training(self, training_id: str, *, interval: float = 1.0) -> AsyncIterator[Training]:
        return self._poll(lambda: self.get_training(training_id), interval)

    # ------------------------------------------------------------------------------------------ renders

    async def create_render(
        self,
        subject_id: str,
        *,
        training_id: str | None = None,
        styles: Sequence[str] = (),
        images_per_style: int | None = None,
        seed: int | None = None,
        team_look_id: str | None = None,
        instant: bool = False,
        choices: RenderChoices | None = None,
        priority: str | None = None,
    ) -> JobAccepted:
        return await self._run(
            calls.create_render(
                subject_id,
                training_id,
                styles,
                images_per_style,
                seed,
                team_look_id,
                instant,
                choices,
                priority,
            )
        )

    async def get_render(self, render_id: str) -> Render:
        return await self._run(calls.get_render(render_id))

    async def reject_image(self, render_id: str, image_id: str) -> ItemDeletion:
        """Deletes one image of a render for good (every stored version); `render` is the render without
        it. Not a crypto-erase (see `ItemDeletion.notice`)."""
        return await self._run(calls.reject_image(render_id, image_id))

    async def delete_render(self, render_id: str) -> ItemDeletion:
        """Deletes a render and every version of its images (a render still running is refused: 409)."""
        return await self._run(calls.delete_render(render_id))

    async def list_renders(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Render]:
        return await self._run(calls.list_renders(subject_id, limit, cursor))

    def iter_renders(self, subject_id: str, *, page_size: int | None = None) -> AsyncIterator[Render]:
        return self._iterate(lambda cursor: calls.list_renders(subject_id, page_size, cursor))

    def watch_render(self, render_id: str) -> AsyncIterator[Render]:
        return self._watch(calls.RENDER_EVENTS.path(render_id), Render.model_validate_json)

    def poll_render(self, render_id: str, *, interval: float = 1.0) -> AsyncIterator[Render]:
        return self._poll(lambda: self.get_render(render_id), interval)

    @asynccontextmanager
    async def stream_image(
        self, render_id: str, image_id: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        async with self._stream(calls.GET_IMAGE.path(render_id, image_id)) as response:
            yield response.headers.get("content-type", "application/octet-stream"), _chunks(response)

    async def download_image(self, render_id: str, image_id: str) -> bytes:
        async with self.stream_image(render_id, image_id) as (_, chunks):
            return b"".join([chunk async for chunk in chunks])

    async def download_render(self, render_id: str, out_dir: str | os.PathLike[str]) -> list[Path]:
        folder = Path(out_dir)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        saved = []
        for image in (await self.get_render(render_id)).images:
            async with self.stream_image(render_id, image.id) as (content_type, chunks):
                path = folder / image_file_name(image.id, content_type)
                with AtomicFile(path) as out:
                    await _copy(chunks, out)
            saved.append(path)
        return saved

    async def list_styles(self) -> list[Style]:
        return await self._run(calls.list_styles())

    async def get_catalog(self) -> Catalog:
        return await self._run(calls.get_catalog())

    # ------------------------------------------------------------------------------------------ tenant

    async def list_team_looks(self) -> list[TeamLook]:
        return await self._run(calls.list_team_looks())

    async def get_team_look(self, look_id: str) -> TeamLook:
        return await self._run(calls.get_team_look(look_id))

    async def put_team_look(self, look_id: str, look: TeamLookSpec) -> TeamLook:
        return await self._run(calls.put_team_look(look_id, look))

    async def delete_team_look(self, look_id: str) -> None:
        await self._run(calls.delete_team_look(look_id))

    async def get_usage(self) -> Usage:
        """The tenant's GPU work against its quotas (a tenant-wide token with `usage:read`)."""
        return await self._run(calls.get_usage())

    async def get_retention_policy(self) -> RetentionPolicy:
        return await self._run(calls.get_retention_policy())

    async def set_retention_policy(self, schedule: Retention) -> RetentionPolicy:
        return await self._run(calls.set_retention_policy(schedule))

    # ------------------------------------------------------------------------------------------ consents

    async def grant_consent(
        self, subject_id: str, purpose: str, policy_version: str, expires_at: datetime | None = None
    ) -> ConsentGrant:
        return await self._run(calls.grant_consent(subject_id, purpose, policy_version, expires_at))

    async def list_consents(self, subject_id: str) -> list[ConsentGrant]:
        return await self._run(calls.list_consents(subject_id))

    async def withdraw_consent(self, subject_id: str, purpose: str) -> ConsentWithdrawal:
        return await self._run(calls.withdraw_consent(subject_id, purpose))

    async def get_consent_policy(self) -> ConsentPolicy:
        return await self._run(calls.get_consent_policy())

    async def set_consent_policy(self, policy: ConsentPolicy) -> ConsentPolicy:
        return await self._run(calls.set_consent_policy(policy))

    # ------------------------------------------------------------------------------------------ operations

    async def get_health(self) -> Health:
        return await self._run(calls.get_health())

    async def get_readiness(self) -> Readiness:
        return await self._run(calls.get_readiness())


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes(CHUNK):
            yield chunk
    except httpx.TransportError as exc:
        raise TransportError(f"the download was cut short: {exc!r}") from exc


async def _copy(chunks: AsyncIterator[bytes], out: IO[bytes]) -> int:
    size = 0
    async for chunk in chunks:
        out.write(chunk)
        size += len(chunk)
    return size
