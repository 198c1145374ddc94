"""`LikenessClient`: the v1 API, blocking (httpx). `AsyncLikenessClient` is the same for asyncio."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from likeness_client.usage_models import Usage

T = TypeVar("T")
J = TypeVar("J", Training, Render)

IDEMPOTENCY_HEADER = "Idempotency-Key"
CHUNK = 64 * 1024


class LikenessClient:
    """A client of one gateway with one token. Use it as a context manager, or `close()` it.

    `retry` sets how 429/503 answers and unreachable gateways are retried; `transport` replaces the
    network (tests); `stream_read_timeout` bounds the silence on a progress stream (the gateway sends
    heartbeats well within it).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        stream_read_timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._stream_timeout = httpx.Timeout(timeout, read=stream_read_timeout)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=request_headers(token),
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_env(cls, **options: Any) -> LikenessClient:
        """From `LIKENESS_GATEWAY_URL` and `LIKENESS_TOKEN` (or `LIKENESS_DEV_TOKEN`)."""
        settings = ClientSettings.from_env()
        return cls(settings.base_url, settings.token, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LikenessClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ plumbing

    def _send(
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
        """Sends with retries; returns a successful response, raises the `ApiError` of a failed one."""
        headers = dict(headers or {})
        if idempotent:
            # One key per call, the same on every retry: the gateway replays the first answer.
            headers[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
        timeout = self._stream_timeout if stream else self._timeout
        attempt = 0
        while True:
            attempt += 1
            request = self._http.build_request(
                method, path, params=params, json=json, files=files, headers=headers, timeout=timeout
            )
            try:
                response = self._http.send(request, stream=stream)
            except RETRYABLE_TRANSPORT_ERRORS as exc:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise TransportError(f"cannot reach the gateway: {exc!r}") from exc
                self._sleep(wait)
                continue
            if response.is_success:
                return response
            try:
                response.read()
            finally:
                response.close()
            error = error_from_response(response)
            wait = (
                self.retry.delay(attempt, error.retry_after)
                if self.retry.retries_status(error.status)
                else None
            )
            if wait is None:
                raise error
            self._sleep(wait)

    def _run(self, call: Call[T]) -> T:
        response = self._send(call.route.method, call.path, **call.send_options())
        return call.parse(response)

    def _iterate(self, page_of: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self._run(page_of(cursor))
            yield from page.items
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise LikenessError("the gateway returned a cursor it had returned before")
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    @contextmanager
    def _stream(self, path: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        response = self._send("GET", path, headers=headers, stream=True)
        try:
            yield response
        finally:
            response.close()

    def _watch(self, path: str, parse: Callable[[str], J]) -> Iterator[J]:
        """`progress` events then `end`; a stream cut before `end` is reopened (the gateway starts every
        stream with the current state), up to the retry policy's attempts in a row."""
        last_event_id: str | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._stream(path, headers) as response:
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
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
                pass  # cut mid-stream: reopened below
            failures += 1
            wait = self.retry.delay(failures, None)
            if wait is None:
                raise StreamError(f"the progress stream {path} kept ending before its end event")
            self._sleep(wait)

    def _poll(self, get: Callable[[], J], interval: float) -> Iterator[J]:
        last: J | None = None
        while True:
            state = get()
            if state != last:
                yield state
                last = state
            if state.done:
                return
            self._sleep(interval)

    # ------------------------------------------------------------------------------------------ subjects

    def create_subject(
        self, *, purpose: str, policy_version: str, external_ref: str | None = None
    ) -> Subject:
        """Opens a subject with the person's consent (purpose and the version of the policy they accepted)."""
        return self._run(calls.create_subject(purpose, policy_version, external_ref))

    def get_subject(self, subject_id: str) -> Subject:
        return self._run(calls.get_subject(subject_id))

    def rectify_subject(self, subject_id: str, *, external_ref: str | None) -> Subject:
        """Corrects the tenant's reference for the person (None forgets it)."""
        return self._run(calls.rectify_subject(subject_id, external_ref))

    def get_subject_summary(self, subject_id: str) -> SubjectSummary:
        """What is held about the subject: per category, counts, bytes and each item's deletion date; the
        live grants and the last access."""
        return self._run(calls.get_subject_summary(subject_id))

    def list_processing_log(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[AuditEntry]:
        """The person's processing log, oldest first (their own token only)."""
        return self._run(calls.list_processing_log(subject_id, limit, cursor))

    def iter_processing_log(self, subject_id: str, *, page_size: int | None = None) -> Iterator[AuditEntry]:
        return self._iterate(lambda cursor: calls.list_processing_log(subject_id, page_size, cursor))

    def list_audit_trail(self, *, limit: int | None = None, cursor: str | None = None) -> Page[AuditEntry]:
        """The tenant's audit trail, oldest first (a tenant-wide token with `audit:read`)."""
        return self._run(calls.list_audit_trail(limit, cursor))

    def iter_audit_trail(self, *, page_size: int | None = None) -> Iterator[AuditEntry]:
        return self._iterate(lambda cursor: calls.list_audit_trail(page_size, cursor))

    def list_subjects(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Subject]:
        return self._run(calls.list_subjects(limit, cursor))

    def iter_subjects(self, *, page_size: int | None = None) -> Iterator[Subject]:
        return self._iterate(lambda cursor: calls.list_subjects(page_size, cursor))

    def erase_subject(self, subject_id: str) -> ErasureAccepted:
        """Erases the person: their key is destroyed first, then every object, record and event."""
        return self._run(calls.erase_subject(subject_id))

    def get_erasure(self, erasure_id: str) -> Erasure:
        """The erasure's record: its status (`completed` at the end) and what was deleted."""
        return self._run(calls.get_erasure(erasure_id))

    def get_erasure_receipt(self, erasure_id: str) -> ErasureReceipt:
        """The signed receipt of a completed erasure (`NotFound` until it has completed)."""
        return self._run(calls.get_erasure_receipt(erasure_id))

    def get_receipt_keys(self) -> ReceiptKeys:
        """The published JWK set that verifies erasure receipts (a public route: no scope needed)."""
        return self._run(calls.get_receipt_keys())

    @contextmanager
    def stream_export(self, subject_id: str) -> Iterator[Iterator[bytes]]:
        """The subject's data export (a zip) as chunks, read as they arrive.

        A zip is complete only if the iteration ends normally: a stream cut short raises `TransportError`.
        """
        with self._stream(calls.EXPORT_SUBJECT.path(subject_id)) as response:
            yield _chunks(response)

    def export_subject(self, subject_id: str, destination: str | os.PathLike[str] | IO[bytes]) -> int:
        """Writes the subject's data export (a zip) to a path or a binary file; returns its size.

        A path is written under a temporary name and renamed once complete: it never holds half an export.
        """
        with self.stream_export(subject_id) as chunks:
            if isinstance(destination, str | os.PathLike):
                with AtomicFile(Path(destination)) as out:
                    return _copy(chunks, out)
            return _copy(chunks, destination)

    # ------------------------------------------------------------------------------------------ photos

    def upload_photos(
        self, subject_id: str, photos: Sequence[PhotoInput], *, prepare: bool = True
    ) -> UploadResult:
        """Uploads photos (paths or (name, bytes)); each gets a verdict. When every one is rejected,
        raises `UploadRejected`, whose `photos` hold the verdicts.

        With `prepare` (the default) each photo is first made fit to leave this machine: upright, sRGB,
        at most 3072 px long, re-encoded without any metadata (`likeness_client.photo_prep`); a file
        that is not a photo ingest accepts raises `PhotoNotPrepared` and nothing is sent. `prepare=False`
        sends the files as they are (ingest sanitizes them either way)."""
        return self._run(calls.upload_photos(subject_id, photos, prepare))

    def delete_photo(self, subject_id: str, photo_id: str, *, with_models: bool = False) -> ItemDeletion:
        """Deletes one photo (every version of its crop and face template); the answer names the models
        trained on it, deleted too with `with_models` (which needs `trainings:write` as well)."""
        return self._run(calls.delete_photo(subject_id, photo_id, with_models))

    def list_photos(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Photo]:
        return self._run(calls.list_photos(subject_id, limit, cursor))

    def iter_photos(self, subject_id: str, *, page_size: int | None = None) -> Iterator[Photo]:
        return self._iterate(lambda cursor: calls.list_photos(subject_id, page_size, cursor))

    # ------------------------------------------------------------------------------------------ trainings

    def create_training(self, subject_id: str, *, steps: int | None = None) -> JobAccepted:
        return self._run(calls.create_training(subject_id, steps))

    def get_training(self, training_id: str) -> Training:
        return self._run(calls.get_training(training_id))

    def list_trainings(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Training]:
        return self._run(calls.list_trainings(subject_id, limit, cursor))

    def iter_trainings(self, subject_id: str, *, page_size: int | None = None) -> Iterator[Training]:
        return self._iterate(lambda cursor: calls.list_trainings(subject_id, page_size, cursor))

    def cancel_training(self, training_id: str) -> Training:
        return self._run(calls.cancel_training(training_id))

    def delete_training(self, training_id: str) -> ItemDeletion:
        """Deletes a training and its model (a training still running is refused: 409)."""
        return self._run(calls.delete_training(training_id))

    def watch_training(self, training_id: str) -> Iterator[Training]:
        """The training on every change (Server-Sent Events), ending with its terminal state."""
        return self._watch(calls.TRAINING_EVENTS.path(training_id), Training.model_validate_json)

    def poll_training(self, training_id: str, *, interval: float = 1.0) -> Iterator[Training]:
        """Like `watch_training`, by polling (for gateways or proxies without event streams)."""
        return self._poll(lambda: self.get_training(training_id), interval)

    # ------------------------------------------------------------------------------------------ renders

    def create_render(
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
        """Renders headshots in curated `styles`, or in a team look (which pins style, background and,
        for a fixed look, the seed); at least one of the two. From a succeeded training, or `instant`
        from the subject's latest accepted photo (both: the two combine). `choices` puts a catalog
        background, outfit or lighting in place of every style's own (a team look's fixed ones stay).
        `priority`: "interactive" or "bulk" (absent: bulk in a team look, else interactive); within the
        tenant, workers take interactive renders first."""
        return self._run(
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

    def get_render(self, render_id: str) -> Render:
        return self._run(calls.get_render(render_id))

    def reject_image(self, render_id: str, image_id: str) -> ItemDeletion:
        """Deletes one image of a render for good (every stored version); `render` is the render without
        it. Not a crypto-erase (see `ItemDeletion.notice`)."""
        return self._run(calls.reject_image(render_id, image_id))

    def delete_render(self, render_id: str) -> ItemDeletion:
        """Deletes a render and every version of its images (a render still running is refused: 409)."""
        return self._run(calls.delete_render(render_id))

    def list_renders(
        self, subject_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Render]:
        return self._run(calls.list_renders(subject_id, limit, cursor))

    def iter_renders(self, subject_id: str, *, page_size: int | None = None) -> Iterator[Render]:
        return self._iterate(lambda cursor: calls.list_renders(subject_id, page_size, cursor))

    def watch_render(self, render_id: str) -> Iterator[Render]:
        return self._watch(calls.RENDER_EVENTS.path(render_id), Render.model_validate_json)

    def poll_render(self, render_id: str, *, interval: float = 1.0) -> Iterator[Render]:
        return self._poll(lambda: self.get_render(render_id), interval)

    @contextmanager
    def stream_image(self, render_id: str, image_id: str) -> Iterator[tuple[str, Iterator[bytes]]]:
        """(content type, chunks) of one rendered image."""
        with self._stream(calls.GET_IMAGE.path(render_id, image_id)) as response:
            yield response.headers.get("content-type", "application/octet-stream"), _chunks(response)

    def download_image(self, render_id: str, image_id: str) -> bytes:
        with self.stream_image(render_id, image_id) as (_, chunks):
            return b"".join(chunks)

    def download_render(self, render_id: str, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Saves every image of a render into `out_dir` as `<image_id>.<ext>`; returns the paths."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for image in self.get_render(render_id).images:
            with self.stream_image(render_id, image.id) as (content_type, chunks):
                path = folder / image_file_name(image.id, content_type)
                with AtomicFile(path) as out:
                    _copy(chunks, out)
            saved.append(path)
        return saved

    def list_styles(self) -> list[Style]:
        return self._run(calls.list_styles())

    def get_catalog(self) -> Catalog:
        """The styles, and the backgrounds a team look can pin."""
        return self._run(calls.get_catalog())

    # ------------------------------------------------------------------------------------------ tenant

    def list_team_looks(self) -> list[TeamLook]:
        return self._run(calls.list_team_looks())

    def get_team_look(self, look_id: str) -> TeamLook:
        return self._run(calls.get_team_look(look_id))

    def put_team_look(self, look_id: str, look: TeamLookSpec) -> TeamLook:
        """Creates or replaces a team look (a style and a background of the catalog; a tenant's token)."""
        return self._run(calls.put_team_look(look_id, look))

    def delete_team_look(self, look_id: str) -> None:
        """Deletes a team look; renders made with it keep it on record."""
        self._run(calls.delete_team_look(look_id))

    def get_usage(self) -> Usage:
        """The tenant's GPU work against its quotas (a tenant-wide token with `usage:read`)."""
        return self._run(calls.get_usage())

    def get_retention_policy(self) -> RetentionPolicy:
        """The tenant's retention schedule (its own, or the service defaults), also in words."""
        return self._run(calls.get_retention_policy())

    def set_retention_policy(self, schedule: Retention) -> RetentionPolicy:
        """Replaces the tenant's whole schedule (0 days: the service default; the legal cap applies) for
        subjects opened from now on; returns the policy as it now stands."""
        return self._run(calls.set_retention_policy(schedule))

    # ------------------------------------------------------------------------------------------ consents

    def grant_consent(
        self, subject_id: str, purpose: str, policy_version: str, expires_at: datetime | None = None
    ) -> ConsentGrant:
        """Grants consent for one purpose (`headshots`, `team_look`, `instant`): with the person's own
        token, or a tenant-wide one unless the tenant's policy takes grants only from the person."""
        return self._run(calls.grant_consent(subject_id, purpose, policy_version, expires_at))

    def list_consents(self, subject_id: str) -> list[ConsentGrant]:
        """Every grant of the subject, oldest first (withdrawn and expired ones too)."""
        return self._run(calls.list_consents(subject_id))

    def withdraw_consent(self, subject_id: str, purpose: str) -> ConsentWithdrawal:
        """Withdraws the purpose's live grants: its queued and running jobs are cancelled, new ones are
        refused."""
        return self._run(calls.withdraw_consent(subject_id, purpose))

    def get_consent_policy(self) -> ConsentPolicy:
        """The tenant's consent policy (tenant-level tokens only)."""
        return self._run(calls.get_consent_policy())

    def set_consent_policy(self, policy: ConsentPolicy) -> ConsentPolicy:
        """Replaces the tenant's consent policy; it applies at once."""
        return self._run(calls.set_consent_policy(policy))

    # ------------------------------------------------------------------------------------------ operations

    def get_health(self) -> Health:
        """`/healthz`: the gateway process answers."""
        return self._run(calls.get_health())

    def get_readiness(self) -> Readiness:
        """`/readyz`: every backend and NATS serving (else `Unavailable`, once the retries are spent)."""
        return self._run(calls.get_readiness())


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(CHUNK)
    except httpx.TransportError as exc:
        raise TransportError(f"the download was cut short: {exc!r}") from exc


def _copy(chunks: Iterator[bytes], out: IO[bytes]) -> int:
    size = 0
    for chunk in chunks:
        out.write(chunk)
        size += len(chunk)
    return size
