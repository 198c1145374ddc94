"""Ids in request paths, checked whole before anything touches them.

Every path parameter of the API names a resource, and each is listed here with the shape a real one has.
`gateway.deps.BearerAuth` runs `refuse_malformed_path_ids` as soon as the token is verified, before the
idempotency claim, the routes and any backend: a malformed id (`sub_...\\n`, another kind's id, upper
case, a space) answers the route's 404 `not_found`, as an id that does not exist does, and reaches neither
NATS nor a service. Each check is a full match (`likeness.ids`): a pattern's `$` also accepts a trailing
newline, which NATS then refuses as a subject token (a 500).

A team look's id is the tenant's own name, not one of ours: a malformed one is not found (GET, DELETE), or
refused as a name (PUT creates it: 400 `invalid_team_look_id`, as the renderer would say).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.errors import ApiError, not_found
from gateway.schemas import LOOK_ID_PATTERN
from likeness.ids import is_valid_id

#: Path parameter -> the kind prefix of the id it holds.
ID_KINDS: dict[str, str] = {
    "subject_id": "sub",
    "photo_id": "pho",
    "training_id": "trn",
    "render_id": "ren",
    "image_id": "img",
    "erasure_id": "era",
}
LOOK_ID_PARAMETER = "look_id"
#: Every path parameter the API may have: a route with another answers 500 until it is listed here (and
#: the tests that walk the app's routes fail), so no id slips through unchecked.
KNOWN_PARAMETERS = frozenset({*ID_KINDS, LOOK_ID_PARAMETER})
_LOOK_ID = re.compile(LOOK_ID_PATTERN, re.ASCII)


def invalid_look_id() -> ApiError:
    return ApiError(
        400, "invalid_team_look_id", "A look id is 1-40 lower-case letters, digits and inner dashes."
    )


def refuse_malformed_path_ids(method: str, path_params: Mapping[str, object]) -> None:
    """Raises the route's answer for the first malformed id among the request's path parameters."""
    for name, value in path_params.items():
        if not isinstance(value, str):
            raise not_found()
        if name == LOOK_ID_PARAMETER:
            if _LOOK_ID.fullmatch(value) is None:
                raise invalid_look_id() if method == "PUT" else not_found()
            continue
        kind = ID_KINDS.get(name)
        if kind is None:
            raise RuntimeError(f"path parameter {name!r} has no id rule in gateway.path_ids")
        if not is_valid_id(value, kind):
            raise not_found()
