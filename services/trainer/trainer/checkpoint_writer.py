"""Stores training checkpoints in the background, so the GPU keeps training while one is uploaded.

The training thread hands over a snapshot (`TrainingState`, CPU copies); one writer thread serializes,
seals and uploads it, then prunes older checkpoints. At most one upload is in flight: handing over the
next snapshot first waits for the previous upload, which bounds memory and keeps them in order.

Nothing is written once the job is cancelled or its subject erased: the flag is checked right before
each upload (and a destroyed key makes the data-key request fail, which sets the flag). A failed upload
only costs resumability, never the training, so other errors are logged and training goes on.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from likeness.jobs import SUBJECT_ERASED, CancelFlag
from likeness.vault_transit import KeyDestroyed
from trainer.checkpoints import TrainingState, serialize_state
from trainer.training_objects import TrainingObjects

log = logging.getLogger(__name__)


class CheckpointWriter:
    def __init__(self, objects: TrainingObjects, flag: CancelFlag, keep: int) -> None:
        self.objects = objects
        self.flag = flag
        self.keep = keep
        self.stored: list[int] = []  # steps uploaded by this writer
        self.seconds = 0.0  # spent serializing, sealing and uploading (in the background)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._in_flight: Future[None] | None = None

    def submit(self, state: TrainingState) -> None:
        """Called on the training thread with a snapshot; returns once the upload has started."""
        self._wait_in_flight()
        if self.flag.is_set():
            return
        self._in_flight = self._executor.submit(self._store, state)

    def close(self) -> None:
        """Waits for the last upload: after this, nothing more of the job's checkpoints will be written."""
        self._wait_in_flight()
        self._executor.shutdown(wait=True)

    def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            self._in_flight.result()  # _store never raises
            self._in_flight = None

    def _store(self, state: TrainingState) -> None:
        started = time.perf_counter()
        try:
            data = serialize_state(state)
            if self.flag.is_set():  # right before the write: a cancelled or erased job writes nothing
                return
            self.objects.put_checkpoint(state.step, data)
            self.stored.append(state.step)
            self.objects.prune_checkpoints(self.keep)
        except KeyDestroyed:
            self.flag.set(SUBJECT_ERASED)
        except Exception as exc:  # the type only: messages of S3 errors name object keys
            log.warning("could not store a checkpoint; training goes on", extra={"error": type(exc).__name__})
        finally:
            self.seconds += time.perf_counter() - started
