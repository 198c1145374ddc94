"""RendererService (the `serve` role): queues renders, reports them, streams decrypted images out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import grpc

from likeness import ids
from likeness.bus import job_subject
from likeness.jobs import JobRecords
from likeness.keys import KeyDestroyed, VaultUnavailable
from likeness.objects import render_image_key
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.store import ObjectMissing, StoreError
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, renderer_pb2, renderer_pb2_grpc
from renderer.config import RendererSettings
from renderer.styles import Style

Context = grpc.aio.ServicerContext[object, object]
JS = common_pb2.JobStatus
CHUNK = 256 * 1024


class RendererServicer(renderer_pb2_grpc.RendererServiceServicer):
    def __init__(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        styles: dict[str, Style],
        settings: RendererSettings,
    ) -> None:
        self.platform = platform
        self.records = records
        self.styles = styles
        self.settings = settings

    async def SubmitRender(
        self, request: renderer_pb2.SubmitRenderRequest, context: Context
    ) -> renderer_pb2.SubmitRenderResponse:
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        if not ids.is_valid_id(request.training_id, "trn"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "No such training.")
        unknown = [s for s in request.styles if s not in self.styles]
        if not request.styles or unknown or len(request.styles) > self.settings.max_styles:
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
        seed = request.seed if request.HasField("seed") else secrets.randbelow(2**31)
        now = now_timestamp()
        render = renderer_pb2.Render(
            id=ids.new_id("ren"),
            tenant=request.tenant,
            subject_id=request.subject_id,
            training_id=request.training_id,
            status=JS.JOB_STATUS_QUEUED,
            styles=list(request.styles),
            images_per_style=per_style,
            seed=seed,
            progress=common_pb2.Progress(step=0, total_steps=per_style * len(request.styles)),
            created_at=now,
            updated_at=now,
        )
        await self.records.create(render)
        job = jobs_pb2.RenderJob(
            render_id=render.id,
            tenant=render.tenant,
            subject_id=render.subject_id,
            training_id=render.training_id,
            styles=render.styles,
            images_per_style=per_style,
            seed=seed,
        )
        await self.platform.bus.publish(
            job_subject("render", render.tenant, render.subject_id), job, msg_id=render.id
        )
        return renderer_pb2.SubmitRenderResponse(render=render)

    async def _require(self, tenant: str, render_id: str, context: Context) -> renderer_pb2.Render:
        found = None
        if ids.is_valid_tenant(tenant) and ids.is_valid_id(render_id, "ren"):
            found = await self.records.get(tenant, render_id)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "render_not_found", "No such render.")
        return found[0]

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
        if image is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "image_not_found", "No such image.")
        key = render_image_key(render.tenant, render.subject_id, render.id, image.id)
        ref = ObjectRef(render.tenant, render.subject_id, key, "render")
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
        info = renderer_pb2.RenderedImage()
        info.CopyFrom(image)
        info.size_bytes = len(data)
        yield renderer_pb2.FetchImageResponse(info=info)
        for start in range(0, len(data), CHUNK):
            yield renderer_pb2.FetchImageResponse(chunk=data[start : start + CHUNK])

    async def ListStyles(
        self, request: renderer_pb2.ListStylesRequest, context: Context
    ) -> renderer_pb2.ListStylesResponse:
        return renderer_pb2.ListStylesResponse(
            styles=[
                renderer_pb2.Style(id=s.id, name=s.name, description=s.description)
                for s in self.styles.values()
            ]
        )
