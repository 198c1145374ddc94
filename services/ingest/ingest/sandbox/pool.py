"""The pool of decoding workers the ingest service decodes through (an `ingest.decode.Decoder`).

As many workers as photos are sanitized at once (`max_concurrent`), started and checked before the
service serves (`start` raises `SandboxUnavailable` otherwise: fail closed). A call takes an idle worker,
runs one decode in it and gives it back; a worker is replaced after `jobs` jobs (so a decoder exploit
lives for a bounded number of uploads), and at once when it crashes, hangs past the timeout (killed), is
killed by its seccomp filter or answers out of protocol: the photo is then `corrupt_image`, and the
service keeps serving. Starting and stopping workers happens on one long-lived thread of the pool (the
"spawner"): never in the path of an upload, and the thread a worker's death-signal is tied to lives as
long as the pool.

The byte limit and the format's magic bytes are checked here before a job is sent (no parser needed
for either); every other check, from the header on, happens in the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from prometheus_client import Counter

from ingest.decode import DecodedImage
from ingest.formats import sniff_format
from ingest.limits import SanitizeLimits
from ingest.reasons import ReasonCode, RejectedInput
from ingest.sandbox.protocol import SharedLayout
from ingest.sandbox.worker_process import (
    START_SECONDS,
    WORKER_ENTRY,
    SandboxUnavailable,
    WorkerFailed,
    WorkerLimits,
    WorkerProcess,
)

log = logging.getLogger(__name__)

#: Why a worker ends: after its jobs (recycled), or failing one (see `WorkerFailed`).
ENDED_REASONS = (
    "recycled",
    "timed_out",
    "crashed",
    "filter_violation",
    "out_of_cpu",
    "killed",
    "exited",
    "malformed_reply",
)
WORKERS_ENDED = Counter(
    "likeness_ingest_decoder_workers_ended_total",
    "Decoding workers ended, by reason: recycled (after their jobs), timed_out, crashed, filter_violation "
    "(killed by its seccomp filter: a decoder tried a forbidden system call), out_of_cpu, killed, exited, "
    "malformed_reply",
    ["reason"],
)
for _reason in ENDED_REASONS:  # every series at 0 from the start: rates and alerts read 0, not "no data"
    WORKERS_ENDED.labels(reason=_reason)


class DecoderUnavailable(Exception):
    """No decoding worker could be had (none starts): the upload cannot be judged now; retry later."""


class DecoderPool:
    def __init__(
        self,
        workers: int,
        max_bytes: int,
        max_pixels: int,
        limits: WorkerLimits,
        *,
        entry: Sequence[str] = WORKER_ENTRY,
    ) -> None:
        """`entry`: the interpreter arguments that start a worker; always the production module but in
        the sandbox's own tests, which plant a hostile decoder with a test-only script."""
        if workers <= 0:
            raise ValueError("a pool needs at least one worker")
        self.size = workers
        self.layout = SharedLayout.for_limits(max_bytes, max_pixels)
        self.limits = limits
        self.entry = tuple(entry)
        self._idle: list[WorkerProcess] = []
        self._all: set[WorkerProcess] = set()
        self._starting = 0
        self._failure: SandboxUnavailable | None = None
        self._closed = False
        self._changed = threading.Condition()
        #: True: start a worker; a worker: stop it; False: the spawner ends.
        self._tasks: queue.SimpleQueue[WorkerProcess | bool] = queue.SimpleQueue()
        self._spawner = threading.Thread(target=self._spawn_forever, name="decoder-spawner", daemon=True)

    # --- the service's side ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each is confined; raises `SandboxUnavailable` otherwise."""
        self._spawner.start()
        with self._changed:
            for _ in range(self.size):
                self._request_worker()
            if not self._changed.wait_for(lambda: self._starting == 0, timeout=START_SECONDS * self.size):
                failure: SandboxUnavailable | None = SandboxUnavailable(
                    "the decoding workers did not start in time"
                )
            else:
                failure = self._failure
        if failure is not None:
            self.close()
            raise failure
        log.info("decoding sandbox ready", extra={"workers": self.size})

    def __call__(self, data: bytes, limits: SanitizeLimits, *, min_side: int | None = None) -> DecodedImage:
        """`ingest.decode.decode_image`, run in a worker; raises `RejectedInput` as it does (a worker that
        fails makes it `corrupt_image`), and `DecoderUnavailable` when no worker can be had."""
        if len(data) > limits.max_bytes or len(data) > self.layout.input_capacity:
            raise RejectedInput(ReasonCode.FILE_TOO_LARGE)
        image_format = sniff_format(data)
        if image_format is None:
            raise RejectedInput(ReasonCode.UNSUPPORTED_FORMAT, "magic bytes not in the allow-list")
        if limits.max_pixels * 3 > self.layout.output_capacity:
            raise ValueError("the limits allow larger frames than the pool's shared memory holds")
        worker = self._acquire()
        try:
            decoded = worker.run(data, limits, min_side, self.limits.timeout_seconds)
            if decoded.source_format is not image_format:  # not what the bytes announce: a lie
                worker.kill()
                raise WorkerFailed("malformed_reply")
        except WorkerFailed as failure:
            self._retire(worker, failure.reason)
            log.warning(
                "a decoding worker failed; the photo is taken as corrupt", extra={"reason": failure.reason}
            )
            raise RejectedInput(ReasonCode.CORRUPT_IMAGE, f"decoding worker {failure.reason}") from None
        except RejectedInput:
            self._release(worker)
            raise
        except BaseException:
            self._retire(worker, "crashed")
            raise
        self._release(worker)
        return decoded

    def close(self) -> None:
        """Stop every worker (they exit when their channel closes) and the spawner."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._all.difference_update(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.stop()
        if self._spawner.is_alive():
            self._tasks.put(False)
            self._spawner.join(timeout=30)

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (for the operators' and the tests' inspection)."""
        with self._changed:
            return sorted(worker.pid for worker in self._all)

    # --- workers in and out ------------------------------------------------------------------------------

    def _acquire(self) -> WorkerProcess:
        deadline = time.monotonic() + START_SECONDS
        with self._changed:
            while not self._idle:
                if self._closed:
                    raise DecoderUnavailable("the decoding pool is closed")
                if self._failure is not None and self._starting == 0:
                    failure, self._failure = self._failure, None
                    self._request_worker()  # the next upload tries again
                    raise DecoderUnavailable(str(failure)) from failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DecoderUnavailable("no decoding worker became free in time")
                self._changed.wait(remaining)
            return self._idle.pop()

    def _release(self, worker: WorkerProcess) -> None:
        if worker.jobs_left <= 0:
            self._retire(worker, "recycled")
            return
        with self._changed:
            if not self._closed:
                self._idle.append(worker)
                self._changed.notify()
                return
        self._retire(worker, "recycled")

    def _retire(self, worker: WorkerProcess, reason: str) -> None:
        """Count the worker's end and have the spawner stop it and start its replacement."""
        WORKERS_ENDED.labels(reason=reason).inc()
        with self._changed:
            self._all.discard(worker)
            if not self._closed:
                # Queued under the lock: before the spawner's stop, which `close` queues after it.
                self._tasks.put(worker)
                self._request_worker()
                return
        worker.stop()

    def _request_worker(self) -> None:
        """(With the lock held.) One more worker to start."""
        self._starting += 1
        self._tasks.put(True)

    def _spawn_forever(self) -> None:
        while True:
            task = self._tasks.get()
            if task is False:
                return
            if isinstance(task, WorkerProcess):
                task.stop()
                continue
            self._spawn_one()

    def _spawn_one(self) -> None:
        with self._changed:
            if self._closed:
                self._starting -= 1
                return
        try:
            worker = WorkerProcess.start(self.layout, self.limits, self.entry)
        except SandboxUnavailable as failure:
            log.error("a decoding worker could not start confined", extra={"problem": str(failure)})
            with self._changed:
                self._failure = failure
                self._starting -= 1
                self._changed.notify_all()
            return
        except Exception as error:  # out of memory, out of processes: the same for the callers
            log.exception("a decoding worker could not start")
            with self._changed:
                self._failure = SandboxUnavailable(
                    f"a decoding worker could not start: {type(error).__name__}"
                )
                self._starting -= 1
                self._changed.notify_all()
            return
        with self._changed:
            self._starting -= 1
            if not self._closed:
                self._all.add(worker)
                self._idle.append(worker)
                self._changed.notify_all()
                return
        worker.stop()
