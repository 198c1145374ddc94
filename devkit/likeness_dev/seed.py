"""`likeness dev seed`: the resources a contract run (schemathesis, `schemathesis.toml`) needs, made through
the gateway as a tenant's service would, their ids written into `.likeness/dev.env`.

A fuzzer cannot invent a trained model or a finished render: it needs ids of real ones to reach the
operations that read them. So this makes, for the token's tenant:

- a subject with accepted photos of a real face (`likeness_dev.samples`), a succeeded training and a
  succeeded render with one image: what every read, download, export, render and cancel works on (the
  tenant's schedule is set to delete photos after training first, so that trainings a run starts on it
  fail at once rather than occupy the trainer);
- an empty subject, for the one real photo the run uploads (a photo already held would be a `duplicate`);
- an erased subject with its completed erasure: `DELETE /v1/subjects/{id}` of it answers its erasure
  again, so the run's erasures never touch the subjects the other operations use, and
  `GET /v1/erasures/{id}/receipt` has a receipt to give;
- a team look to read and replace, and a spare one for the run to delete;
- spares for the per-item deletions, so the run's deletions never take away what the other operations
  read: a second render of the trained model, a subject with one photo (no model trained on it), and a
  training of a subject of its own, cancelled at once (a finished training may be deleted).

Seeding again reuses the trained subject while it is still there (a training takes a while) and makes
anew what a run uses up: the empty subject, the spare look and the spares of the deletions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from likeness_dev.journey import GatewayClient, JourneyError
from likeness_dev.samples import sample_photos
from likeness_dev.stackfile import read_dev_env, write_dev_env
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT, mint_dev_token

Say = Callable[[str], None]

ENV_PREFIX = "LIKENESS_SEED_"
#: The seeded (trained) subject's own token, for what only the person's token may read (the processing log).
PERSON_TOKEN_VARIABLE = f"{ENV_PREFIX}PERSON_TOKEN"
#: Photos of the trained subject: the gateway's default `LIKENESS_MIN_PHOTOS_FOR_TRAINING`.
DEFAULT_PHOTOS = 4
LOOK_ID = "contract-look"
SPARE_LOOK_ID = "contract-spare-look"
_CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
_DONE = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Seed:
    """Ids of the seeded resources; `as_env` names them as `schemathesis.toml` reads them."""

    subject_id: str
    training_id: str
    render_id: str
    image_id: str
    upload_subject_id: str
    #: Grants and withdrawals go to a subject of their own: a withdrawal must not stop the trained one's
    #: renders, nor (under a fuzzed `erase_on_withdrawal`) erase it.
    consent_subject_id: str
    erased_subject_id: str
    erasure_id: str
    look_id: str
    spare_look_id: str
    #: Targets of the run's per-item deletions (each deleted once, then 404 like any missing item).
    spare_render_id: str
    spare_photo_subject_id: str
    spare_photo_id: str
    spare_training_id: str

    def as_env(self) -> dict[str, str]:
        return {f"{ENV_PREFIX}{name.upper()}": value for name, value in asdict(self).items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Seed | None:
        values = {field.name: env.get(f"{ENV_PREFIX}{field.name.upper()}") for field in fields(cls)}
        if not all(values.values()):
            return None
        return cls(**{name: str(value) for name, value in values.items()})


def seed(
    client: GatewayClient,
    *,
    photos: int = DEFAULT_PHOTOS,
    previous: Seed | None = None,
    say: Say = print,
    timeout: float = 600.0,
) -> Seed:
    """Seeds the token's tenant (reusing `previous`'s trained subject and erasure while they still serve)."""
    trained = _still_trained(client, previous)
    erased = _still_erased(client, previous)
    # Erasing runs in the background: started first, it is done by the time the training is.
    erased_subject_id, erasure_id = erased or _start_erasure(client)
    if trained is None:
        trained = _trained_subject(client, photos, say, timeout)
    subject_id, training_id, render_id, image_id = trained
    upload_subject_id = _open_subject(client)
    consent_subject_id = _open_subject(client)
    for look_id, style in ((LOOK_ID, "linkedin"), (SPARE_LOOK_ID, "corporate")):
        look = {
            "name": f"Contract {look_id}",
            "style": style,
            "background": "light_gray",
            "seed_policy": "fixed",
        }
        client.call("PUT", f"/v1/team-looks/{look_id}", json=look)
    spare_render_id = _render(client, subject_id, training_id, timeout, say)
    spare_photo_subject_id = _open_subject(client)
    spare_photo_id = _upload(client, spare_photo_subject_id, 1)[0]
    spare_training_id = _cancelled_training(client, photos)
    if erased is None:
        client.wait(
            f"/v1/erasures/{erasure_id}", lambda r: r["status"] == "completed", timeout, say, "erasure"
        )
    return Seed(
        subject_id=subject_id,
        training_id=training_id,
        render_id=render_id,
        image_id=image_id,
        upload_subject_id=upload_subject_id,
        consent_subject_id=consent_subject_id,
        erased_subject_id=erased_subject_id,
        erasure_id=erasure_id,
        look_id=LOOK_ID,
        spare_look_id=SPARE_LOOK_ID,
        spare_render_id=spare_render_id,
        spare_photo_subject_id=spare_photo_subject_id,
        spare_photo_id=spare_photo_id,
        spare_training_id=spare_training_id,
    )


def _open_subject(client: GatewayClient) -> str:
    return str(client.json("POST", "/v1/subjects", expect=(201,), json=_CONSENT)["id"])


def _start_erasure(client: GatewayClient) -> tuple[str, str]:
    subject_id = _open_subject(client)
    erasure = client.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))
    return subject_id, str(erasure["erasure_id"])


def _trained_subject(
    client: GatewayClient, photos: int, say: Say, timeout: float
) -> tuple[str, str, str, str]:
    # Photos go once a training has used them (a schedule many tenants choose): the many trainings a
    # contract run starts on this subject then end at once, `failed`, instead of keeping the trainer busy
    # for minutes. Set before the subject opens, since a subject keeps the schedule it was opened under.
    client.call("PUT", "/v1/retention-policy", json={"photos_deleted_after_training": True})
    subject_id = _open_subject(client)
    # Opening granted `headshots`; renders in a team look need their own grant (`likeness.consent`).
    grant = {"purpose": "team_look", "policy_version": "2026-01"}
    client.call("POST", f"/v1/subjects/{subject_id}/consents", expect=(201,), json=grant)
    uploaded = _upload(client, subject_id, photos)
    say(f"subject {subject_id}: {len(uploaded)} photos accepted; training")
    training_id = str(
        client.json("POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={})["id"]
    )
    training = client.wait(
        f"/v1/trainings/{training_id}", lambda r: r["status"] in _DONE, timeout, say, "training"
    )
    if training["status"] != "succeeded":
        raise JourneyError(f"the seed training ended {training['status']}: {training.get('error')}")
    render_id = _render(client, subject_id, training_id, timeout, say)
    render = client.json("GET", f"/v1/renders/{render_id}")
    return subject_id, training_id, render_id, str(render["images"][0]["id"])


def _upload(client: GatewayClient, subject_id: str, photos: int) -> list[str]:
    """Uploads `photos` sample photos of a real face; their ids (every one must be accepted)."""
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(photos)]
    uploaded = client.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    refused = [photo for photo in uploaded if photo["status"] != "accepted"]
    if refused:
        raise JourneyError(f"sample photos were rejected: {refused}")
    return [str(photo["id"]) for photo in uploaded]


def _render(client: GatewayClient, subject_id: str, training_id: str, timeout: float, say: Say) -> str:
    """A succeeded render of one image from the training."""
    body = {"training_id": training_id, "styles": ["linkedin"], "images_per_style": 1, "seed": 7}
    render_id = str(client.json("POST", f"/v1/subjects/{subject_id}/renders", expect=(202,), json=body)["id"])
    render = client.wait(f"/v1/renders/{render_id}", lambda r: r["status"] in _DONE, timeout, say, "render")
    if render["status"] != "succeeded":
        raise JourneyError(f"the seed render ended {render['status']}: {render.get('error')}")
    return render_id


def _cancelled_training(client: GatewayClient, photos: int) -> str:
    """A training of a subject of its own, cancelled at once: finished (so deletable) without training."""
    subject_id = _open_subject(client)
    _upload(client, subject_id, photos)
    training_id = str(
        client.json("POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={})["id"]
    )
    client.call("POST", f"/v1/trainings/{training_id}/cancel", expect=(202,))
    return training_id


def _still_trained(client: GatewayClient, previous: Seed | None) -> tuple[str, str, str, str] | None:
    """The previous seed's trained subject, if its training and render are still there, succeeded."""
    if previous is None:
        return None
    training = client.call("GET", f"/v1/trainings/{previous.training_id}", expect=(200, 404, 410))
    render = client.call("GET", f"/v1/renders/{previous.render_id}", expect=(200, 404, 410))
    if training.status_code != 200 or render.status_code != 200:
        return None
    if training.json()["status"] != "succeeded" or render.json()["status"] != "succeeded":
        return None
    if previous.image_id not in {image["id"] for image in render.json()["images"]}:
        return None
    return previous.subject_id, previous.training_id, previous.render_id, previous.image_id


def _still_erased(client: GatewayClient, previous: Seed | None) -> tuple[str, str] | None:
    if previous is None:
        return None
    receipt = client.call("GET", f"/v1/erasures/{previous.erasure_id}/receipt", expect=(200, 404))
    return (previous.erased_subject_id, previous.erasure_id) if receipt.status_code == 200 else None


def seed_dev_stack(state_dir: Path, *, photos: int = DEFAULT_PHOTOS, say: Say = print) -> Seed:
    """Seeds the dev stack whose `dev.env` is in `state_dir` and adds the seed's ids to that file."""
    env = read_dev_env(state_dir)
    url, token = env.get("LIKENESS_GATEWAY_URL"), env.get("LIKENESS_DEV_TOKEN")
    if not url or not token:
        raise JourneyError(f"no gateway in {state_dir / 'dev.env'}: start the stack with `likeness dev up`")
    began = time.monotonic()
    client = GatewayClient(url, token)
    try:
        seeded = seed(client, photos=photos, previous=Seed.from_env(env), say=say)
    finally:
        client.close()
    person = mint_dev_token(
        env["LIKENESS_JWT_DEV_SECRET"],
        DEV_TENANT,
        ALL_SCOPES,
        subject=seeded.subject_id,
        ttl_seconds=7 * 24 * 3600,
    )
    write_dev_env(state_dir, {**env, **seeded.as_env(), PERSON_TOKEN_VARIABLE: person})
    say(f"seeded in {time.monotonic() - began:.1f}s")
    return seeded
