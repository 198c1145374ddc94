"""The typed client (sync and async) and the `likeness` API commands against the real stack: the whole
journey through the public gateway, errors as typed exceptions, progress streams, downloads, export,
cancellation, team looks, the retention policy, and erasure receipts verified against the published keys."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import pytest

from likeness import receipts
from likeness_cli.main import main
from likeness_client import (
    AsyncLikenessClient,
    Erasure,
    Forbidden,
    Gone,
    LikenessClient,
    NotFound,
    Retention,
    TeamLookSpec,
    Unauthenticated,
    UploadRejected,
)
from likeness_dev.samples import no_face_photo, sample_photos, write_sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

pytestmark = pytest.mark.slow

SCOPES = [*ALL_SCOPES, "subjects:export"]


@pytest.fixture(scope="module")
def client(stack: DevStack) -> Iterator[LikenessClient]:
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=SCOPES), timeout=120) as made:
        yield made


def completed_erasure(client: LikenessClient, erasure_id: str, timeout: float = 120.0) -> Erasure:
    deadline = time.monotonic() + timeout
    while (erasure := client.get_erasure(erasure_id)).status != "completed":
        assert time.monotonic() < deadline, f"the erasure never completed: {erasure}"
        time.sleep(0.2)
    return erasure


def test_the_journey_through_the_sync_client(client: LikenessClient, tmp_path: Path) -> None:
    subject = client.create_subject(purpose="headshots", policy_version="2026-01", external_ref="client-1")
    assert subject.status == "active"
    assert client.get_subject(subject.id) == subject

    with pytest.raises(UploadRejected) as rejected:
        client.upload_photos(subject.id, [("coffee.jpg", no_face_photo())])
    assert rejected.value.status == 422
    assert rejected.value.photos[0].reasons[0].code == "no_face"

    photos = sample_photos(2)
    uploaded = client.upload_photos(subject.id, photos).photos
    assert [photo.status for photo in uploaded] == ["accepted", "accepted"]
    assert [photo.filename for photo in uploaded] == [name for name, _ in photos]
    listed = list(client.iter_photos(subject.id, page_size=1))
    assert sorted(photo.id for photo in listed if photo.accepted) == sorted(photo.id for photo in uploaded)

    training = client.create_training(subject.id, steps=4)
    states = list(client.watch_training(training.id))
    assert states[-1].status == "succeeded", states[-1]
    assert states[-1].progress.step == states[-1].progress.total_steps
    assert [t.id for t in client.iter_trainings(subject.id)] == [training.id]

    styles = [style.id for style in client.list_styles()]
    assert "linkedin" in styles
    render = client.create_render(
        subject.id, training_id=training.id, styles=["linkedin"], images_per_style=2
    )
    finished = list(client.watch_render(render.id))[-1]
    assert finished.status == "succeeded", finished
    assert [r.id for r in client.iter_renders(subject.id, page_size=1)] == [render.id]
    saved = client.download_render(render.id, tmp_path / "images")
    assert len(saved) == 2
    for path in saved:
        with PIL.Image.open(path) as image:
            assert image.size[0] > 0
    assert client.download_image(render.id, finished.images[0].id) == saved[0].read_bytes()

    erasure = client.erase_subject(subject.id)
    with pytest.raises(Gone) as gone:
        client.get_subject(subject.id)
    assert gone.value.code == "subject_erased"
    assert gone.value.request_id
    assert completed_erasure(client, erasure.erasure_id).objects_deleted > 0

    # The signed receipt verifies against the keys the gateway publishes (a public route).
    receipt = client.get_erasure_receipt(erasure.erasure_id).model_dump(mode="json")
    published = client.get_receipt_keys().model_dump(mode="json")
    facts = receipts.verify_receipt(receipt, receipts.load_public_keys(json.dumps(published)))
    assert facts["erasure_id"] == erasure.erasure_id
    assert subject.id not in facts["subject_hmac"]


def test_a_training_is_cancelled_and_a_render_follows_a_team_look(client: LikenessClient) -> None:
    subject = client.create_subject(purpose="headshots", policy_version="2026-01")
    client.upload_photos(subject.id, sample_photos(2))
    long_one = client.create_training(subject.id, steps=2000)
    assert client.cancel_training(long_one.id).id == long_one.id
    assert list(client.watch_training(long_one.id))[-1].status == "cancelled"

    training = client.create_training(subject.id, steps=4)
    assert list(client.watch_training(training.id))[-1].status == "succeeded"
    catalog = client.get_catalog()
    look_id = f"look-{subject.id[-6:]}"
    spec = TeamLookSpec(
        name="Sales", style=catalog.styles[0].id, background=catalog.backgrounds[0].id, seed=99
    )
    look = client.put_team_look(look_id, spec)
    assert (look.id, look.seed_policy, look.seed) == (look_id, "fixed", 99)
    assert client.get_team_look(look_id) == look
    assert look_id in [listed.id for listed in client.list_team_looks()]
    # A render in a team look needs the person's `team_look` grant (opening gave `headshots` only).
    grant = client.grant_consent(subject.id, "team_look", "2026-01")
    assert (grant.purpose, grant.granted_by, grant.live) == ("team_look", "tenant", True)
    assert [g.purpose for g in client.list_consents(subject.id)] == ["headshots", "team_look"]
    render = client.create_render(
        subject.id, training_id=training.id, team_look_id=look_id, images_per_style=1
    )
    done = list(client.watch_render(render.id))[-1]
    assert done.status == "succeeded", done
    assert done.team_look_id == look_id
    assert (done.styles, done.background, len(done.images)) == ([spec.style], spec.background, 1)
    client.delete_team_look(look_id)
    with pytest.raises(NotFound):
        client.get_team_look(look_id)
    client.erase_subject(subject.id)


def test_the_retention_policy_and_readiness(stack: DevStack) -> None:
    token = stack.mint_token(tenant="clientpolicy", scopes=["retention:read", "retention:write"])
    with LikenessClient(stack.gateway_url, token) as tenant_admin:
        changed = tenant_admin.set_retention_policy(Retention(photos_days=9, renders_days=20))
        assert changed.tenant_specific
        assert changed.schedule.photos_days == 9
        assert "9 days after upload" in " ".join(changed.text.split())
        assert tenant_admin.get_retention_policy() == changed
    with LikenessClient(stack.gateway_url, "") as anonymous:
        assert anonymous.get_health().status == "ok"
        ready = anonymous.get_readiness()
        assert ready.status == "ready"
        assert all(ready.backends.values())
        assert anonymous.get_receipt_keys().keys, "receipt keys are public"


def test_errors_come_back_typed(stack: DevStack, client: LikenessClient) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_training("trn_01jbz3p5b7d9f1h3k5m7q9s1vw")
    assert missing.value.code == "not_found"
    with (
        LikenessClient(stack.gateway_url, stack.mint_token(scopes=["photos:read"])) as narrow,
        pytest.raises(Forbidden) as forbidden,
    ):
        narrow.create_subject(purpose="headshots", policy_version="2026-01")
    assert forbidden.value.code == "insufficient_scope"
    with (
        LikenessClient(stack.gateway_url, "not-a-token") as anonymous,
        pytest.raises(Unauthenticated),
    ):
        anonymous.list_styles()


async def test_the_async_client_reads_the_same_api(stack: DevStack) -> None:
    async with AsyncLikenessClient(stack.gateway_url, stack.mint_token(scopes=SCOPES), timeout=120) as client:
        subject = await client.create_subject(purpose="headshots", policy_version="2026-01")
        uploaded = (await client.upload_photos(subject.id, sample_photos(1))).photos
        assert uploaded[0].accepted
        assert [p.id async for p in client.iter_photos(subject.id)] == [uploaded[0].id]
        assert subject.id in [s.id async for s in client.iter_subjects(page_size=2)]
        archive = io.BytesIO()
        await client.export_subject(subject.id, archive)
        with zipfile.ZipFile(archive) as exported:
            assert f"photos/{uploaded[0].id}.png" in exported.namelist()
        await client.erase_subject(subject.id)
        with pytest.raises(Gone):
            await client.get_subject(subject.id)


# ------------------------------------------------------------------------------------------------ the CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_commands_drive_the_journey(
    stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--url", stack.gateway_url, "--token", stack.mint_token(scopes=SCOPES)]
    code, out, _ = run_cli(capsys, "subjects", "create", "--external-ref", "cli-1", *where)
    assert code == 0
    subject_id = out.strip()
    assert subject_id.startswith("sub_")

    folder = tmp_path / "photos"
    names = [path.name for path in write_sample_photos(folder, 2)]
    (folder / "coffee.jpg").write_bytes(no_face_photo())
    (folder / "notes.txt").write_text("not a photo")
    code, out, err = run_cli(capsys, "photos", "upload", subject_id, str(folder), *where)
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert rows == {names[0]: "accepted", names[1]: "accepted", "coffee.jpg": "rejected"}
    assert "no_face" in out
    assert "3/3" in err, "the progress bar reached the end"
    assert "2 of 3 photos accepted" in err

    code, out, err = run_cli(capsys, "trainings", "start", subject_id, "--steps", "4", *where)
    assert code == 0, err
    training_id = out.strip()
    code, _, err = run_cli(capsys, "trainings", "watch", training_id, *where)
    assert code == 0, err
    assert "training succeeded" in err

    styles = ["--style", "linkedin", "--images-per-style", "1", "--seed", "5"]
    code, out, err = run_cli(
        capsys, "renders", "create", subject_id, "--training", training_id, *styles, *where
    )
    assert code == 0, err
    render_id = out.strip()
    code, _, err = run_cli(capsys, "renders", "watch", render_id, "--poll", *where)
    assert code == 0, err
    code, out, err = run_cli(capsys, "renders", "download", render_id, "--out", str(tmp_path / "out"), *where)
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("img_*.png"))) == 1

    target = tmp_path / "export.zip"
    code, _, err = run_cli(capsys, "subjects", "export", subject_id, "--out", str(target), *where)
    assert code == 0, err
    with zipfile.ZipFile(target) as archive:
        assert json.loads(archive.read("subject.json"))["subject"]["id"] == subject_id
        assert any(name.startswith(f"renders/{render_id}/") for name in archive.namelist())

    code, out, err = run_cli(capsys, "trainings", "list", subject_id, "--json", *where)
    assert code == 0, err
    assert [t["id"] for t in json.loads(out)] == [training_id]
    code, out, err = run_cli(capsys, "renders", "list", subject_id, *where)
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == [render_id, "succeeded"]
    code, out, _ = run_cli(capsys, "renders", "get", render_id, *where)
    image_id = json.loads(out)["images"][0]["id"]
    code, _, err = run_cli(
        capsys, "renders", "image", render_id, image_id, "--out", str(tmp_path / "one.png"), *where
    )
    assert code == 0, err
    assert (tmp_path / "one.png").read_bytes() == next((tmp_path / "out").glob("img_*.png")).read_bytes()
    code, out, err = run_cli(capsys, "photos", "list", subject_id, "--all", *where)
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines()[1:]].count("accepted") == 2

    code, out, err = run_cli(capsys, "subjects", "erase", subject_id, *where)
    assert code == 0, err
    erasure_id = out.strip()
    assert erasure_id.startswith("era_")
    code, _, err = run_cli(capsys, "subjects", "get", subject_id, *where)
    assert code == 1
    assert "subject_erased" in err
    assert "HTTP 410" in err

    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=SCOPES)) as client:
        completed_erasure(client, erasure_id)
    code, out, err = run_cli(
        capsys, "erasures", "receipt", erasure_id, "--out", str(tmp_path / "r.json"), *where
    )
    assert code == 0, err
    assert "VALID: signed by a key the gateway publishes" in err
    code, out, err = run_cli(
        capsys, "erasures", "keys", "--url", stack.gateway_url, "--project-dir", str(tmp_path)
    )
    assert code == 0, err
    keys = tmp_path / "keys.json"
    keys.write_text(out)
    code, out, _ = run_cli(capsys, "receipt", "verify", str(tmp_path / "r.json"), "--keys", str(keys))
    assert code == 0
    assert erasure_id in out


def test_the_cli_sets_team_looks_and_checks_readiness(
    stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--url", stack.gateway_url, "--token", stack.mint_token(scopes=SCOPES)]
    code, out, err = run_cli(capsys, "styles", "list", "--json", *where)
    assert code == 0, err
    catalog = json.loads(out)
    style, background = catalog["styles"][0]["id"], catalog["backgrounds"][0]["id"]
    options = [
        "--name",
        "Engineering",
        "--style",
        style,
        "--background",
        background,
        "--seed-policy",
        "per_render",
    ]
    code, out, err = run_cli(capsys, "team-looks", "set", "cli-eng", *options, *where)
    assert code == 0, err
    assert json.loads(out)["seed_policy"] == "per_render"
    code, out, _ = run_cli(capsys, "team-looks", "list", *where)
    assert "cli-eng" in out
    assert run_cli(capsys, "team-looks", "delete", "cli-eng", *where)[0] == 0
    code, _, err = run_cli(capsys, "team-looks", "get", "cli-eng", *where)
    assert (code, "not_found" in err) == (1, True)
    code, out, err = run_cli(
        capsys, "gateway", "ready", "--url", stack.gateway_url, "--project-dir", str(tmp_path)
    )
    assert code == 0, err
    assert out.splitlines()[-1] == "ready"


def test_the_cli_reports_api_errors_and_missing_settings(
    stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    narrow = ["--url", stack.gateway_url, "--token", stack.mint_token(scopes=["subjects:read"])]
    target = tmp_path / "x.zip"
    code, _, err = run_cli(
        capsys, "subjects", "export", "sub_01jbz3k7q8m2x4v6n9p0r5t7wy", "--out", str(target), *narrow
    )
    assert code == 1
    assert "insufficient_scope" in err
    assert not list(tmp_path.iterdir())

    for name in ("LIKENESS_GATEWAY_URL", "LIKENESS_TOKEN", "LIKENESS_DEV_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_cli(capsys, "subjects", "create", "--project-dir", str(tmp_path))
    assert code == 2
    assert "LIKENESS_GATEWAY_URL" in err
