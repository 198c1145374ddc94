"""Object store over any S3 API (SeaweedFS locally, MinIO or S3 in production) with the minio SDK.

Holds only envelopes (ciphertext). Streams both ways; deletes every version of an object, since a
versioned bucket otherwise keeps old copies of a person's data, where this process's S3 identity may:
only retention may delete versions of durable data (`likeness.provisioning`), so for any other identity a
deletion hides the object behind a delete marker and leaves its versions to retention. The bucket and its
versioning are made by `likeness bootstrap`, never here.

An S3 outage (a restarted or briefly unreachable server) is ridden out: every operation is retried with
exponential backoff for up to `retry_seconds` while S3 cannot be reached or answers 5xx, and only then
fails with `StoreUnavailable`. Refusals (a missing object, a denied request) are never retried. Methods
block while they retry: async callers run them in a thread, as they already do for the I/O.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar, cast
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error, ServerError

from likeness.config import CommonSettings

PART_SIZE = 16 * 1024 * 1024
READ_SIZE = 256 * 1024
#: How long an operation keeps retrying while S3 is unreachable (a restart takes seconds).
RETRY_SECONDS = 30.0
_FIRST_DELAY, _MAX_DELAY = 0.2, 2.0
#: S3 error codes that mean "try again" rather than "no".
_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})
_S3_FAILURES = (S3Error, ServerError, urllib3.exceptions.HTTPError)

log = logging.getLogger(__name__)
T = TypeVar("T")


class _NoObjectKeys(logging.Filter):
    """urllib3's retry warnings name the request's path: the bucket and object key, whose segments are a
    tenant and a subject id. The path is replaced, so no log line carries them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "<path>" if isinstance(arg, str) and arg.startswith("/") else arg for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_NoObjectKeys())


class StoreError(Exception):
    """Base of the object store's errors."""


class ObjectMissing(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    version_id: str | None = None


@dataclass(frozen=True)
class _Version:
    key: str
    size: int
    version_id: str | None
    latest: bool
    delete_marker: bool


class _IterableReader(io.RawIOBase):
    """A file-like view of an iterator of byte pieces, so uploads stream without buffering the blob."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _translate(exc: Exception, key: str) -> StoreError:
    if isinstance(exc, S3Error) and exc.code in {"NoSuchKey", "NoSuchVersion", "NoSuchObject"}:
        return ObjectMissing(key)
    if isinstance(exc, S3Error) and exc.code in _TRANSIENT_CODES:
        return StoreUnavailable(f"S3 failed: {exc.code}")
    if isinstance(exc, S3Error):
        return StoreError(f"S3 refused the request: {exc.code}")
    if isinstance(exc, ServerError):
        return StoreUnavailable(f"S3 failed with HTTP {exc.status_code}")
    return StoreUnavailable(f"S3 unreachable: {type(exc).__name__}")


def s3_client(settings: CommonSettings) -> Minio:
    """A client of the S3 endpoint with this process's S3 identity (`s3_access_key`, `s3_secret_key`)."""
    url = urlparse(settings.s3_endpoint)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60),
        # Kept although `_retrying` retries too: listings and streamed reads do not go through it, and
        # urllib3's quick retries are what carry them over a pooled connection the server has closed.
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        url.netloc,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=url.scheme == "https",
        region=settings.s3_region,
        http_client=http,
    )


class ObjectStore:
    def __init__(self, client: Minio, bucket: str, retry_seconds: float = RETRY_SECONDS) -> None:
        self._client = client
        self.bucket = bucket
        self.retry_seconds = retry_seconds

    def _retrying(self, operation: str, key: str, call: Callable[[], T]) -> T:
        """`call()`, again with exponential backoff while S3 is unavailable, for up to `retry_seconds`."""
        deadline = time.monotonic() + self.retry_seconds
        delay = _FIRST_DELAY
        while True:
            try:
                return call()
            except _S3_FAILURES as exc:
                error = _translate(exc, key)
                if not isinstance(error, StoreUnavailable) or time.monotonic() + delay > deadline:
                    raise error from None  # the cause names the object key
            log.warning("S3 unavailable, retrying", extra={"operation": operation, "delay_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ObjectStore:
        return cls(s3_client(settings), settings.s3_bucket)

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        """Uploads a stream of unknown length; returns the bytes written.

        A blob of up to PART_SIZE (the first part, which the SDK would hold in memory anyway) goes up in
        one request that is retried like any other; a larger one streams up in parts, each request
        retried only by the HTTP client, since the stream cannot be replayed.
        """
        iterator = iter(pieces)
        head = bytearray()
        for piece in iterator:
            head += piece
            if len(head) > PART_SIZE:
                break
        else:
            return self.put_bytes(key, bytes(head))
        counted = _Counter(_chain(bytes(head), iterator))
        try:
            self._client.put_object(
                self.bucket, key, cast(BinaryIO, _IterableReader(counted)), length=-1, part_size=PART_SIZE
            )
        except _S3_FAILURES as exc:
            raise _translate(exc, key) from None  # the cause names the object key
        return counted.total

    def put_bytes(self, key: str, data: bytes) -> int:
        self._retrying(
            "put", key, lambda: self._client.put_object(self.bucket, key, io.BytesIO(data), length=len(data))
        )
        return len(data)

    def get_stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes as they arrive (opening it is retried; a break mid-stream is not)."""
        response = self._retrying("get", key, lambda: self._client.get_object(self.bucket, key))
        return _drain(response)

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_stream(key))

    def list_current(self, prefix: str) -> list[StoredObject]:
        def list_() -> list[StoredObject]:
            return [
                StoredObject(key=str(o.object_name), size=int(o.size or 0))
                for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]

        return self._retrying("list", prefix, list_)

    def list_versions(self, prefix: str) -> list[StoredObject]:
        return [
            StoredObject(key=version.key, size=version.size, version_id=version.version_id)
            for version in self._versions(prefix)
        ]

    def _versions(self, prefix: str) -> list[_Version]:
        def list_() -> list[_Version]:
            objects = self._client.list_objects(
                self.bucket, prefix=prefix, recursive=True, include_version=True
            )
            return [
                _Version(
                    key=str(o.object_name),
                    size=int(o.size or 0),
                    version_id=o.version_id,
                    latest=bool(o.is_latest),
                    delete_marker=bool(o.is_delete_marker),
                )
                for o in objects
            ]

        return self._retrying("list versions", prefix, list_)

    def delete_all_versions(self, prefix: str) -> tuple[int, int]:
        """Deletes every version (and delete marker) under a prefix; returns (objects, bytes).

        Versions this S3 identity may not delete (only retention may, `likeness.provisioning`) are left to
        retention: their object is hidden behind a delete marker instead, so nobody reads it any more, and
        counts as deleted."""
        versions = self._versions(prefix)
        if not versions:
            return 0, 0
        targets = [DeleteObject(v.key, v.version_id) for v in versions]
        # Deleting a version that is already gone succeeds, so a retried batch is harmless.
        errors = self._retrying(
            "delete", prefix, lambda: list(self._client.remove_objects(self.bucket, targets))
        )
        refused = {str(error.name) for error in errors if error.code == "AccessDenied"}
        if len(refused) < len({error.name for error in errors}):
            raise StoreError(f"S3 could not delete {len(errors)} object versions")
        if refused:
            self._hide(sorted(refused), versions)
        return len({v.key for v in versions}), sum(v.size for v in versions)

    def _hide(self, keys: list[str], versions: list[_Version]) -> None:
        """Delete markers on the objects whose versions S3 kept (unless one is their latest already)."""
        hidden = {v.key for v in versions if v.latest and v.delete_marker}
        targets = [DeleteObject(key) for key in keys if key not in hidden]
        if not targets:
            return
        log.info(
            "S3 keeps object versions for retention; hiding the objects", extra={"objects": len(targets)}
        )
        errors = self._retrying(
            "hide", keys[0], lambda: list(self._client.remove_objects(self.bucket, targets))
        )
        if errors:
            raise StoreError(f"S3 could not hide {len(errors)} objects")

    def is_available(self) -> bool:
        """Whether S3 answers. A refusal is an answer: a scoped identity may not even ask for the bucket
        (only its own prefixes), and what it may do is not health's business."""
        try:
            self._client.bucket_exists(self.bucket)
        except S3Error as exc:
            return exc.code not in _TRANSIENT_CODES
        except _S3_FAILURES:
            return False
        return True


class _Counter:
    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = pieces
        self.total = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self.total += len(piece)
            yield piece


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from rest


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(READ_SIZE)
    finally:
        response.close()
        response.release_conn()
