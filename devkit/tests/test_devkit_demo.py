"""The demo's contact sheet says what its images are: noise from the tiny model's random weights, and how
to run real weights instead; with real weights it names the model and drops the warning."""

from __future__ import annotations

from pathlib import Path

from likeness_dev.demo import BASE_MODEL_VARIABLE, base_model_in_use, write_output
from likeness_dev.journey import DownloadedImage, JourneyResult
from likeness_ml.tiny_manifest import write_tiny_manifest


def _result() -> JourneyResult:
    image = DownloadedImage("img_1", "linkedin", 7, "image/png", b"\x89PNG not really")
    return JourneyResult(
        subject_id="sub_1",
        photos=[{"status": "accepted"}],
        training={"progress": 1.0},
        render={},
        images=[image],
        erasure={"status": "completed"},
        after_erasure={"GET /v1/subjects/sub_1": 410},
    )


def test_the_tiny_model_is_called_noise_and_real_weights_are_explained(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "weights.safetensors").write_bytes(b"random weights")
    write_tiny_manifest(tiny, seed=0)
    for env in ({}, {BASE_MODEL_VARIABLE: str(tiny)}):
        model = base_model_in_use(env)
        assert model.tiny
        write_output(tmp_path / "out", _result(), model)
        page = (tmp_path / "out" / "index.html").read_text()
        assert "noise, by design" in page
        assert "random weights" in page
        assert BASE_MODEL_VARIABLE in page


def test_real_weights_are_named_without_the_noise_warning(tmp_path: Path) -> None:
    real = tmp_path / "sd15"
    real.mkdir()
    model = base_model_in_use({BASE_MODEL_VARIABLE: str(real)})
    assert not model.tiny
    write_output(tmp_path / "out", _result(), model)
    page = (tmp_path / "out" / "index.html").read_text()
    assert str(real) in page
    assert "noise" not in page
