"""Workers check the weights they serve at start: the manifest verified (every file hashed), the time it
took as a metric, the tiny random model refused in production, and a refusal that names the file.

Called before anything is loaded or connected: a worker whose weights are not the pinned ones never reads
them with `from_pretrained`, never touches NATS, S3 or Vault, and exits with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from prometheus_client import Gauge

from likeness_ml.model_manifest import Manifest, ManifestMismatch, verify_manifest

#: Which pinned weights (a fixed set: a metric label).
PinnedWeights = Literal["base_model", "safety_classifier", "identity_adapter"]

VERIFY_SECONDS = Gauge(
    "likeness_weights_verify_seconds",
    "Seconds the start-up check of pinned weights took (every file's SHA-256 against the manifest)",
    ["weights"],
)
VERIFIED_BYTES = Gauge(
    "likeness_weights_verified_bytes", "Bytes of pinned weights hashed at start", ["weights"]
)


class TinyModelRefused(ManifestMismatch):
    """Production was given the tiny random-weight test model."""


#: The setting that pins each manifest's own digest (production requires it).
MANIFEST_SETTING: dict[PinnedWeights, str] = {
    "base_model": "LIKENESS_BASE_MODEL_MANIFEST_SHA256",
    "safety_classifier": "LIKENESS_SAFETY_MODEL_MANIFEST_SHA256",
    "identity_adapter": "LIKENESS_IDENTITY_ADAPTER_MANIFEST_SHA256",
}


def verify_pinned(
    model_dir: Path, weights: PinnedWeights, *, production: bool, manifest_sha256: str = ""
) -> Manifest:
    """The verified manifest of model_dir (ManifestMismatch names what differs). manifest_sha256: the
    manifest file's own digest from the deployment's settings, which production requires (a manifest on the
    weights' own volume proves nothing to someone who can rewrite both). TinyModelRefused in production
    for weights marked tiny. The check's duration and size go to the metrics."""
    if production and not manifest_sha256:
        raise ManifestMismatch(
            f"production pins the manifest itself: set {MANIFEST_SETTING[weights]} to the SHA-256 that "
            "`likeness model manifest` printed"
        )
    began = time.perf_counter()
    manifest = verify_manifest(model_dir, manifest_sha256)
    VERIFY_SECONDS.labels(weights).set(time.perf_counter() - began)
    VERIFIED_BYTES.labels(weights).set(manifest.total_bytes)
    if production and manifest.tiny:
        raise TinyModelRefused(
            f"{model_dir} is the tiny random-weight test model (its manifest says so): production "
            "serves real weights only"
        )
    return manifest


def require_pinned(
    model_dir: Path, weights: PinnedWeights, *, production: bool, process: str, manifest_sha256: str = ""
) -> Manifest:
    """verify_pinned for a process at start: a refusal ends the process with its reason (exit status 1)."""
    try:
        return verify_pinned(model_dir, weights, production=production, manifest_sha256=manifest_sha256)
    except ManifestMismatch as refused:
        what = weights.replace("_", " ")
        raise SystemExit(f"{process} refuses to start: {what} not pinned: {refused}") from refused
