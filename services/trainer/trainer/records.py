"""The `trainings` KV bucket, owned by the trainer (both roles)."""

from __future__ import annotations

from likeness.bus import Bus
from likeness.jobs import JobRecords
from likeness.v1 import trainer_pb2

TRAININGS_BUCKET = "trainings"


async def open_trainings(bus: Bus) -> JobRecords[trainer_pb2.Training]:
    return JobRecords(await bus.kv(TRAININGS_BUCKET), trainer_pb2.Training)
