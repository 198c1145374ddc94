"""The trainer's two roles on the shared job-service skeleton (`likeness.runtime`): `serve` (the gRPC API
over the `trainings` records) and `work` (the GPU worker on the `job.train` queue). The serve role also
cancels a subject's trainings when their `headshots` grant is withdrawn (`likeness.consent`)."""

from __future__ import annotations

import grpc

from likeness.consent import HEADSHOTS, cancel_jobs_on_withdrawal
from likeness.job_metrics import TRAIN
from likeness.jobs import JobRecords, QueueWorker
from likeness.runtime import Platform, serve_job_api, work_job_queue
from likeness.v1 import jobs_pb2, trainer_pb2, trainer_pb2_grpc
from likeness_ml.pinned_weights import require_pinned
from trainer.callers import CALLERS
from trainer.config import get_settings
from trainer.records import open_trainings
from trainer.service import TrainerServicer

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
Trainings = JobRecords[trainer_pb2.Training]


async def _add_servicer(platform: Platform, records: Trainings, server: grpc.aio.Server) -> None:
    servicer = TrainerServicer(platform, records, get_settings())
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)

    async def release_queued(record: object) -> bool:
        # A training cancelled by a withdrawal while queued frees the person's one place at once, as a
        # cancelled one does (`CancelTraining`): the person may grant again and train without waiting for a
        # worker to reach and skip the old job.
        if not isinstance(record, trainer_pb2.Training):
            return False
        return await servicer.quotas.release_queued(record.tenant, record.subject_id, record.id)

    await cancel_jobs_on_withdrawal(platform.bus, "trainer", records, _purpose_of, release_queued)


def _purpose_of(record: object) -> str:
    """Every training is of the `headshots` purpose."""
    return HEADSHOTS


def _new_worker(
    platform: Platform, records: Trainings
) -> QueueWorker[jobs_pb2.TrainJob, trainer_pb2.Training]:
    from trainer.worker import TrainingWorker  # torch and diffusers load only in the worker role

    return TrainingWorker(platform, records, get_settings())


def serve() -> None:
    serve_job_api(get_settings(), SERVICE_NAME, TRAIN, open_trainings, _add_servicer, CALLERS)


def work() -> None:
    settings = get_settings()
    # Before anything is loaded or connected: the weights must be the pinned ones (and real ones in
    # production), or the worker does not start.
    require_pinned(
        settings.base_model,
        "base_model",
        production=settings.is_production,
        process="trainer-worker",
        manifest_sha256=settings.base_model_manifest_sha256,
    )
    work_job_queue(settings, open_trainings, _new_worker)
