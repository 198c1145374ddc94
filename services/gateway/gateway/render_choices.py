"""A render request's catalog ids (styles, background, outfit, lighting) checked against the catalog the
renderer serves, so an unknown one is answered at the edge with its name; the renderer checks them again
(the edge is never trusted alone)."""

from __future__ import annotations

from gateway.deps import Backends
from gateway.errors import ApiError
from likeness.v1 import renderer_pb2


async def check_catalog_ids(
    backends: Backends, styles: list[str], background: str | None, outfit: str | None, lighting: str | None
) -> None:
    """Raises 400 `unknown_style` for unknown styles, 422 `unknown_catalog_id` naming an unknown choice."""
    if not (styles or background or outfit or lighting):
        return
    catalog = await backends.renderer.ListStyles(renderer_pb2.ListStylesRequest(), timeout=backends.timeout)
    unknown = sorted(set(styles) - {style.id for style in catalog.styles})
    if unknown:
        raise ApiError(
            400, "unknown_style", f"Unknown styles: {', '.join(unknown)[:200]} (see GET /v1/styles)."
        )
    offered = {
        "background": {option.id for option in catalog.backgrounds},
        "outfit": {option.id for option in catalog.outfits},
        "lighting": {option.id for option in catalog.lighting_setups},
    }
    for kind, chosen in (("background", background), ("outfit", outfit), ("lighting", lighting)):
        # Echoing the id is safe: the request schema admits only catalog-shaped ids.
        if chosen and chosen not in offered[kind]:
            raise ApiError(
                422, "unknown_catalog_id", f"Unknown {kind} {chosen!r}: choose one from GET /v1/styles."
            )
