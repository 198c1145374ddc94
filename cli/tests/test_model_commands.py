"""`likeness model manifest` pins a directory with its provenance; `likeness model import --help` names
exactly the config files the import reads; both report a refusal in one line with exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from likeness_cli import model_commands
from likeness_cli.errors import EXIT_FAILED, EXIT_OK
from likeness_cli.main import main
from likeness_ml.model_manifest import MANIFEST_NAME, manifest_sha256, verify_manifest
from likeness_ml.pipeline_layout import FAMILIES, IMPORT_CONFIG_FILES


def _pipeline(root: Path) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 768}))
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x01" * 4096)
    return root


def test_manifest_pins_the_directory_with_its_family_source_and_licence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _pipeline(tmp_path / "sd15")
    argv = ["model", "manifest", str(model), "--source", "https://example.invalid/sd15", "--licence", "MIT"]
    assert main(argv) == EXIT_OK
    printed = capsys.readouterr()
    assert MANIFEST_NAME in printed.err
    assert printed.out == manifest_sha256(model) + "\n", "the digest to pin, alone on stdout"
    manifest = verify_manifest(model)
    assert (manifest.family, manifest.source, manifest.licence, manifest.tiny) == (
        "sd15",
        "https://example.invalid/sd15",
        "MIT",
        False,
    )
    assert set(manifest.files) == {"unet/config.json", "unet/diffusion_pytorch_model.safetensors"}


def test_refusals_are_one_line_with_status_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _pipeline(tmp_path / "sd15")
    assert main(["model", "manifest", str(model), "--family", "sdxl"]) == EXIT_FAILED
    assert "holds a sd15 pipeline, not sdxl" in capsys.readouterr().err
    assert not (model / MANIFEST_NAME).exists()
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"\x00" * 16)
    argv = ["model", "import", str(checkpoint), "--family", "sd15", "--config-dir", str(tmp_path / "configs")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == EXIT_FAILED
    assert "config directory not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", sorted(IMPORT_CONFIG_FILES))
def test_import_help_names_every_file_the_import_needs(
    family: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["model", "import", "--help"])
    help_text = capsys.readouterr().out
    section = help_text if family == "sdxl" else help_text.split("sdxl also:")[0]
    for name in IMPORT_CONFIG_FILES[family]:  # type: ignore[index]
        folder, _, file = name.rpartition("/")
        listed = name in section or (folder and f"{folder}/{{" in section and file in section)
        assert listed, f"--help does not name {name} for {family}"


def test_the_cli_offers_the_families_a_manifest_may_name() -> None:
    # Spelled out in the CLI so that its parser builds without likeness_ml installed.
    assert model_commands.FAMILIES == FAMILIES
