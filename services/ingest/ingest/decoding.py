"""What the ingest service decodes uploads with, and the protection of its own process; both fail closed.

In production the decoder is always the sandbox's pool (`ingest.sandbox`), started and checked before the
service serves: a machine without seccomp, prctl or libseccomp, or a worker that does not come up fully
confined, stops the service from starting rather than decoding in the process that holds the keys.
Development may turn the sandbox off (`LIKENESS_DECODE_SANDBOX=false`, for a machine without seccomp);
production settings refuse that (`ingest.config`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from ingest.config import IngestSettings
from ingest.decode import Decoder, decode_image
from ingest.sandbox import privileges
from ingest.sandbox.pool import DecoderPool

log = logging.getLogger(__name__)


def protect_service_process() -> None:
    """Make this process non-dumpable before it reads a secret: no core dump of it, and no process of its
    user (a decoding worker, had it escaped its filter) may ptrace it or read its /proc mem and environ.
    On Linux a failure raises; elsewhere the sandbox cannot run at all (its pool refuses to start)."""
    if sys.platform.startswith("linux"):
        privileges.make_undumpable()


def start_decoder(settings: IngestSettings) -> tuple[Decoder, Callable[[], None]]:
    """The decoder to sanitize with, ready, and what stops it. Raises `SandboxUnavailable` when the
    sandbox cannot start confined."""
    if not settings.decode_sandbox:
        log.warning(
            "the decoding sandbox is OFF: uploads are parsed in the service process (development only)"
        )
        return decode_image, _nothing
    pool = DecoderPool(
        settings.max_concurrent, settings.max_upload_bytes, settings.max_pixels, settings.sandbox_limits()
    )
    pool.start()
    return pool, pool.close


def _nothing() -> None:
    return None
