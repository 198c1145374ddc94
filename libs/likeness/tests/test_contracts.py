"""The committed stubs are exactly what the .proto files generate, and the contracts pass buf lint."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "libs" / "likeness" / "likeness" / "v1"


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed (make venv installs it)"
    return found


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True)
    fresh = tmp_path / "likeness" / "v1"
    generated = sorted(p.name for p in fresh.iterdir())
    stubs = (p for p in COMMITTED.iterdir() if p.name != "__init__.py" and p.suffix in {".py", ".pyi"})
    committed = sorted(p.name for p in stubs)
    assert generated == committed, "stub files differ: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, COMMITTED, generated, shallow=False)
    assert not mismatch, f"stale stubs {mismatch}: run `make proto`"
    assert not errors, f"unreadable stubs {errors}"


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_its_contract() -> None:
    from likeness.v1 import ingest_pb2, renderer_pb2, retention_pb2, trainer_pb2

    names = {
        "RetentionService": retention_pb2,
        "IngestService": ingest_pb2,
        "TrainerService": trainer_pb2,
        "RendererService": renderer_pb2,
    }
    for service, module in names.items():
        assert service in module.DESCRIPTOR.services_by_name
