"""What the output gates found reaches the API: each image's scores, the render's account of drops."""

from __future__ import annotations

from gateway import convert
from likeness.v1 import renderer_pb2


def _render(gate: renderer_pb2.QualityGate.ValueType) -> renderer_pb2.Render:
    image = renderer_pb2.RenderedImage(
        id="img_01jbz3t1d3f5h7k9n1q3t5w7za",
        style="linkedin",
        seed=3,
        quality=renderer_pb2.ImageQuality(faces=1, identity_distance=0.31234, rerolls=1, passed=True),
    )
    image.quality.safety_scores["nsfw"] = 0.0123456
    quality = renderer_pb2.RenderQuality(
        gate=gate,
        safety_gate=renderer_pb2.QUALITY_GATE_ENFORCE,
        images_requested=3,
        rerolls=4,
        failures=2,
        templates=5,
        rejected=1,
    )
    quality.drop_reasons.update({"unsafe:nsfw": 1, "identity": 1})
    return renderer_pb2.Render(
        id="ren_01jbz3t1d3f5h7k9n1q3t5w7za",
        subject_id="sub_01jbz3t1d3f5h7k9n1q3t5w7za",
        training_id="trn_01jbz3t1d3f5h7k9n1q3t5w7za",
        images=[image],
        quality=quality,
    )


def test_every_image_carries_its_scores_and_the_render_its_drops() -> None:
    render = convert.render(_render(renderer_pb2.QUALITY_GATE_ENFORCE))
    assert render.quality is not None
    assert render.quality.model_dump() == {
        "identity_gate": "enforce",
        "safety_gate": "enforce",
        "images_requested": 3,
        "rerolls": 4,
        "failures": 2,
        "templates": 5,
        "dropped": {"unsafe:nsfw": 1, "identity": 1},
        "safety_flags": {},
        "rejected": 1,
        "note": None,
    }
    image = render.images[0].quality
    assert image is not None
    assert image.faces == 1
    assert image.identity_distance == 0.3123
    assert image.safety_scores == {"nsfw": 0.0123}
    assert (image.rerolls, image.passed, image.safety_flags) == (1, True, [])


def test_a_face_count_is_shown_only_when_the_identity_gate_looked() -> None:
    render = convert.render(_render(renderer_pb2.QUALITY_GATE_OFF))
    image = render.images[0].quality
    assert image is not None
    assert image.faces is None
    assert render.quality is not None
    assert render.quality.identity_gate == "off"
    bare = convert.render(renderer_pb2.Render(id="ren_01jbz3t1d3f5h7k9n1q3t5w7za"))
    assert bare.quality is None
