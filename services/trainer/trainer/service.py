"""TrainerService (the `serve` role): accepts trainings onto the work queue and reports on them.

Every method runs with the caller's verified token (`trainer.method_rules`) and checks its request against
it: the tenant must be the token's; an end user's token may touch only its own subject, and a training of
another subject answers NOT_FOUND, exactly like one that does not exist. A training needs the person's live
`headshots` consent grant (`likeness.consent`): without it, PERMISSION_DENIED `consent_required`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

import grpc
import nats.js.errors

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import job_nats_subject
from likeness.consent import HEADSHOTS, ConsentReader, require_consent
from likeness.item_deletion import (
    NOT_A_CRYPTO_ERASE,
    ItemNotFound,
    JobBusy,
    NotMarked,
    audited,
    deletion_once_key,
    forget_job,
    is_marked,
    mark_job,
    marked_job,
)
from likeness.jobs import CANCELLED_ON_REQUEST, TERMINAL, JobRecords
from likeness.method_access import current_principal, may_touch, require_subject, require_tenant
from likeness.provisioning import TRAIN_QUEUES
from likeness.quota_policy import ACTIVE_TRAINING_REFUSAL
from likeness.quotas import Fence, TenantQuotas, is_per_subject_refusal, refuse
from likeness.record_pages import InvalidPage, subject_page
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.store import StoreError
from likeness.tenant_queues import QueueScheduler
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, trainer_pb2, trainer_pb2_grpc
from likeness.vault_transit import KeyDestroyed, KeyError_
from trainer.config import TrainerSettings
from trainer.export import exported_models
from trainer.method_rules import TOKEN_RULES

Context = grpc.aio.ServicerContext[object, object]
JS = common_pb2.JobStatus


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    #: What each method asks of the caller's token (enforced by the server's interceptor).
    token_rules = TOKEN_RULES

    def __init__(
        self, platform: Platform, records: JobRecords[trainer_pb2.Training], settings: TrainerSettings
    ) -> None:
        self.platform = platform
        self.records = records
        self.settings = settings
        self.scheduler = QueueScheduler(
            platform.bus.js, TRAIN_QUEUES, ack_wait=settings.ack_wait_seconds, attempts=settings.max_deliver
        )
        self.consent = ConsentReader(platform.bus)
        self.audit = AuditTrail(platform.bus, settings.audit_pseudonym_secret.get_secret_value(), "trainer")
        self.quotas = TenantQuotas(platform.bus, settings, "train")

    async def SubmitTraining(
        self, request: trainer_pb2.SubmitTrainingRequest, context: Context
    ) -> trainer_pb2.SubmitTrainingResponse:
        await require_subject(context, request.tenant, request.subject_id)
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        if not request.photo_ids or not all(ids.is_valid_id(p, "pho") for p in request.photo_ids):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_photos",
                "Accepted photo ids are required.",
            )
        if not 0 <= request.steps <= self.settings.max_steps:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_steps",
                f"steps must be 0..{self.settings.max_steps}.",
            )
        # A training needs the person's live `headshots` grant (the worker checks it again when it starts).
        await require_consent(
            context,
            self.consent,
            request.tenant,
            request.subject_id,
            HEADSHOTS,
            audit=self.audit,
            refused_action="training.refused",
        )
        judge = functools.partial(
            self.quotas.training_refusal, request.tenant, request.subject_id, request.steps
        )
        async with self.quotas.admitting(request.tenant):  # see `TenantQuotas.admitting`
            fence = await self.quotas.check(context, request.tenant, judge)
            now = now_timestamp()
            training = trainer_pb2.Training(
                id=ids.new_id("trn"),
                tenant=request.tenant,
                subject_id=request.subject_id,
                status=JS.JOB_STATUS_QUEUED,
                photo_ids=list(request.photo_ids),
                created_at=now,
                updated_at=now,
                progress=common_pb2.Progress(step=0, total_steps=request.steps),
            )
            await self.records.create(training)
            job = jobs_pb2.TrainJob(
                training_id=training.id,
                tenant=training.tenant,
                subject_id=training.subject_id,
                photo_ids=training.photo_ids,
                steps=request.steps,
            )
            # The tenant's queue exists before its first job (`likeness.tenant_queues`); then the job id
            # doubles as Nats-Msg-Id: a retried submit inside the dedup window is one job.
            await self.scheduler.ensure(training.tenant)
            nats_subject = job_nats_subject("train", training.tenant, training.subject_id)

            async def publish(under: Fence) -> None:
                await self.platform.bus.publish(nats_subject, job, msg_id=training.id, expect=under.headers())

            withdraw = functools.partial(forget_job, self.records, training.tenant, training.id)
            try:
                # Published only if the tenant's queue is still what the quota check saw (`Fence`).
                await self.quotas.publish_admitted(context, training.tenant, fence, publish, judge, withdraw)
            except nats.js.errors.APIError as error:
                if not is_per_subject_refusal(error):
                    raise
                # Another submit for this person won the one place (the stream's per-subject bound).
                await forget_job(self.records, training.tenant, training.id)
                await refuse(context, training.tenant, ACTIVE_TRAINING_REFUSAL)
        return trainer_pb2.SubmitTrainingResponse(training=training)

    async def _require(
        self, tenant: str, training_id: str, context: Context, *, deleting: bool = False
    ) -> trainer_pb2.Training:
        """The training, if it is of the token's tenant, its record is the one its key names, and the token
        may see its subject (else NOT_FOUND, as for a training that does not exist). A training whose
        per-item deletion has begun is gone for every caller but the deletion itself (`deleting`)."""
        await require_tenant(context, tenant)
        found = None
        if ids.is_valid_tenant(tenant) and ids.is_valid_id(training_id, "trn"):
            found = await self.records.get(tenant, training_id)
        if (
            found is None
            or (found[0].tenant, found[0].id) != (tenant, training_id)
            or not may_touch(tenant, found[0].subject_id)
            or (is_marked(found[0]) and not deleting)
        ):
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "No such training.")
        return found[0]

    async def DeleteTraining(
        self, request: trainer_pb2.DeleteTrainingRequest, context: Context
    ) -> trainer_pb2.DeleteTrainingResponse:
        """Per-item deletion of a training and its model (`likeness.item_deletion`): marks the record (one
        still queued or running is refused: cancel it first); with `purged`, audits and forgets it."""
        training = await self._require(request.tenant, request.training_id, context, deleting=True)
        principal = await require_tenant(context, request.tenant)
        try:
            if not request.purged:
                marked = await mark_job(self.records, request.tenant, request.training_id)
                return trainer_pb2.DeleteTrainingResponse(training=marked)
            training = await marked_job(self.records, request.tenant, request.training_id)
        except ItemNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "No such training.")
        except JobBusy:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "training_running",
                "The training is still queued or running: cancel it, then delete it.",
            )
        except NotMarked:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "deletion_not_started",
                "Delete the training first.",
            )
        await audited(
            context,
            self.audit.record(
                training.tenant,
                "model.deleted",
                training.subject_id,
                "ok",
                training.id,
                principal=self.audit.principal(principal),
                purpose="deletion",
                notice=NOT_A_CRYPTO_ERASE,
                once_key=deletion_once_key(training.id),
            ),
        )
        await forget_job(self.records, request.tenant, request.training_id)
        return trainer_pb2.DeleteTrainingResponse(training=training)

    async def GetTraining(
        self, request: trainer_pb2.GetTrainingRequest, context: Context
    ) -> trainer_pb2.GetTrainingResponse:
        return trainer_pb2.GetTrainingResponse(
            training=await self._require(request.tenant, request.training_id, context)
        )

    async def CancelTraining(
        self, request: trainer_pb2.CancelTrainingRequest, context: Context
    ) -> trainer_pb2.CancelTrainingResponse:
        await self._require(request.tenant, request.training_id, context)
        was_queued = False

        def cancel(training: trainer_pb2.Training) -> bool:
            nonlocal was_queued
            if training.status in TERMINAL:
                return False
            was_queued = training.status == JS.JOB_STATUS_QUEUED
            # A queued job is skipped when a worker picks it up; a running one stops within one step.
            training.status = JS.JOB_STATUS_CANCELLED
            training.error = CANCELLED_ON_REQUEST
            return True

        updated = await self.records.mutate(request.tenant, request.training_id, cancel)
        if updated is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "No such training.")
        if was_queued:
            # A queued job would hold its subject's one place until a worker reached it: free it now (a
            # running one frees it when its worker stops, within a step).
            await self.quotas.release_queued(updated.tenant, updated.subject_id, updated.id)
        return trainer_pb2.CancelTrainingResponse(training=updated)

    async def ListTrainings(
        self, request: trainer_pb2.ListTrainingsRequest, context: Context
    ) -> trainer_pb2.ListTrainingsResponse:
        await require_subject(context, request.tenant, request.subject_id)
        try:
            page = await subject_page(
                self.records, request.tenant, request.subject_id, request.page_size, request.page_token, "trn"
            )
            return trainer_pb2.ListTrainingsResponse(
                trainings=page.records, next_page_token=page.next_page_token
            )
        except InvalidPage as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))

    async def ExportModels(
        self, request: trainer_pb2.ExportModelsRequest, context: Context
    ) -> AsyncIterator[trainer_pb2.ExportModelsResponse]:
        """The subject's trained models, decrypted, for their data export (see `trainer.export`)."""
        await require_subject(context, request.tenant, request.subject_id)
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        trainings = [
            training
            for training in await self.records.tenant_records(request.tenant)
            # A model whose per-item deletion has begun is no longer held for the person: not exported.
            if training.subject_id == request.subject_id and not is_marked(training)
        ]
        principal = self.audit.principal(current_principal())

        async def record_export(training_id: str) -> None:
            await self.audit.record(
                request.tenant,
                "model.exported",
                request.subject_id,
                "ok",
                training_id,
                principal=principal,
                purpose="export",
            )

        try:
            async for part in exported_models(
                self.platform.sealed, request.tenant, request.subject_id, trainings, record_export
            ):
                yield part
        except KeyDestroyed:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "subject_erased",
                "This subject has been erased.",
            )
        except (KeyError_, StoreError):
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable; retry later.",
            )

    async def GetTrainingUsage(
        self, request: trainer_pb2.GetTrainingUsageRequest, context: Context
    ) -> trainer_pb2.GetTrainingUsageResponse:
        await require_tenant(context, request.tenant)
        if not ids.is_valid_tenant(request.tenant):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "No such tenant.")
        return trainer_pb2.GetTrainingUsageResponse(usage=await self.quotas.report(request.tenant))

    async def WatchTraining(
        self, request: trainer_pb2.WatchTrainingRequest, context: Context
    ) -> AsyncIterator[trainer_pb2.WatchTrainingResponse]:
        last = b""
        while True:
            training = await self._require(request.tenant, request.training_id, context)
            encoded = training.SerializeToString(deterministic=True)
            if encoded != last:
                last = encoded
                yield trainer_pb2.WatchTrainingResponse(training=training)
            if training.status in TERMINAL:
                return
            await asyncio.sleep(0.5)
