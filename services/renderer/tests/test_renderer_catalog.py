"""The curated backgrounds, outfits and lighting: the catalog's checks, the prompt they compose into (on both
families), CLIP's window, and what a team look fixes. Pure logic: no servers."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest
import yaml

from likeness_ml.subject import SUBJECT_PHRASE
from renderer.catalog import MINIMUM_CHOICES, Catalog, ChoiceIds, UnknownChoice, load_catalog
from renderer.prompt_budget import PROMPT_TOKENS, PromptTooLong, check_prompt_budget, estimated_tokens
from renderer.styles import get_style, load_styles
from renderer.team_looks import TeamLook, TeamLookError, plan_for


def _catalog_data() -> dict[str, Any]:
    return {
        kind: [dict(option) for option in options] for kind, options in load_catalog().model_dump().items()
    }


def test_the_catalog_offers_what_people_expect() -> None:
    catalog = load_catalog()
    assert len(catalog.backgrounds) >= 20
    assert len(catalog.outfits) >= 10
    assert len(catalog.lighting_setups) >= 5
    for kind in MINIMUM_CHOICES:
        for option in catalog.options(kind):
            assert option.preview
            assert option.name


@pytest.mark.parametrize("kind", ["backgrounds", "outfits", "lighting_setups"])
def test_a_duplicate_id_is_refused(kind: str) -> None:
    data = _catalog_data()
    data[kind].append(dict(data[kind][0]))
    with pytest.raises(pydantic.ValidationError, match="duplicate"):
        Catalog.model_validate(data)


def test_too_few_choices_are_refused() -> None:
    data = _catalog_data()
    data["outfits"] = data["outfits"][:9]
    with pytest.raises(pydantic.ValidationError, match="at least 10 outfit"):
        Catalog.model_validate(data)


@pytest.mark.parametrize("bad_id", ["Navy", "1navy", "navy-suit", "a" * 41, ""])
def test_an_id_of_another_shape_is_refused(bad_id: str) -> None:
    data = _catalog_data()
    data["outfits"][0]["id"] = bad_id
    with pytest.raises(pydantic.ValidationError):
        Catalog.model_validate(data)


@pytest.mark.parametrize(
    "prompt",
    [
        "navy suit for {subject}",  # a template field
        "suit with badge 1234",  # digits: ids, numbers, dates
        "suit, see https example",  # fine words...
        "young woman in a navy suit",  # ...but these describe a person
        "NAVY SUIT",
    ],
)
def test_a_fragment_that_is_not_plain_impersonal_words_is_refused(prompt: str) -> None:
    data = _catalog_data()
    data["outfits"][0]["prompt"] = prompt
    if prompt == "suit, see https example":
        Catalog.model_validate(data)  # plain words are fine: the check is not over-eager
        return
    with pytest.raises(pydantic.ValidationError):
        Catalog.model_validate(data)


def test_the_shipped_file_is_what_load_catalog_reads() -> None:
    from importlib import resources

    text = resources.files("renderer").joinpath("catalog.yaml").read_text(encoding="utf-8")
    assert Catalog.model_validate(yaml.safe_load(text)) == load_catalog()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_choices_replace_the_styles_own_in_its_fixed_order(family: str) -> None:
    catalog = load_catalog()
    style = get_style("corporate").for_family(family)
    choices = catalog.choose("brick_wall", "black_turtleneck", "golden_hour")
    prompt = style.with_choices(choices).prompt(SUBJECT_PHRASE)
    assert prompt == style.prompt_template.format(
        subject=SUBJECT_PHRASE,
        attire="black turtleneck sweater",
        background="softly blurred red brick wall",
        lighting="warm golden hour sunlight",
        framing=style.framing,
    )
    for own in (style.background, style.attire, style.lighting):
        assert own not in prompt
    # SDXL keeps its family tuning with the choices in place.
    assert style.with_choices(choices).guidance_scale == style.guidance_scale
    if family == "sdxl":
        assert style.guidance_scale != get_style("corporate").guidance_scale


def test_no_choice_keeps_the_styles_own_and_one_choice_changes_only_its_slot() -> None:
    style = get_style("linkedin")
    assert style.with_choices(load_catalog().choose()).prompt(SUBJECT_PHRASE) == style.prompt(SUBJECT_PHRASE)
    prompt = style.with_choices(load_catalog().choose(lighting="rembrandt")).prompt(SUBJECT_PHRASE)
    assert "rembrandt lighting with a large softbox" in prompt
    assert style.background in prompt
    assert style.attire in prompt
    assert style.lighting not in prompt


@pytest.mark.parametrize(
    ("ids", "named"),
    [
        (ChoiceIds(background="moon_base"), "Unknown background 'moon_base'"),
        (ChoiceIds(outfit="tuxedo"), "Unknown outfit 'tuxedo'"),
        (ChoiceIds(lighting="neon"), "Unknown lighting 'neon'"),
        (ChoiceIds(outfit="<script>"), "Unknown outfit '(not a catalog id)'"),
    ],
)
def test_an_unknown_id_is_named(ids: ChoiceIds, named: str) -> None:
    with pytest.raises(UnknownChoice, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_catalog().choose(ids.background, ids.outfit, ids.lighting)


def test_every_style_fits_clips_window_with_the_longest_choices() -> None:
    check_prompt_budget(load_styles(), load_catalog())


def test_a_style_that_overflows_with_the_longest_choices_is_refused() -> None:
    # Fragments are capped at 80 characters, so the overflow comes from a wordier style: 15 more tokens fit
    # with the style's own slots but not with the catalog's longest choices.
    styles = load_styles()
    wordy = styles["realtor"].model_copy(
        update={
            "prompt_template": styles["realtor"].prompt_template
            + ", one two three four five six seven eight nine ten alpha beta gamma delta"
        }
    )
    assert estimated_tokens(wordy.prompt(SUBJECT_PHRASE)) <= PROMPT_TOKENS
    with pytest.raises(PromptTooLong, match="realtor"):
        check_prompt_budget({**styles, "realtor": wordy}, load_catalog())


def test_the_exact_count_of_a_tokenizer_is_used_when_given() -> None:
    with pytest.raises(PromptTooLong):
        check_prompt_budget(load_styles(), load_catalog(), lambda text: len(text))  # characters: far over


def test_the_estimate_counts_words_symbols_and_long_words() -> None:
    assert estimated_tokens("soft light, f2") == 5  # soft, light, ",", f, 2
    assert estimated_tokens("photorealistic") == 2
    assert PROMPT_TOKENS == 75


def _look(**fixed: str) -> TeamLook:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    return TeamLook(
        tenant="t1",
        id="sales",
        name="Sales",
        style="corporate",
        background=fixed.pop("background", "navy_blue"),
        seed_policy="per_render",
        seed=1,
        created_at=now,
        updated_at=now,
        **fixed,
    )


def test_a_team_look_fixes_what_it_names_and_leaves_the_rest_open() -> None:
    look = _look(outfit="navy_suit")
    plan = plan_for(look, [], 5, ChoiceIds(outfit="navy_suit", lighting="rembrandt"))
    assert plan.choices == ChoiceIds("navy_blue", "navy_suit", "rembrandt")
    assert plan_for(look, [], 5).choices == ChoiceIds("navy_blue", "navy_suit", "")


@pytest.mark.parametrize(
    ("requested", "kind"),
    [(ChoiceIds(background="white"), "background"), (ChoiceIds(outfit="chef_jacket"), "outfit")],
)
def test_a_request_cannot_change_what_a_team_look_fixes(requested: ChoiceIds, kind: str) -> None:
    with pytest.raises(TeamLookError, match=f"fixes the {kind}") as refused:
        plan_for(_look(outfit="navy_suit"), [], 5, requested)
    assert refused.value.code == "team_look_conflict"


def test_an_older_look_without_outfit_or_lighting_still_reads() -> None:
    stored = _look().model_dump(mode="json")
    del stored["outfit"], stored["lighting"]
    assert TeamLook.model_validate(stored).fixed() == ChoiceIds("navy_blue", "", "")


class _Encoded:
    def __init__(self, ids: list[int]) -> None:
        self.input_ids = ids


class _WordTokenizer:
    """Stands in for a tokenizer object's interface only (the real CLIP vocabulary is not here)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __call__(self, text: str, add_special_tokens: bool) -> _Encoded:
        assert add_special_tokens is False  # the window's start and end tokens are budgeted apart
        return _Encoded([0] * len(text.split()))


def test_a_clip_sized_tokenizer_counts_exactly_and_a_small_one_falls_back_to_the_estimate() -> None:
    from types import SimpleNamespace

    from renderer.prompt_budget import CLIP_VOCABULARY, tokenizer_counter

    text = "photorealistic studio, light"
    exact = tokenizer_counter(SimpleNamespace(tokenizer=_WordTokenizer(CLIP_VOCABULARY)))
    assert exact(text) == 3
    assert tokenizer_counter(SimpleNamespace(tokenizer=_WordTokenizer(1000)))(text) == estimated_tokens(text)
    assert tokenizer_counter(object())(text) == estimated_tokens(text) == 5
