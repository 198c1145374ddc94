"""The tiny models of both families: `likeness model tiny --family`, the dev stack's cache of them, and
`LIKENESS_BASE_FAMILY` choosing which one trainer and renderer run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from likeness_cli.main import main
from likeness_dev.stack import StackSettings, _resolve_base_model
from likeness_dev.tiny_model_cache import ensure_tiny_model
from likeness_ml.tiny_manifest import is_tiny_model


def _pipeline_class(model_dir: Path) -> str:
    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    return str(index["_class_name"])


def test_model_tiny_writes_the_family_asked_for(tmp_path: Path) -> None:
    assert main(["model", "tiny", "--out", str(tmp_path / "sdxl"), "--family", "sdxl"]) == 0
    assert main(["model", "tiny", "--out", str(tmp_path / "sd15")]) == 0
    assert _pipeline_class(tmp_path / "sdxl") == "StableDiffusionXLPipeline"
    assert (tmp_path / "sdxl" / "text_encoder_2" / "config.json").is_file()
    assert _pipeline_class(tmp_path / "sd15") == "StableDiffusionPipeline"
    assert is_tiny_model(tmp_path / "sdxl")
    assert is_tiny_model(tmp_path / "sd15")


def test_model_tiny_refuses_an_unknown_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["model", "tiny", "--out", str(tmp_path / "x"), "--family", "flux"])
    assert "invalid choice: 'flux'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_each_family_is_cached_in_its_own_folder_and_written_once(tmp_path: Path) -> None:
    sdxl = ensure_tiny_model(tmp_path, "sdxl")
    assert sdxl == tmp_path / "tiny-sdxl"
    written = (sdxl / "unet" / "config.json").stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path, "sdxl") == sdxl
    assert (sdxl / "unet" / "config.json").stat().st_mtime_ns == written
    assert ensure_tiny_model(tmp_path) == tmp_path / "tiny"
    assert _pipeline_class(tmp_path / "tiny") == "StableDiffusionPipeline"
    assert not list(tmp_path.glob(".*partial*")), "no scratch folder is left behind"


def test_base_family_setting_picks_the_tiny_model_of_that_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIKENESS_BASE_MODEL", raising=False)
    monkeypatch.setenv("LIKENESS_BASE_FAMILY", "sdxl")
    settings = StackSettings()
    assert settings.base_family == "sdxl"
    chosen = _resolve_base_model(None, settings, tmp_path, say=lambda line: None)
    assert Path(chosen) == tmp_path / "models" / "tiny-sdxl"
    assert _pipeline_class(Path(chosen)) == "StableDiffusionXLPipeline"
    monkeypatch.setenv("LIKENESS_BASE_FAMILY", "flux")
    with pytest.raises(ValidationError):
        StackSettings()
