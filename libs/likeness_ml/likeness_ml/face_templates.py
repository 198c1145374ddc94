"""Face templates in the two layouts that exist: ingest's one per photo, and the set sealed beside a model.

A photo's template (written by ingest, `faces/<photo>`), little-endian: version 1 is ``b"LKFT"``, a version
byte (1), 3 zero bytes, the photo's perceptual hash (u64), then 128 float32; version 0 is the bare 128
float32.

A model's template set (written by the trainer beside the LoRA, `models/<training>/faces`): the
embeddings of the photos it was trained on, so the renderer's identity gate keeps a reference for the
model's whole life, long after the photos and their templates are deleted. Only the embeddings travel
(the perceptual hashes are ingest's duplicate check and stay with the photos): ``b"LKFS"``, a version
byte (1), 3 zero bytes, the count (u32), then count x 128 float32. Biometric data: sealed under the
person's key like everything else of theirs, never logged.

A data export gives both back to the person as JSON numbers (`face_templates.json`: each embedding a list
of 128 numbers, exact float32 values); `embeddings_from_json` reads them back as the arrays above.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

EMBEDDING_SIZE = 128
_EMBEDDING = struct.Struct(f"<{EMBEDDING_SIZE}f")
_PHOTO_HEADER = struct.Struct("<4sB3xQ")
_PHOTO_MAGIC = b"LKFT"
_SET_HEADER = struct.Struct("<4sB3xI")
_SET_MAGIC = b"LKFS"
_SET_VERSION = 1
#: More than any subject's photo limit: a bound on what a forged header can make a reader allocate.
MAX_TEMPLATES = 1024

FloatArray = np.ndarray[Any, np.dtype[np.float32]]


def read_photo_template(blob: bytes) -> FloatArray | None:
    """The embedding in one of ingest's templates, or None for a layout this version cannot read."""
    if len(blob) == _EMBEDDING.size:
        values = _EMBEDDING.unpack(blob)
    elif len(blob) == _PHOTO_HEADER.size + _EMBEDDING.size:
        magic, version, _ = _PHOTO_HEADER.unpack_from(blob)
        if magic != _PHOTO_MAGIC or version != 1:
            return None
        values = _EMBEDDING.unpack_from(blob, _PHOTO_HEADER.size)
    else:
        return None
    embedding: FloatArray = np.asarray(values, dtype=np.float32)
    return embedding if np.all(np.isfinite(embedding)) else None


def stack_embeddings(rows: Iterable[FloatArray]) -> FloatArray:
    """(n, 128) float32; (0, 128) for none."""
    listed = list(rows)
    if not listed:
        return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
    stacked: FloatArray = np.stack(listed).astype(np.float32)
    return stacked


def parse_photo_templates(blobs: Iterable[bytes]) -> FloatArray:
    """(n, 128) embeddings of the readable templates among ingest's stored blobs."""
    return stack_embeddings(row for row in (read_photo_template(blob) for blob in blobs) if row is not None)


def pack_template_set(embeddings: FloatArray) -> bytes:
    """A model's template set from (n, 128) embeddings."""
    if embeddings.ndim != 2 or embeddings.shape[1] != EMBEDDING_SIZE:
        raise ValueError(f"embeddings are (n, {EMBEDDING_SIZE})")
    if len(embeddings) > MAX_TEMPLATES:
        raise ValueError(f"at most {MAX_TEMPLATES} templates")
    header = _SET_HEADER.pack(_SET_MAGIC, _SET_VERSION, len(embeddings))
    return header + np.ascontiguousarray(embeddings, dtype="<f4").tobytes()


def unpack_template_set(blob: bytes) -> FloatArray:
    """(n, 128) embeddings of a model's template set; ValueError for anything else."""
    if len(blob) < _SET_HEADER.size:
        raise ValueError("not a template set")
    magic, version, count = _SET_HEADER.unpack_from(blob)
    if magic != _SET_MAGIC or version != _SET_VERSION or count > MAX_TEMPLATES:
        raise ValueError("not a template set of a known version")
    if len(blob) != _SET_HEADER.size + count * _EMBEDDING.size:
        raise ValueError("a template set of the wrong length")
    values = np.frombuffer(blob, dtype="<f4", offset=_SET_HEADER.size).reshape(count, EMBEDDING_SIZE)
    if not np.all(np.isfinite(values)):
        raise ValueError("a template set with non-finite values")
    embeddings: FloatArray = values.astype(np.float32)
    return embeddings


def embeddings_from_json(rows: Sequence[Sequence[float]]) -> FloatArray:
    """(n, 128) float32 from an export's JSON embeddings; ValueError for anything else (a wrong length,
    a value that is not a finite number, more than `MAX_TEMPLATES`)."""
    if len(rows) > MAX_TEMPLATES:
        raise ValueError(f"at most {MAX_TEMPLATES} templates")
    if any(len(row) != EMBEDDING_SIZE for row in rows):
        raise ValueError(f"an embedding has {EMBEDDING_SIZE} values")
    values = np.asarray(rows, dtype=np.float64).reshape(len(rows), EMBEDDING_SIZE)
    if not np.all(np.isfinite(values)):
        raise ValueError("an embedding with non-finite values")
    embeddings: FloatArray = values.astype(np.float32)
    return embeddings
