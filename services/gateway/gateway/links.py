"""OpenAPI links: which operation an answer leads to, and with what (ids from the answer or the request).

They make the contract walkable, by generated clients and by schemathesis' stateful phase alike: a new
subject leads to its photos, trainings, renders, export and erasure; a training to its events, its
cancellation and renders made from it; a render to its images; an erasure to its receipt; a team look to
itself. Routes are named by their endpoint (function) name; `links_of` turns those into operation ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Link:
    name: str
    target: str
    parameters: dict[str, str]
    request_body: dict[str, Any] | None = None
    description: str = ""


def _subject_links(subject_id: str) -> list[Link]:
    """Where a subject leads, its id taken from `subject_id` (a runtime expression)."""
    return [
        Link("GetSubject", "get_subject", {"subject_id": subject_id}, description="The subject"),
        Link("UploadPhotos", "upload_photos", {"subject_id": subject_id}, description="Add photos"),
        Link("ListPhotos", "list_photos", {"subject_id": subject_id}, description="Its photos"),
        Link("CreateTraining", "create_training", {"subject_id": subject_id}, description="Train"),
        Link("ListTrainings", "list_trainings", {"subject_id": subject_id}, description="Its trainings"),
        Link("ListRenders", "list_renders", {"subject_id": subject_id}, description="Its renders"),
        Link("ExportSubject", "export_subject", {"subject_id": subject_id}, description="Export it all"),
        Link("EraseSubject", "erase_subject", {"subject_id": subject_id}, description="Erase the person"),
    ]


def _render_from(subject_id: str, training_id: str) -> Link:
    return Link(
        "CreateRender",
        "create_render",
        {"subject_id": subject_id},
        {"training_id": training_id},
        "Render headshots from this training",
    )


#: (endpoint name, status) -> links of that answer.
LINKS: dict[tuple[str, int], list[Link]] = {
    ("create_subject", 201): _subject_links("$response.body#/id"),
    ("list_subjects", 200): [
        Link(
            "GetSubject", "get_subject", {"subject_id": "$response.body#/subjects/0/id"}, description="First"
        )
    ],
    ("get_subject", 200): [
        link for link in _subject_links("$response.body#/id") if link.name != "GetSubject"
    ],
    ("upload_photos", 200): [
        Link(
            "ListPhotos", "list_photos", {"subject_id": "$request.path.subject_id"}, description="All photos"
        ),
        Link(
            "CreateTraining",
            "create_training",
            {"subject_id": "$request.path.subject_id"},
            description="Train",
        ),
    ],
    ("create_training", 202): [
        Link("GetTraining", "get_training", {"training_id": "$response.body#/id"}, description="Poll it"),
        Link(
            "TrainingEvents", "training_events", {"training_id": "$response.body#/id"}, description="Follow"
        ),
        Link(
            "CancelTraining", "cancel_training", {"training_id": "$response.body#/id"}, description="Cancel"
        ),
    ],
    ("list_trainings", 200): [
        Link(
            "GetTraining",
            "get_training",
            {"training_id": "$response.body#/trainings/0/id"},
            description="Newest",
        ),
        _render_from("$request.path.subject_id", "$response.body#/trainings/0/id"),
    ],
    ("get_training", 200): [
        Link(
            "TrainingEvents", "training_events", {"training_id": "$response.body#/id"}, description="Follow"
        ),
        Link(
            "CancelTraining", "cancel_training", {"training_id": "$response.body#/id"}, description="Cancel"
        ),
        Link(
            "ListTrainings", "list_trainings", {"subject_id": "$response.body#/subject_id"}, description="All"
        ),
        _render_from("$response.body#/subject_id", "$response.body#/id"),
    ],
    ("cancel_training", 202): [
        Link("GetTraining", "get_training", {"training_id": "$response.body#/id"}, description="Read it")
    ],
    ("create_render", 202): [
        Link("GetRender", "get_render", {"render_id": "$response.body#/id"}, description="Poll it"),
        Link("RenderEvents", "render_events", {"render_id": "$response.body#/id"}, description="Follow it"),
    ],
    ("list_renders", 200): [
        Link("GetRender", "get_render", {"render_id": "$response.body#/renders/0/id"}, description="Newest")
    ],
    ("get_render", 200): [
        Link(
            "GetImage",
            "get_image",
            {"render_id": "$response.body#/id", "image_id": "$response.body#/images/0/id"},
            description="Download its first image",
        ),
        Link("RenderEvents", "render_events", {"render_id": "$response.body#/id"}, description="Follow it"),
        Link("ListRenders", "list_renders", {"subject_id": "$response.body#/subject_id"}, description="All"),
    ],
    ("erase_subject", 202): [
        Link(
            "GetErasure", "get_erasure", {"erasure_id": "$response.body#/erasure_id"}, description="Progress"
        ),
        Link(
            "GetErasureReceipt",
            "get_erasure_receipt",
            {"erasure_id": "$response.body#/erasure_id"},
            description="The signed receipt, once completed",
        ),
    ],
    ("get_erasure", 200): [
        Link(
            "GetErasureReceipt",
            "get_erasure_receipt",
            {"erasure_id": "$response.body#/id"},
            description="Receipt",
        )
    ],
    ("list_looks", 200): [
        Link("GetLook", "get_look", {"look_id": "$response.body#/looks/0/id"}, description="The first look")
    ],
    ("put_look", 200): [
        Link("GetLook", "get_look", {"look_id": "$response.body#/id"}, description="Read it back"),
        Link("DeleteLook", "delete_look", {"look_id": "$response.body#/id"}, description="Delete it"),
    ],
    ("get_look", 200): [
        Link("DeleteLook", "delete_look", {"look_id": "$response.body#/id"}, description="Delete it")
    ],
}


def links_of(endpoint: str, operation_ids: dict[str, str]) -> dict[int, dict[str, dict[str, Any]]]:
    """The OpenAPI `links` of an endpoint's answers, by status, naming targets by operation id."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for (source, status), listed in LINKS.items():
        if source != endpoint:
            continue
        for link in listed:
            definition: dict[str, Any] = {
                "operationId": operation_ids[link.target],
                "parameters": dict(link.parameters),
                "description": link.description,
            }
            if link.request_body is not None:
                definition["requestBody"] = link.request_body
            found.setdefault(status, {})[link.name] = definition
    return found
