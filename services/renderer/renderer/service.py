"""RendererService (the `serve` role): queues renders, reports them, streams decrypted images out.

Every method that reads or changes a tenant's or a person's data runs with the caller's verified token
(`renderer.method_rules`) and checks its request against it: the tenant must be the token's; an end user's
token may touch only its own subject, and a render of another subject answers NOT_FOUND, exactly like one
that does not exist. An image is decrypted only from a render record that is the one its key names
(`renderer.records.verified_render`), and the object and the key that opens it are named from the request's
tenant and render id, never from free fields of the record.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import AsyncIterator

import grpc

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import job_nats_subject
from likeness.consent import ConsentReader, render_purposes, require_consent
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
from likeness.jobs import JobRecords
from likeness.method_access import current_principal, may_touch, require_subject, require_tenant
from likeness.object_names import render_image_key
from likeness.provisioning import RENDER_QUEUES
from likeness.quotas import Fence, TenantQuotas
from likeness.record_pages import InvalidPage, subject_page
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.store import ObjectMissing, StoreError
from likeness.tenant_queues import QueueScheduler
from likeness.timeutil import now_timestamp, to_timestamp
from likeness.v1 import common_pb2, jobs_pb2, renderer_pb2, renderer_pb2_grpc
from likeness.vault_transit import KeyDestroyed, VaultUnavailable
from renderer.catalog import Catalog, CatalogOption, ChoiceIds, UnknownChoice, load_catalog
from renderer.config import RendererSettings
from renderer.method_rules import TOKEN_RULES
from renderer.priorities import queue_token, resolve_priority
from renderer.records import verified_render
from renderer.rejection import ImageNotFound, image_to_reject, settle_rejection
from renderer.styles import Style
from renderer.team_looks import RenderPlan, TeamLook, TeamLookError, TeamLooks

Context = grpc.aio.ServicerContext[object, object]
JS = common_pb2.JobStatus
CHUNK = 256 * 1024


class RendererServicer(renderer_pb2_grpc.RendererServiceServicer):
    #: What each method asks of the caller's token (enforced by the server's interceptor).
    token_rules = TOKEN_RULES

    def __init__(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        styles: dict[str, Style],
        settings: RendererSettings,
        looks: TeamLooks | None = None,
    ) -> None:
        self.platform = platform
        self.records = records
        self.styles = styles
        self.settings = settings
        self.looks = looks
        self.scheduler = QueueScheduler(
            platform.bus.js, RENDER_QUEUES, ack_wait=settings.ack_wait_seconds, attempts=settings.max_deliver
        )
        self.consent = ConsentReader(platform.bus)
        self.audit = AuditTrail(platform.bus, settings.audit_pseudonym_secret.get_secret_value(), "renderer")
        self.quotas = TenantQuotas(platform.bus, settings, "render")
        self.catalog: Catalog = load_catalog()

    async def _plan(self, request: renderer_pb2.SubmitRenderRequest, context: Context) -> RenderPlan:
        """Styles, catalog choices and seed: from the request, or as far as it fixes them, its team look."""
        requested_seed = request.seed if request.HasField("seed") else None
        requested = ChoiceIds(request.background, request.outfit, request.lighting)
        look_id = request.team_look_id
        if not look_id:
            seed = requested_seed if requested_seed is not None else secrets.randbelow(2**31)
            return RenderPlan(styles=list(request.styles), choices=requested, seed=seed)
        if self.looks is None:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "team_looks_unavailable", "No looks.")
        try:
            return await self.looks.plan(
                request.tenant, look_id, list(request.styles), requested_seed, requested
            )
        except TeamLookError as refused:
            code = grpc.StatusCode.NOT_FOUND if refused.code == "team_look_not_found" else None
            await abort(context, code or grpc.StatusCode.INVALID_ARGUMENT, refused.code, str(refused))

    async def _check_choices(self, request: renderer_pb2.SubmitRenderRequest, context: Context) -> None:
        """Catalog ids only, checked here and not only at the gateway: the edge is never trusted alone."""
        try:
            self.catalog.choose(request.background, request.outfit, request.lighting)
        except UnknownChoice as unknown:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unknown_catalog_id", str(unknown))

    async def _check_material(self, request: renderer_pb2.SubmitRenderRequest, context: Context) -> None:
        """A render names a training, or is instant (one photo, maybe a training too): instant mode needs
        the identity adapter configured and a photo id of the right form."""
        if request.instant:
            if self.settings.identity_adapter is None:
                await abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "instant_unavailable",
                    "Instant mode is not configured on this deployment.",
                )
            if not ids.is_valid_id(request.photo_id, "pho"):
                await abort(context, grpc.StatusCode.NOT_FOUND, "photo_not_found", "No such photo.")
            if not request.training_id:
                return
        elif request.photo_id:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "photo_without_instant",
                "A photo conditions instant renders only.",
            )
        if not ids.is_valid_id(request.training_id, "trn"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "No such training.")

    async def SubmitRender(
        self, request: renderer_pb2.SubmitRenderRequest, context: Context
    ) -> renderer_pb2.SubmitRenderResponse:
        await require_subject(context, request.tenant, request.subject_id)
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        await self._check_material(request, context)
        await self._check_choices(request, context)
        priority = resolve_priority(request.priority, request.team_look_id)
        if priority is None:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_priority",
                "A priority is interactive or bulk.",
            )
        # The person's live grants for this render's purposes (`headshots`, or `team_look` in a team look;
        # `instant` for one conditioned on their photo).
        purposes = render_purposes(
            request.team_look_id, instant=request.instant, trained=bool(request.training_id)
        )
        for purpose in purposes:
            await require_consent(
                context,
                self.consent,
                request.tenant,
                request.subject_id,
                purpose,
                audit=self.audit,
                refused_action="render.refused",
            )
        plan = await self._plan(request, context)
        unknown = [s for s in plan.styles if s not in self.styles]
        if not plan.styles or unknown or len(plan.styles) > self.settings.max_styles:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown_style",
                "Choose 1 to 16 styles from the catalog.",
            )
        per_style = request.images_per_style or 2
        if not 1 <= per_style <= self.settings.max_images_per_style:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_images_per_style",
                f"images_per_style must be 1..{self.settings.max_images_per_style}.",
            )
        judge = functools.partial(self.quotas.render_refusal, request.tenant)
        async with self.quotas.admitting(request.tenant):  # see `TenantQuotas.admitting`
            fence = await self.quotas.check(context, request.tenant, judge)
            now = now_timestamp()
            render = renderer_pb2.Render(
                id=ids.new_id("ren"),
                tenant=request.tenant,
                subject_id=request.subject_id,
                training_id=request.training_id,
                status=JS.JOB_STATUS_QUEUED,
                styles=plan.styles,
                images_per_style=per_style,
                seed=plan.seed,
                progress=common_pb2.Progress(step=0, total_steps=per_style * len(plan.styles)),
                created_at=now,
                updated_at=now,
                team_look_id=request.team_look_id,
                background=plan.choices.background,
                outfit=plan.choices.outfit,
                lighting=plan.choices.lighting,
                instant=request.instant,
                photo_id=request.photo_id,
                priority=priority,
            )
            await self.records.create(render)
            job = jobs_pb2.RenderJob(
                render_id=render.id,
                tenant=render.tenant,
                subject_id=render.subject_id,
                training_id=render.training_id,
                styles=render.styles,
                images_per_style=per_style,
                seed=plan.seed,
                background=plan.choices.background,
                outfit=plan.choices.outfit,
                lighting=plan.choices.lighting,
                instant=render.instant,
                photo_id=render.photo_id,
            )
            # The tenant's queue of this priority exists before its first job (`likeness.tenant_queues`).
            token = queue_token(render.priority)
            await self.scheduler.ensure(render.tenant, token)
            nats_subject = job_nats_subject("render", render.tenant, render.subject_id, token)

            async def publish(under: Fence) -> None:
                await self.platform.bus.publish(nats_subject, job, msg_id=render.id, expect=under.headers())

            withdraw = functools.partial(forget_job, self.records, render.tenant, render.id)
            # Published only if the tenant's queue is still what the quota check saw (`Fence`).
            await self.quotas.publish_admitted(context, render.tenant, fence, publish, judge, withdraw)
        return renderer_pb2.SubmitRenderResponse(render=render)

    async def _require(
        self, tenant: str, render_id: str, context: Context, *, deleting: bool = False
    ) -> renderer_pb2.Render:
        """The render, if it is of the token's tenant, its record is the one its key names, and the token may
        see its subject (else NOT_FOUND, as for a render that does not exist). A render whose per-item
        deletion has begun is gone for every caller but the deletion itself (`deleting`)."""
        await require_tenant(context, tenant)
        render = await verified_render(self.records, tenant, render_id)
        if render is None or not may_touch(tenant, render.subject_id) or (is_marked(render) and not deleting):
            await abort(context, grpc.StatusCode.NOT_FOUND, "render_not_found", "No such render.")
        return render

    async def GetRender(
        self, request: renderer_pb2.GetRenderRequest, context: Context
    ) -> renderer_pb2.GetRenderResponse:
        return renderer_pb2.GetRenderResponse(
            render=await self._require(request.tenant, request.render_id, context)
        )

    async def FetchImage(
        self, request: renderer_pb2.FetchImageRequest, context: Context
    ) -> AsyncIterator[renderer_pb2.FetchImageResponse]:
        render = await self._require(request.tenant, request.render_id, context)
        image = next((i for i in render.images if i.id == request.image_id), None)
        if image is None or not ids.is_valid_id(request.image_id, "img"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "image_not_found", "No such image.")
        # Named from what the request says and the token allowed, the record adding only its subject (checked
        # by `_require` to be one the token may see): the record cannot point at another tenant's object.
        key = render_image_key(request.tenant, render.subject_id, request.render_id, request.image_id)
        ref = ObjectRef(request.tenant, render.subject_id, key, "render")
        try:
            data = await asyncio.to_thread(self.platform.sealed.get, ref)
        except (KeyDestroyed, ObjectMissing):
            await abort(context, grpc.StatusCode.NOT_FOUND, "image_not_found", "No such image.")
        except (VaultUnavailable, StoreError):
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable; retry later.",
            )
        # One record per image fetched (decrypted for the caller); status reads write none.
        await self.audit.record(
            request.tenant,
            "image.downloaded",
            render.subject_id,
            "ok",
            request.image_id,
            principal=self.audit.principal(current_principal()),
            purpose="export" if request.for_export else "access",
        )
        info = renderer_pb2.RenderedImage()
        info.CopyFrom(image)
        info.size_bytes = len(data)
        yield renderer_pb2.FetchImageResponse(info=info)
        for start in range(0, len(data), CHUNK):
            yield renderer_pb2.FetchImageResponse(chunk=data[start : start + CHUNK])

    async def RejectImage(
        self, request: renderer_pb2.RejectImageRequest, context: Context
    ) -> renderer_pb2.RejectImageResponse:
        """The person rejects one image (`renderer.rejection`): checks it is there; with `purged` (retention
        has removed every version of it), audits the rejection and the image leaves the render."""
        render = await self._require(request.tenant, request.render_id, context)
        try:
            image_to_reject(render, request.image_id)
            if not request.purged:
                return renderer_pb2.RejectImageResponse(render=render)
            # Recorded before the record settles: a retry inside the dedup window is one record, and a
            # full trail refuses the confirmation before anything changes.
            await audited(
                context,
                self.audit.record(
                    request.tenant,
                    "image.rejected",
                    render.subject_id,
                    "ok",
                    request.image_id,
                    principal=self.audit.principal(current_principal()),
                    purpose="review",
                    notice=NOT_A_CRYPTO_ERASE,
                    once_key=deletion_once_key(request.image_id),
                ),
            )
            render = await settle_rejection(self.records, render, request.image_id)
        except ImageNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "image_not_found", "No such image.")
        return renderer_pb2.RejectImageResponse(render=render)

    async def GetRenderUsage(
        self, request: renderer_pb2.GetRenderUsageRequest, context: Context
    ) -> renderer_pb2.GetRenderUsageResponse:
        await require_tenant(context, request.tenant)
        if not ids.is_valid_tenant(request.tenant):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "No such tenant.")
        return renderer_pb2.GetRenderUsageResponse(usage=await self.quotas.report(request.tenant))

    async def DeleteRender(
        self, request: renderer_pb2.DeleteRenderRequest, context: Context
    ) -> renderer_pb2.DeleteRenderResponse:
        """Per-item deletion of a render and its images (`likeness.item_deletion`): marks the record (a
        render still queued or running is refused: cancel it first); with `purged`, audits and forgets it."""
        render = await self._require(request.tenant, request.render_id, context, deleting=True)
        try:
            if not request.purged:
                marked = await mark_job(self.records, request.tenant, request.render_id)
                return renderer_pb2.DeleteRenderResponse(render=marked)
            render = await marked_job(self.records, request.tenant, request.render_id)
        except ItemNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "render_not_found", "No such render.")
        except JobBusy:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "render_running",
                "The render is still queued or running: cancel it, then delete it.",
            )
        except NotMarked:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "deletion_not_started",
                "Delete the render first.",
            )
        await audited(
            context,
            self.audit.record(
                render.tenant,
                "render.deleted",
                render.subject_id,
                "ok",
                render.id,
                principal=self.audit.principal(current_principal()),
                purpose="deletion",
                notice=NOT_A_CRYPTO_ERASE,
                once_key=deletion_once_key(render.id),
            ),
        )
        await forget_job(self.records, request.tenant, request.render_id)
        return renderer_pb2.DeleteRenderResponse(render=render)

    async def ListStyles(
        self, request: renderer_pb2.ListStylesRequest, context: Context
    ) -> renderer_pb2.ListStylesResponse:
        return renderer_pb2.ListStylesResponse(
            styles=[
                renderer_pb2.Style(
                    id=s.id,
                    name=s.name,
                    description=s.description,
                    background=s.background,
                    attire=s.attire,
                    lighting=s.lighting,
                    framing=s.framing,
                )
                for s in self.styles.values()
            ],
            backgrounds=[
                renderer_pb2.Background(id=b.id, name=b.name, description=b.prompt, preview=b.preview)
                for b in self.catalog.backgrounds
            ],
            outfits=[_option_message(option) for option in self.catalog.outfits],
            lighting_setups=[_option_message(option) for option in self.catalog.lighting_setups],
        )

    async def ListRenders(
        self, request: renderer_pb2.ListRendersRequest, context: Context
    ) -> renderer_pb2.ListRendersResponse:
        await require_subject(context, request.tenant, request.subject_id)
        try:
            page = await subject_page(
                self.records, request.tenant, request.subject_id, request.page_size, request.page_token, "ren"
            )
            return renderer_pb2.ListRendersResponse(
                renders=page.records, next_page_token=page.next_page_token
            )
        except InvalidPage as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))

    # ------------------------------------------------------------------------------------------ team looks

    async def _team_looks(self, context: Context) -> TeamLooks:
        if self.looks is None:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "team_looks_unavailable", "No looks.")
        return self.looks

    async def PutTeamLook(
        self, request: renderer_pb2.PutTeamLookRequest, context: Context
    ) -> renderer_pb2.PutTeamLookResponse:
        await require_tenant(context, request.tenant)
        looks = await self._team_looks(context)
        if not ids.is_valid_tenant(request.tenant):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "The tenant id is not valid."
            )
        policy = _SEED_POLICIES.get(request.seed_policy, "")
        seed = request.seed if request.HasField("seed") else None
        try:
            look = await looks.put(
                request.tenant,
                request.look_id,
                request.name,
                request.style,
                request.background,
                policy,
                seed,
                outfit=request.outfit,
                lighting=request.lighting,
            )
        except TeamLookError as refused:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, refused.code, str(refused))
        return renderer_pb2.PutTeamLookResponse(look=_look_message(look))

    async def GetTeamLook(
        self, request: renderer_pb2.GetTeamLookRequest, context: Context
    ) -> renderer_pb2.GetTeamLookResponse:
        await require_tenant(context, request.tenant)
        look = await (await self._team_looks(context)).get(request.tenant, request.look_id)
        if look is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "team_look_not_found", "No such team look.")
        return renderer_pb2.GetTeamLookResponse(look=_look_message(look))

    async def ListTeamLooks(
        self, request: renderer_pb2.ListTeamLooksRequest, context: Context
    ) -> renderer_pb2.ListTeamLooksResponse:
        await require_tenant(context, request.tenant)
        looks = await (await self._team_looks(context)).list_looks(request.tenant)
        return renderer_pb2.ListTeamLooksResponse(looks=[_look_message(look) for look in looks])

    async def DeleteTeamLook(
        self, request: renderer_pb2.DeleteTeamLookRequest, context: Context
    ) -> renderer_pb2.DeleteTeamLookResponse:
        await require_tenant(context, request.tenant)
        if not await (await self._team_looks(context)).delete(request.tenant, request.look_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "team_look_not_found", "No such team look.")
        return renderer_pb2.DeleteTeamLookResponse()


_SEED_POLICIES = {
    renderer_pb2.SEED_POLICY_FIXED: "fixed",
    renderer_pb2.SEED_POLICY_PER_RENDER: "per_render",
}
_SEED_POLICY_NUMBERS = {name: number for number, name in _SEED_POLICIES.items()}


def _look_message(look: TeamLook) -> renderer_pb2.TeamLook:
    return renderer_pb2.TeamLook(
        tenant=look.tenant,
        id=look.id,
        name=look.name,
        style=look.style,
        background=look.background,
        outfit=look.outfit,
        lighting=look.lighting,
        seed_policy=_SEED_POLICY_NUMBERS[look.seed_policy],
        seed=look.seed,
        created_at=to_timestamp(look.created_at),
        updated_at=to_timestamp(look.updated_at),
    )


def _option_message(option: CatalogOption) -> renderer_pb2.CatalogOption:
    return renderer_pb2.CatalogOption(
        id=option.id, name=option.name, description=option.prompt, preview=option.preview
    )
