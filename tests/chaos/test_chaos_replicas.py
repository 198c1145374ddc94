"""Twenty people at once through two replicas of every service, on the clustered servers.

On `replicated_stack`: the cluster stack's servers (three JetStream servers, streams and buckets at three
replicas; a persistent OpenBao) and two processes of every service: two gateways (journey n goes through
gateway n % 2, each calling the gRPC services of its own replica number), two of ingest, retention, the
trainer's and the renderer's servers and workers, all sharing the work queues and the KV records. Every
journey ends as on one replica; each job completes exactly once (one completion event, one LoRA); nothing
of anyone is left in the bucket, and the leak scan over this stack finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from likeness_dev.leaks import photo_secrets, scan_stack
from likeness_dev.load import run_load
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PEOPLE = 20
TRAINING_STEPS = 4
IMAGES_PER_STYLE = 2


def _succeeded(stack: Any, name: str, queue: str) -> int:
    """`likeness_jobs_finished_total{queue, status="succeeded"}` of one worker process."""
    exposition = httpx.get(f"{stack.services[name].metrics_url}/metrics", timeout=10.0).text
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "likeness_jobs_finished_total"
        and sample.labels == {"queue": queue, "status": "succeeded"}
    )


def test_twenty_journeys_through_two_replicas_of_every_service(
    replicated_kit: Any, check_load: Callable[..., None]
) -> None:
    kit = replicated_kit
    stack = kit.stack
    assert len(stack.gateway_urls) == 2
    assert {"trainer-worker-2", "renderer-worker-2", "ingest-2", "retention-2"} <= set(stack.services)
    photos = sample_photos(2)
    token = stack.mint_token()
    kit.ledger.add_token(token)
    outcome = run_load(
        stack.gateway_urls,
        token,
        photos,
        people=PEOPLE,
        training_steps=TRAINING_STEPS,
        images_per_style=IMAGES_PER_STYLE,
    )
    check_load(kit, photos, outcome, PEOPLE, IMAGES_PER_STYLE)
    for result in outcome.results:
        # The erasure purged the person's events; the records said once what each job did.
        assert result.training["status"] == "succeeded"
        assert result.render["status"] == "succeeded"
    # Exactly one success per job, counted by the workers themselves, and both replicas of each took some:
    # the load really went through two of every worker (the stack is this module's: nothing else ran).
    for worker, queue in (("trainer-worker", "train"), ("renderer-worker", "render")):
        finished = {name: _succeeded(stack, name, queue) for name in (worker, f"{worker}-2")}
        assert sum(finished.values()) == PEOPLE, finished
        assert all(finished.values()), finished
    print(f"\nreplicated load: {json.dumps(outcome.figures(TRAINING_STEPS, IMAGES_PER_STYLE))}")

    secrets = photo_secrets(kit.ledger.photos.items())
    secrets += [(f"render {image_id}", data) for image_id, data in kit.ledger.images.items()]
    findings, plaintext = scan_stack(stack, secrets, kit.ledger.needles)
    assert plaintext.bytes_scanned > 0
    assert findings == [], "\n".join(str(finding) for finding in findings)
