"""Shadow sampling: the caller gets the cheap answer; the ledger gets the comparison with a higher tier."""

from __future__ import annotations

import pytest

from routing.models import JobStatus
from tests.support.governed import POLICY, governed
from tests.support.workers import events, finished, wait_for

pytestmark = pytest.mark.slow

SHADOWED = POLICY.replace(
    "    confidence: logprob\n  - id: eu-data",
    "    confidence: logprob\n    shadow: {rate: 1.0, tier: flagship}\n  - id: eu-data",
    1,
)


def test_an_accepted_cheap_answer_is_compared_with_the_shadow_tier_and_never_returned(model_server, workers):
    assert SHADOWED != POLICY
    setup = governed(model_server.base_url, policy_source=SHADOWED)
    workers.start()
    job = finished(setup.submit("[task:classification] [confidence:nano=0.95,flagship=0.95] shadow me"))
    assert job.status == JobStatus.COMPLETED and job.final_tier == "nano"
    compared = wait_for(
        lambda: [e.body for e in events(job) if e.event_type == "shadow.compared"], message="the shadow comparison"
    )[0]
    assert compared["tier"] == "nano" and compared["shadow_tier"] == "flagship"
    assert compared["agreement"] in (0.0, 1.0)
    assert float(compared["shadow_cost_usd"]) > 0
    job.refresh_from_db()
    assert job.result["tier"] == "nano"  # the caller's answer is the nano one
    assert job.total_cost_usd == job.steps.get().cost_usd  # the shadow's cost is not the job's
