"""The curated style catalog (styles.yaml, shipped as package data), validated on load: the styles, and
the backgrounds a tenant's team look may put behind any of them."""

from __future__ import annotations

import string
from functools import cache
from importlib import resources
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

SchedulerName = Literal["dpmpp_2m", "dpmpp_2m_karras", "euler_a", "euler", "ddim", "unipc"]

T = TypeVar("T", "Style", "Background")

# Fields a prompt template may reference; {subject} is mandatory (else the LoRA's person never appears).
_TEMPLATE_FIELDS = frozenset({"subject", "attire", "background", "lighting", "framing"})


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

    def with_background(self, background: Background) -> Style:
        """This style in front of another catalog background (a team look's choice)."""
        return self.model_copy(update={"background": background.description})


class Background(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    name: str = Field(min_length=1, max_length=60)
    #: The words that go into the prompt's {background}.
    description: str = Field(min_length=1, max_length=120)


class _Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    styles: tuple[Style, ...] = Field(min_length=1)
    backgrounds: tuple[Background, ...] = Field(min_length=1)


def template_fields(template: str) -> set[str]:
    """Names of the {fields} in a str.format template (positional/empty fields count as "")."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_styles() -> dict[str, Style]:
    """Style id -> Style, in catalog order."""
    return dict(_catalog()[0])


def load_backgrounds() -> dict[str, Background]:
    """Background id -> Background, in catalog order."""
    return dict(_catalog()[1])


def get_style(style_id: str) -> Style:
    try:
        return _catalog()[0][style_id]
    except KeyError:
        raise KeyError(f"unknown style {style_id!r}") from None


@cache
def _catalog() -> tuple[dict[str, Style], dict[str, Background]]:
    text = resources.files("renderer").joinpath("styles.yaml").read_text(encoding="utf-8")
    catalog = _Catalog.model_validate(yaml.safe_load(text))
    return _by_id(catalog.styles, "style"), _by_id(catalog.backgrounds, "background")


def _by_id(items: tuple[T, ...], kind: str) -> dict[str, T]:
    found: dict[str, T] = {}
    for item in items:
        if item.id in found:
            raise ValueError(f"duplicate {kind} id {item.id!r}")
        found[item.id] = item
    return found
