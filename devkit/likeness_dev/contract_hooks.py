"""Schemathesis hooks of the contract run (`schemathesis.toml` loads this module): what a client of the
API supplies that no schema can generate. They change what is sent, never what is checked.

- Requests that need seeded data. The schema can say "files", not "a photo of this person's face", so
  whatever schemathesis makes is refused by ingest (415/422 with every verdict, as documented); and a render
  needs a succeeded training of its subject. The examples phase also uploads one real face photo
  (`likeness_dev.samples`) to the seeded empty subject and renders one image from the seeded training, so
  both are seen succeeding too.
- Fresh idempotency keys. A client may choose any `Idempotency-Key`, but must not reuse one for another
  request (422 `idempotency_key_reused`). A fuzzer draws keys from a small space (the example, "0", ...)
  and reuses them across different requests; each schema-valid request is given a key derived from the
  drawn one and from the request itself, so a repeated request still replays and no other collides.
  Requests meant to be invalid keep their key as drawn.

They also count every operation's answers by status (statuses only, never a body: answers hold decrypted
photos and images) and, when the run ends, write them to `$LIKENESS_CONTRACT_ANSWERS` (default
`.likeness/schemathesis/answers.json`) and name any operation that never answered 2xx.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from schemathesis import Case
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.hooks import HookContext
from schemathesis.transport.serialization import Binary

from likeness_dev.samples import sample_photos

UPLOAD_OPERATION = "POST /v1/subjects/{subject_id}/photos"
RENDER_OPERATION = "POST /v1/subjects/{subject_id}/renders"
#: Operations whose bodies name catalog ids, and the `GET /v1/styles` list each request field draws from.
CATALOG_OPERATIONS = frozenset({RENDER_OPERATION, "PUT /v1/team-looks/{look_id}"})
CATALOG_FIELDS = {"background": "backgrounds", "outfit": "outfits", "lighting": "lighting_setups"}
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Room left for the request's digest within the key's 255 characters.
_KEPT_KEY_CHARS = 200


@cache
def _face_photo() -> bytes:
    return sample_photos(1)[0][1]


def _seeded(name: str) -> str:
    """An id `likeness dev seed` wrote into dev.env (loaded into the environment before the run)."""
    return os.environ[f"LIKENESS_SEED_{name}"]


def _seeded_upload() -> dict[str, Any]:
    return {"file": [Binary(_face_photo())]}


def _seeded_render() -> dict[str, Any]:
    return {"training_id": _seeded("TRAINING_ID"), "styles": ["linkedin"], "images_per_style": 1}


#: Operation -> the body of a request that needs seeded data to succeed.
SEEDED_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    UPLOAD_OPERATION: _seeded_upload,
    RENDER_OPERATION: _seeded_render,
}


@schemathesis.hook
def before_add_examples(context: HookContext, examples: list[Case[Any]]) -> None:
    """Adds to the examples phase a request that needs seeded data to succeed.

    The real photo goes to the seeded subject that has none; the render asks for one image in a catalog
    style from the seeded succeeded training (fuzzed renders name trainings schemathesis made up, or the
    seeded one when a link or an earlier answer gave it). Like any explicit example, it carries no
    generation metadata: the checks that judge generated data (valid data accepted, invalid refused)
    leave it alone, every other check applies, and its answer is in the run's events like any other.
    """
    operation = context.operation
    if operation is None or operation.label not in SEEDED_BODIES:
        return
    upload = operation.label == UPLOAD_OPERATION
    examples.append(
        operation.Case(
            path_parameters={"subject_id": _seeded("UPLOAD_SUBJECT_ID" if upload else "SUBJECT_ID")},
            body=SEEDED_BODIES[operation.label](),
            media_type="multipart/form-data" if upload else "application/json",
        )
    )


@cache
def _catalog_ids() -> dict[str, tuple[str, ...]]:
    """The ids a render may choose, per request field, from the catalog the live API serves."""
    answer = httpx.get(
        f"{os.environ['LIKENESS_GATEWAY_URL']}/v1/styles",
        headers={"Authorization": f"Bearer {os.environ['LIKENESS_DEV_TOKEN']}"},
        timeout=30,
    )
    answer.raise_for_status()
    listed = answer.json()
    ids = {field: sorted(option["id"] for option in listed[kind]) for field, kind in CATALOG_FIELDS.items()}
    return {field: tuple(found) for field, found in ids.items()}


def _choose_from_catalog(case: Case[Any]) -> None:
    """A schema-valid render or team look names catalog ids: the schema can give their shape only, so a
    drawn id the catalog lacks is replaced by one it has (as a client picks from `GET /v1/styles`)."""
    if case.operation.label not in CATALOG_OPERATIONS or not isinstance(case.body, dict):
        return
    for field, known in _catalog_ids().items():
        drawn = case.body.get(field)
        if isinstance(drawn, str) and drawn not in known:
            case.body[field] = known[len(drawn) % len(known)]


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], **kwargs: Any) -> None:
    """A valid request names catalog ids the catalog has, and one with an `Idempotency-Key` gets a key of
    its own (see the module's docstring)."""
    if case.meta is None or not case.meta.generation.mode.is_negative:
        _choose_from_catalog(case)
    headers = case.headers
    if headers is None or IDEMPOTENCY_HEADER not in headers:
        return
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return  # an invalid key must stay as drawn: its refusal is what is being tested
    drawn = str(headers[IDEMPOTENCY_HEADER])
    headers[IDEMPOTENCY_HEADER] = f"{drawn[:_KEPT_KEY_CHARS]}~{_request_digest(case)}"


def _request_digest(case: Case[Any]) -> str:
    """What tells two requests apart, as the gateway fingerprints them (method, path, body)."""
    request = {
        "method": case.method,
        "path": case.formatted_path,
        "query": case.query,
        "body": _plain(case.body),
    }
    canonical = json.dumps(request, sort_keys=True, default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _plain(value: object) -> object:
    """`value` with file contents replaced by their digests (a `Binary` is an empty `str` to JSON)."""
    if isinstance(value, Binary):
        return hashlib.sha256(value.data).hexdigest()
    if isinstance(value, bytes | bytearray):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


ANSWERS_ENV = "LIKENESS_CONTRACT_ANSWERS"
DEFAULT_ANSWERS = Path(".likeness/schemathesis/answers.json")
#: Operation label -> status -> how many answers (requests with the operation's own method only).
_answers: defaultdict[str, Counter[int]] = defaultdict(Counter)
_operations: set[str] = set()


@schemathesis.hook
def after_call(context: HookContext, case: Case[Any], response: Response) -> None:
    """Counts the answer's status for its operation (nothing of its body is kept)."""
    operation = case.operation
    if not _operations:
        _operations.update(
            result.ok().label for result in operation.schema.get_all_operations() if isinstance(result, Ok)
        )
    # A probe with another method (405 expected) says nothing about the operation's own answers.
    if case.method.upper() == operation.method.upper():
        _answers[operation.label][response.status_code] += 1


def _write_answers() -> None:
    if not _operations:
        return
    path = Path(os.environ.get(ANSWERS_ENV) or DEFAULT_ANSWERS)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = {
        label: {str(status): n for status, n in sorted(_answers[label].items())}
        for label in sorted(_operations)
    }
    path.write_text(json.dumps(counts, indent=2) + "\n")
    never = [
        label for label in sorted(_operations) if not any(200 <= status < 300 for status in _answers[label])
    ]
    verdict = f"never answered 2xx: {', '.join(never)}" if never else "every operation answered 2xx"
    print(f"contract run: {verdict} ({len(_operations)} operations; statuses in {path})", file=sys.stderr)


atexit.register(_write_answers)
