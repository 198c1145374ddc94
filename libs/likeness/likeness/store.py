"""Object store over any S3 API (SeaweedFS locally, MinIO or S3 in production) with the minio SDK.

Holds only envelopes (ciphertext). Streams both ways; deletes every version of an object, since a
versioned bucket otherwise keeps old copies of a person's data.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig

from likeness.config import CommonSettings

PART_SIZE = 16 * 1024 * 1024
READ_SIZE = 256 * 1024


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
    if isinstance(exc, S3Error):
        return StoreError(f"S3 refused the request: {exc.code}")
    return StoreUnavailable(f"S3 unreachable: {type(exc).__name__}")


class ObjectStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ObjectStore:
        url = urlparse(settings.s3_endpoint)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        client = Minio(
            url.netloc,
            access_key=settings.s3_access_key.get_secret_value(),
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=url.scheme == "https",
            region=settings.s3_region,
            http_client=http,
        )
        return cls(client, settings.s3_bucket)

    def ensure_bucket(self, versioning: bool = True) -> None:
        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
            if versioning:
                self._client.set_bucket_versioning(self.bucket, VersioningConfig("Enabled"))
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, self.bucket) from exc

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        """Uploads a stream of unknown length in parts; returns the bytes written."""
        counted = _Counter(pieces)
        try:
            self._client.put_object(
                self.bucket, key, cast(BinaryIO, _IterableReader(counted)), length=-1, part_size=PART_SIZE
            )
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, key) from exc
        return counted.total

    def put_bytes(self, key: str, data: bytes) -> int:
        try:
            self._client.put_object(self.bucket, key, io.BytesIO(data), length=len(data))
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, key) from exc
        return len(data)

    def get_stream(self, key: str) -> Iterator[bytes]:
        try:
            response = self._client.get_object(self.bucket, key)
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, key) from exc
        return _drain(response)

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_stream(key))

    def list_current(self, prefix: str) -> list[StoredObject]:
        try:
            return [
                StoredObject(key=str(o.object_name), size=int(o.size or 0))
                for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, prefix) from exc

    def list_versions(self, prefix: str) -> list[StoredObject]:
        try:
            objects = self._client.list_objects(
                self.bucket, prefix=prefix, recursive=True, include_version=True
            )
            return [
                StoredObject(key=str(o.object_name), size=int(o.size or 0), version_id=o.version_id)
                for o in objects
            ]
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, prefix) from exc

    def delete_all_versions(self, prefix: str) -> tuple[int, int]:
        """Deletes every version (and delete marker) under a prefix; returns (objects, bytes)."""
        versions = self.list_versions(prefix)
        if not versions:
            return 0, 0
        targets = [DeleteObject(v.key, v.version_id) for v in versions]
        try:
            errors = list(self._client.remove_objects(self.bucket, targets))
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            raise _translate(exc, prefix) from exc
        if errors:
            raise StoreError(f"S3 could not delete {len(errors)} object versions")
        return len({v.key for v in versions}), sum(v.size for v in versions)

    def is_available(self) -> bool:
        try:
            self._client.bucket_exists(self.bucket)
        except (S3Error, urllib3.exceptions.HTTPError):
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


def _drain(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(READ_SIZE)
    finally:
        response.close()
        response.release_conn()
