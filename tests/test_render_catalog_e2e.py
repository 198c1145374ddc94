"""Variety people expect, through the dev stack on both tiny families: a render chooses a catalog background,
outfit and lighting, and gets exactly those in its prompt and record; an unknown id is a 422 naming it; a
team look's fixed choice cannot be overridden by a render, its open ones can be chosen.

The prompt is never returned to callers; each image records the SHA-256 of the prompt the worker composed
(catalog text and the fixed subject phrase only: it names no one), which the test recomputes from the
catalog: the same style, family and choices give the same text, any other choice another fingerprint.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_ml.subject import SUBJECT_PHRASE
from renderer.catalog import ChoiceIds, load_catalog
from renderer.styles import get_style

pytestmark = pytest.mark.slow

TERMINAL = {"succeeded", "failed", "cancelled"}
STYLE = "corporate"
CHOSEN = ChoiceIds(background="brick_wall", outfit="black_turtleneck", lighting="golden_hour")


@dataclass
class Subject:
    client: GatewayClient
    subject_id: str
    training_id: str

    def render(self, expect: tuple[int, ...] = (202,), **fields: Any) -> Any:
        body = {"training_id": self.training_id, "images_per_style": 1, "seed": 7} | fields
        return self.client.call("POST", f"/v1/subjects/{self.subject_id}/renders", expect=expect, json=body)

    def finished(self, **fields: Any) -> dict[str, Any]:
        render_id = self.render(**fields).json()["id"]
        render = self.client.wait(
            f"/v1/renders/{render_id}", lambda r: r["status"] in TERMINAL, 300, print, "r"
        )
        assert render["status"] == "succeeded", render
        return render


def expected_fingerprint(family: str, choices: ChoiceIds) -> str:
    chosen = load_catalog().choose(choices.background, choices.outfit, choices.lighting)
    return get_style(STYLE).for_family(family).with_choices(chosen).prompt_sha256(SUBJECT_PHRASE)


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def family_stack(
    family: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_process: None,
) -> Iterator[DevStack]:
    if family == "sd15":
        # The session's stack (the tiny SD 1.5 model), shared with the other cross-service tests.
        yield request.getfixturevalue("stack")
        return
    started = DevStack.start(
        Path(tmp_path_factory.mktemp("catalog-sdxl")),
        base_family="sdxl",
        progress=lambda line: print(f"[sdxl stack] {line}", flush=True),
        extra_env={"LIKENESS_INFERENCE_STEPS": "2", "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2"},
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def subject(family_stack: DevStack) -> Iterator[Subject]:
    client = GatewayClient(family_stack.gateway_url, family_stack.mint_token())
    try:
        subject_id = client.json(
            "POST",
            "/v1/subjects",
            expect=(201,),
            json={
                "external_ref": "catalog-1",
                "consent": {"purpose": "headshots", "policy_version": "2026-01"},
            },
        )["id"]
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        client.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)
        training_id = client.json("POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={})[
            "id"
        ]
        training = client.wait(
            f"/v1/trainings/{training_id}", lambda r: r["status"] in TERMINAL, 600, print, "training"
        )
        assert training["status"] == "succeeded", training
        yield Subject(client, subject_id, training_id)
        client.call("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))
    finally:
        client.close()


def test_the_catalog_is_listed_with_previews(subject: Subject) -> None:
    catalog = subject.client.json("GET", "/v1/styles")
    assert len(catalog["backgrounds"]) >= 20
    assert len(catalog["outfits"]) >= 10
    assert len(catalog["lighting_setups"]) >= 5
    for kind in ("backgrounds", "outfits", "lighting_setups"):
        assert all(option["preview"] and option["description"] for option in catalog[kind]), kind
    assert {"brick_wall", "black_turtleneck", "golden_hour"} <= {
        option["id"] for kind in ("backgrounds", "outfits", "lighting_setups") for option in catalog[kind]
    }


def test_a_render_gets_exactly_its_choices_in_prompt_and_record(subject: Subject, family: str) -> None:
    chosen = subject.finished(
        styles=[STYLE], background=CHOSEN.background, outfit=CHOSEN.outfit, lighting=CHOSEN.lighting
    )
    assert (chosen["background"], chosen["outfit"], chosen["lighting"]) == (
        CHOSEN.background,
        CHOSEN.outfit,
        CHOSEN.lighting,
    )
    assert chosen["images"]
    fingerprints = {image["prompt_sha256"] for image in chosen["images"]}
    assert fingerprints == {expected_fingerprint(family, CHOSEN)}

    # Without choices: the style's own words, hence another prompt, and nothing recorded as chosen.
    plain = subject.finished(styles=[STYLE])
    assert (plain["background"], plain["outfit"], plain["lighting"]) == (None, None, None)
    assert {image["prompt_sha256"] for image in plain["images"]} == {
        expected_fingerprint(family, ChoiceIds())
    }
    assert fingerprints.isdisjoint(image["prompt_sha256"] for image in plain["images"])


@pytest.mark.parametrize(
    ("field", "value"), [("background", "moon_base"), ("outfit", "tuxedo"), ("lighting", "neon_disco")]
)
def test_an_unknown_id_is_a_422_naming_it(subject: Subject, field: str, value: str) -> None:
    refused = subject.render(expect=(422,), styles=[STYLE], **{field: value})
    error = refused.json()["error"]
    assert error["code"] == "unknown_catalog_id"
    assert f"{field} {value!r}" in error["message"]


def test_a_team_look_fixes_its_choices_and_leaves_the_rest_open(subject: Subject, family: str) -> None:
    client = subject.client
    client.json(
        "POST",
        f"/v1/subjects/{subject.subject_id}/consents",
        expect=(201,),
        json={"purpose": "team_look", "policy_version": "2026-01"},
    )
    look_id = f"catalog-{uuid.uuid4().hex[:8]}"
    look = {"name": "Catalog", "style": STYLE, "background": "navy_blue", "outfit": "navy_suit"}
    assert (
        client.json("PUT", f"/v1/team-looks/{look_id}", json=look | {"seed_policy": "per_render"})["outfit"]
        == "navy_suit"
    )
    try:
        conflict = subject.render(expect=(409,), team_look_id=look_id, outfit="chef_jacket")
        assert conflict.json()["error"]["code"] == "team_look_conflict"
        assert "outfit" in conflict.json()["error"]["message"]
        render = subject.finished(team_look_id=look_id, lighting="rembrandt")
        assert (render["background"], render["outfit"], render["lighting"]) == (
            "navy_blue",
            "navy_suit",
            "rembrandt",
        )
        expected = expected_fingerprint(family, ChoiceIds("navy_blue", "navy_suit", "rembrandt"))
        assert {image["prompt_sha256"] for image in render["images"]} == {expected}
    finally:
        client.call("DELETE", f"/v1/team-looks/{look_id}", expect=(204,))
