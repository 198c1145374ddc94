"""The curated style catalog (there are no free-form prompts)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import convert, schemas
from gateway.deps import Backends, RendersRead
from likeness.v1 import renderer_pb2

router = APIRouter(tags=["renders"])


@router.get(
    "/v1/styles",
    summary="List the styles a render can use, and the backgrounds, outfits and lighting it can choose",
    description="Scope `renders:read`.",
)
async def list_styles(principal: RendersRead, backends: Backends) -> schemas.StyleList:
    response = await backends.renderer.ListStyles(renderer_pb2.ListStylesRequest(), timeout=backends.timeout)
    return schemas.StyleList(
        styles=[convert.style(style) for style in response.styles],
        backgrounds=[
            schemas.Background(id=b.id, name=b.name, description=b.description, preview=b.preview)
            for b in response.backgrounds
        ],
        outfits=[convert.catalog_option(option) for option in response.outfits],
        lighting_setups=[convert.catalog_option(option) for option in response.lighting_setups],
    )
