"""The curated style catalog (styles.yaml, shipped as package data), validated on load: the styles and each
style's tuning per base family (the backgrounds, outfits and lighting any style may take are catalog.py's).

One prompt does not suit every base model: SDXL wants less classifier-free guidance and a shorter negative
prompt than SD 1.5 (a long SD 1.5-style negative list pushes SDXL towards flat, over-smoothed skin). The
catalog's `family_tuning` holds such overrides per family, a style's own `family_tuning` wins over it, and
`Style.for_family` applies them. Resolution is not tuned here: it is the base model's native one (SDXL
1024, SD 1.5 512), which is what each family renders best at."""

from __future__ import annotations

import hashlib
import string
from functools import cache
from importlib import resources
from typing import Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from renderer.catalog import CatalogOption, Choices, load_catalog

#: A catalog background (kept under this name for the team looks that pin one).
Background: TypeAlias = CatalogOption

SchedulerName = Literal["dpmpp_2m", "dpmpp_2m_karras", "euler_a", "euler", "ddim", "unipc"]

#: The production families a style may be tuned for (tiny models take their lookalike's: `shaped_like`).
TunedFamily = Literal["sd15", "sd2", "sdxl"]

# Fields a prompt template may reference; {subject} is mandatory (else the LoRA's person never appears).
_TEMPLATE_FIELDS = frozenset({"subject", "attire", "background", "lighting", "framing"})


class FamilyTuning(BaseModel):
    """What a style changes on one base family; a field left out keeps the style's own value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    negative_prompt: str | None = None
    scheduler: SchedulerName | None = None
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance_scale: float | None = Field(default=None, ge=1.0, le=20.0)

    def over(self, other: FamilyTuning) -> FamilyTuning:
        """These overrides on top of other's (a style's own on top of the catalog's)."""
        return other.model_copy(update=self.model_dump(exclude_none=True))


Tunings: TypeAlias = dict[TunedFamily, FamilyTuning]


class Style(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=1, max_length=300)
    prompt_template: str = Field(min_length=1)
    negative_prompt: str
    background: str = Field(min_length=1)
    attire: str = Field(min_length=1)
    lighting: str = Field(min_length=1)
    framing: str = Field(min_length=1)
    scheduler: SchedulerName
    steps: int = Field(ge=1, le=150)
    guidance_scale: float = Field(ge=1.0, le=20.0)
    family_tuning: Tunings = Field(default_factory=dict)

    @field_validator("prompt_template")
    @classmethod
    def _template_fields_are_known(cls, template: str) -> str:
        fields = template_fields(template)
        if "subject" not in fields:
            raise ValueError("prompt_template must contain {subject}")
        if unknown := fields - _TEMPLATE_FIELDS:
            raise ValueError(f"prompt_template uses unknown fields {sorted(unknown)}")
        return template

    def prompt(self, subject_phrase: str) -> str:
        """The positive prompt for the trained subject (e.g. "ohwx person") in this style."""
        return self.prompt_template.format(
            subject=subject_phrase,
            attire=self.attire,
            background=self.background,
            lighting=self.lighting,
            framing=self.framing,
        )

    def prompt_sha256(self, subject_phrase: str) -> str:
        """The fingerprint a rendered image records of its prompt (nothing personal is in the prompt)."""
        return hashlib.sha256(self.prompt(subject_phrase).encode("utf-8")).hexdigest()

    def for_family(self, family: str) -> Style:
        """This style as rendered on family (its tuning for it applied; unchanged for untuned families)."""
        # Looked up by equality: the keys are the TunedFamily literals, family any detected family's name.
        tuning = next((t for tuned, t in self.family_tuning.items() if tuned == family), None)
        if tuning is None:
            return self
        return self.model_copy(update=tuning.model_dump(exclude_none=True))

    def with_choices(self, choices: Choices) -> Style:
        """This style with the chosen catalog background, outfit and lighting in place of its own: each fills
        its fixed slot of the template, so the composed prompt keeps the style's order on every family."""
        update = {
            field: option.prompt
            for field, option in (
                ("background", choices.background),
                ("attire", choices.outfit),
                ("lighting", choices.lighting),
            )
            if option is not None
        }
        return self.model_copy(update=update)


class _Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    styles: tuple[Style, ...] = Field(min_length=1)
    #: Every style's tuning per family, unless the style tunes that field itself.
    family_tuning: Tunings = Field(default_factory=dict)

    def tuned_styles(self) -> tuple[Style, ...]:
        return tuple(
            style.model_copy(update={"family_tuning": _merged(self.family_tuning, style.family_tuning)})
            for style in self.styles
        )


def template_fields(template: str) -> set[str]:
    """Names of the {fields} in a str.format template (positional/empty fields count as "")."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_styles() -> dict[str, Style]:
    """Style id -> Style, in catalog order."""
    return dict(_catalog())


def load_backgrounds() -> dict[str, Background]:
    """Background id -> Background, in catalog order (catalog.yaml's, beside outfits and lighting)."""
    return load_catalog().by_id("background")


def get_style(style_id: str) -> Style:
    try:
        return _catalog()[style_id]
    except KeyError:
        raise KeyError(f"unknown style {style_id!r}") from None


@cache
def _catalog() -> dict[str, Style]:
    text = resources.files("renderer").joinpath("styles.yaml").read_text(encoding="utf-8")
    return _by_id(_Catalog.model_validate(yaml.safe_load(text)).tuned_styles())


def _merged(catalog_wide: Tunings, own: Tunings) -> Tunings:
    merged = dict(catalog_wide)
    for family, tuning in own.items():
        merged[family] = tuning.over(merged[family]) if family in merged else tuning
    return merged


def _by_id(styles: tuple[Style, ...]) -> dict[str, Style]:
    found: dict[str, Style] = {}
    for style in styles:
        if style.id in found:
            raise ValueError(f"duplicate style id {style.id!r}")
        found[style.id] = style
    return found
