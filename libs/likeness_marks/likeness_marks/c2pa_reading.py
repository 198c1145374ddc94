"""Reading a C2PA manifest: whether an image's active manifest validates and says it was made by a
trained algorithm. c2pa-python is optional: without it nothing is read (`c2pa_available()` says so)."""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from typing import Any

from likeness_marks.iptc import DIGITAL_SOURCE_TYPE

_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def load_c2pa() -> Any | None:
    """The c2pa module, or None where c2pa-python is not installed (it ships no type information)."""
    try:
        return importlib.import_module("c2pa")
    except ImportError:
        return None


def c2pa_available() -> bool:
    return load_c2pa() is not None


@dataclass(frozen=True)
class ManifestReport:
    """What a C2PA reader found: validation_state is "Invalid", "Valid" or "Trusted"."""

    validation_state: str
    digital_source_types: tuple[str, ...]
    signer: str
    failures: tuple[str, ...]

    @property
    def says_ai_generated(self) -> bool:
        return DIGITAL_SOURCE_TYPE in self.digital_source_types and self.validation_state != "Invalid"


def read_manifest(data: bytes, image_format: str, trust_anchors_pem: str = "") -> ManifestReport | None:
    """The active C2PA manifest of an image (None when it has none or c2pa-python is missing)."""
    c2pa = load_c2pa()
    if c2pa is None:
        return None
    mime = _MIME_BY_FORMAT.get(image_format.upper())
    if mime is None:
        return None
    settings: dict[str, Any] = {}
    if trust_anchors_pem:
        settings = {"verify": {"verify_trust": True}, "trust": {"trust_anchors": trust_anchors_pem}}
    try:
        context = c2pa.Context.from_dict(settings) if settings else None
        reader = c2pa.Reader(mime, io.BytesIO(data), context=context)
        manifest = reader.get_active_manifest() or {}
        state = reader.get_validation_state() or "Invalid"
        results = reader.get_validation_results() or {}
    except c2pa.C2paError:
        return None
    types = tuple(
        str(action.get("digitalSourceType", ""))
        for assertion in manifest.get("assertions", [])
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in assertion.get("data", {}).get("actions", [])
    )
    failures = tuple(
        str(item.get("code", "")) for item in (results.get("activeManifest") or {}).get("failure", [])
    )
    signature = manifest.get("signature_info") or {}
    return ManifestReport(
        validation_state=str(state),
        digital_source_types=types,
        signer=str(signature.get("common_name", "")),
        failures=failures,
    )
