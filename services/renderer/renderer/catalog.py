"""The curated backgrounds, outfits and lighting set-ups a render may choose (catalog.yaml, package data),
validated on load: the choices people expect from a headshot service, still without free text.

A choice is a catalog id; its `prompt` fragment replaces a style's own {background}, {attire} or {lighting}
(see `Style.with_choices`), so the composed prompt keeps the style's fixed order on every base family. The
fragments are checked to be plain words naming no trait of a person: the person comes from their own photos
and LoRA, never from a fragment, and nothing a tenant or person types reaches a prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CatalogKind = Literal["background", "outfit", "lighting"]
CATALOG_ID = r"^[a-z][a-z0-9_]{0,39}$"
#: The least of each kind the catalog must offer (what people expect from a paid headshot service).
MINIMUM_CHOICES: dict[CatalogKind, int] = {"background": 20, "outfit": 10, "lighting": 5}

# Plain lower-case words with commas or hyphens: no digits (no ids, numbers or dates), braces (no template
# fields) or other symbols.
_FRAGMENT = re.compile(r"^[a-z]+(?:[ ,-]+[a-z]+)*$")
# Words that would describe the person rather than the picture: who they are is theirs, not the catalog's.
_PERSONAL_WORDS = frozenset(
    {
        *("man", "men", "woman", "women", "boy", "girl", "male", "female", "he", "she", "him", "her", "his"),
        *("young", "old", "elderly", "aged", "age", "teen", "child", "baby", "skin", "face", "hair", "eyes"),
        *("nose", "lips", "body", "weight", "thin", "fat", "slim", "tall", "short", "ethnic", "race"),
        *("asian", "african", "european", "latino", "caucasian", "nude", "naked", "sexy", "person", "people"),
        "name",
    }
)


class CatalogOption(BaseModel):
    """One background, outfit or lighting set-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=CATALOG_ID)
    name: str = Field(min_length=1, max_length=60)
    #: The words that go into the prompt (replacing the style's own).
    prompt: str = Field(min_length=1, max_length=80)
    #: A sentence for the people choosing it.
    preview: str = Field(min_length=1, max_length=160)

    @field_validator("prompt")
    @classmethod
    def _plain_and_impersonal(cls, prompt: str) -> str:
        if not _FRAGMENT.fullmatch(prompt):
            raise ValueError(f"prompt {prompt!r} must be plain lower-case words")
        if personal := sorted(set(re.split(r"[ ,-]+", prompt)) & _PERSONAL_WORDS):
            raise ValueError(f"prompt {prompt!r} describes a person ({', '.join(personal)})")
        return prompt


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backgrounds: tuple[CatalogOption, ...]
    outfits: tuple[CatalogOption, ...]
    lighting_setups: tuple[CatalogOption, ...]

    @model_validator(mode="after")
    def _enough_and_unique(self) -> Catalog:
        for kind in MINIMUM_CHOICES:
            options = self.options(kind)
            if len(options) < MINIMUM_CHOICES[kind]:
                raise ValueError(f"the catalog needs at least {MINIMUM_CHOICES[kind]} {kind} choices")
            ids = [option.id for option in options]
            if duplicate := sorted({i for i in ids if ids.count(i) > 1}):
                raise ValueError(f"duplicate {kind} ids {duplicate}")
        return self

    def options(self, kind: CatalogKind) -> tuple[CatalogOption, ...]:
        return {"background": self.backgrounds, "outfit": self.outfits, "lighting": self.lighting_setups}[
            kind
        ]

    def by_id(self, kind: CatalogKind) -> dict[str, CatalogOption]:
        return {option.id: option for option in self.options(kind)}

    def choose(self, background: str = "", outfit: str = "", lighting: str = "") -> Choices:
        """The options these ids name ("" = the style's own); UnknownChoice names the first unknown one."""
        chosen: dict[CatalogKind, CatalogOption | None] = {}
        for kind, option_id in ChoiceIds(background, outfit, lighting).items():
            if not option_id:
                chosen[kind] = None
                continue
            option = self.by_id(kind).get(option_id)
            if option is None:
                raise UnknownChoice(kind, option_id)
            chosen[kind] = option
        return Choices(chosen["background"], chosen["outfit"], chosen["lighting"])


@dataclass(frozen=True)
class ChoiceIds:
    """A render's catalog ids, as requested or recorded ("" = the style's own)."""

    background: str = ""
    outfit: str = ""
    lighting: str = ""

    def items(self) -> tuple[tuple[CatalogKind, str], ...]:
        return (("background", self.background), ("outfit", self.outfit), ("lighting", self.lighting))


#: A render that keeps every style's own background, outfit and lighting.
NO_CHOICES = ChoiceIds()


@dataclass(frozen=True)
class Choices:
    """What a render puts in place of every style's own background, outfit and lighting (None: keep)."""

    background: CatalogOption | None = None
    outfit: CatalogOption | None = None
    lighting: CatalogOption | None = None


class UnknownChoice(ValueError):
    """An id that is not in the catalog; the message names it (ids have a fixed, harmless shape once
    checked, and an unknown one is echoed only after that check)."""

    def __init__(self, kind: CatalogKind, option_id: str) -> None:
        shown = option_id if re.fullmatch(CATALOG_ID, option_id) else "(not a catalog id)"
        super().__init__(f"Unknown {kind} {shown!r}: choose one from GET /v1/styles.")
        self.kind = kind
        self.option_id = option_id


@cache
def load_catalog() -> Catalog:
    text = resources.files("renderer").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return Catalog.model_validate(yaml.safe_load(text))
