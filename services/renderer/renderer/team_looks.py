"""A tenant's team looks: one catalog style, one catalog background, optionally a catalog outfit and
lighting set-up, and a seed policy, pinned so that every member of a team gets a consistent set of headshots.

What a look fixes, a render inside it cannot change (the team's pictures would no longer match): a request
naming another background, outfit or lighting is a `team_look_conflict`, naming the same one is accepted.
What the look leaves open (an outfit or lighting it does not fix) each member may choose.

Built only from catalog ids (no free-form text reaches a prompt). Stored in the renderer-owned KV bucket
`team_looks`, keyed `<tenant>.<look_id>`, as JSON. A look names no person, so erasing a subject leaves the
tenant's looks alone.

Seed policies: `fixed` renders every member with the look's own seed (same starting noise, hence the same
composition and light across the team); `per_render` takes the request's seed, or a random one.
"""

from __future__ import annotations

import datetime
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import nats.js.errors
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from likeness.bus import Bus, kv_keys
from renderer.catalog import NO_CHOICES, CatalogKind, ChoiceIds, UnknownChoice, load_catalog
from renderer.styles import Background, Style

TEAM_LOOKS_BUCKET = "team_looks"
#: Tenant-chosen ids such as "sales-emea": lower-case letters, digits and inner dashes (a NATS KV token).
LOOK_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
SEED_MAX = 2**31 - 1

SeedPolicy = Literal["fixed", "per_render"]


class TeamLookError(ValueError):
    """A look or a render request that cannot be accepted; code is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TeamLook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str
    id: str = Field(pattern=LOOK_ID.pattern)
    name: str = Field(min_length=1, max_length=60)
    style: str
    background: str
    seed_policy: SeedPolicy
    seed: int = Field(ge=0, le=SEED_MAX)
    created_at: datetime.datetime
    updated_at: datetime.datetime
    #: Catalog outfit and lighting fixed for every member ("" = each render's choice; older looks lack them).
    outfit: str = ""
    lighting: str = ""

    def fixed(self) -> ChoiceIds:
        return ChoiceIds(self.background, self.outfit, self.lighting)


@dataclass(frozen=True)
class RenderPlan:
    """What a render request resolves to: styles, the catalog choices ("" = each style's own), seed."""

    styles: list[str]
    choices: ChoiceIds
    seed: int


class TeamLooks:
    def __init__(self, kv: KeyValue, styles: dict[str, Style], backgrounds: dict[str, Background]) -> None:
        self.kv = kv
        self.styles = styles
        self.backgrounds = backgrounds

    @classmethod
    async def open(cls, bus: Bus, styles: dict[str, Style], backgrounds: dict[str, Background]) -> TeamLooks:
        return cls(await bus.kv(TEAM_LOOKS_BUCKET), styles, backgrounds)

    @staticmethod
    def key(tenant: str, look_id: str) -> str:
        return f"{tenant}.{look_id}"

    async def put(
        self,
        tenant: str,
        look_id: str,
        name: str,
        style: str,
        background: str,
        seed_policy: str,
        seed: int | None = None,
        outfit: str = "",
        lighting: str = "",
    ) -> TeamLook:
        """Creates or replaces a look (keeping its created_at); a fixed look without a seed gets one."""
        if not LOOK_ID.fullmatch(look_id):
            raise TeamLookError(
                "invalid_team_look_id", "A look id is 1-40 lower-case letters, digits, dashes."
            )
        if style not in self.styles:
            raise TeamLookError("unknown_style", "Choose a style from the catalog.")
        if background not in self.backgrounds:
            raise TeamLookError("unknown_background", "Choose a background from the catalog.")
        try:
            load_catalog().choose(outfit=outfit, lighting=lighting)
        except UnknownChoice as unknown:
            raise TeamLookError("unknown_catalog_id", str(unknown)) from None
        if seed_policy not in ("fixed", "per_render"):
            raise TeamLookError("invalid_seed_policy", "The seed policy is 'fixed' or 'per_render'.")
        if seed is not None and not 0 <= seed <= SEED_MAX:
            raise TeamLookError("invalid_seed", f"A seed is 0..{SEED_MAX}.")
        now = datetime.datetime.now(datetime.UTC)
        existing = await self.get(tenant, look_id)
        if seed is None:
            seed = existing.seed if existing is not None else secrets.randbelow(SEED_MAX)
        try:
            look = TeamLook(
                tenant=tenant,
                id=look_id,
                name=name.strip(),
                style=style,
                background=background,
                seed_policy=seed_policy,  # checked above
                seed=seed,
                created_at=existing.created_at if existing is not None else now,
                updated_at=now,
                outfit=outfit,
                lighting=lighting,
            )
        except ValidationError:
            raise TeamLookError("invalid_team_look", "A look needs a name of 1-60 characters.") from None
        await self.kv.put(self.key(tenant, look_id), look.model_dump_json().encode("utf-8"))
        return look

    async def get(self, tenant: str, look_id: str) -> TeamLook | None:
        if not LOOK_ID.fullmatch(look_id):
            return None
        try:
            entry = await self.kv.get(self.key(tenant, look_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return TeamLook.model_validate_json(entry.value)

    async def list_looks(self, tenant: str) -> list[TeamLook]:
        looks = []
        for key in sorted(await kv_keys(self.kv, f"{tenant}.")):
            look = await self.get(tenant, key.split(".", 1)[1])
            if look is not None:
                looks.append(look)
        return looks

    async def delete(self, tenant: str, look_id: str) -> bool:
        if await self.get(tenant, look_id) is None:
            return False
        await self.kv.purge(self.key(tenant, look_id))
        return True

    async def plan(
        self,
        tenant: str,
        look_id: str,
        styles: list[str],
        requested_seed: int | None,
        requested: ChoiceIds = NO_CHOICES,
    ) -> RenderPlan:
        """The styles, catalog choices and seed of a render request that names a team look."""
        look = await self.get(tenant, look_id)
        if look is None:
            raise TeamLookError("team_look_not_found", "No such team look.")
        return plan_for(look, styles, requested_seed, requested)


def merged_choices(fixed: ChoiceIds, requested: ChoiceIds) -> ChoiceIds:
    """The look's fixed choices, the request's where the look leaves one open; a request that changes a
    fixed one is refused."""
    merged: dict[CatalogKind, str] = {}
    for (kind, pinned), (_, wanted) in zip(fixed.items(), requested.items(), strict=True):
        if pinned and wanted and wanted != pinned:
            raise TeamLookError("team_look_conflict", f"This team look fixes the {kind}; leave it out.")
        merged[kind] = pinned or wanted
    return ChoiceIds(merged["background"], merged["outfit"], merged["lighting"])


def plan_for(
    look: TeamLook, styles: list[str], requested_seed: int | None, requested: ChoiceIds = NO_CHOICES
) -> RenderPlan:
    if styles and list(styles) != [look.style]:
        raise TeamLookError("team_look_conflict", "A render with a team look takes the look's style only.")
    if look.seed_policy == "fixed":
        if requested_seed is not None and requested_seed != look.seed:
            raise TeamLookError("team_look_conflict", "This team look pins the seed; leave it out.")
        seed = look.seed
    else:
        seed = requested_seed if requested_seed is not None else secrets.randbelow(SEED_MAX)
    choices = merged_choices(look.fixed(), requested)
    return RenderPlan(styles=[look.style], choices=choices, seed=seed)
