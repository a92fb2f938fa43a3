"""A replay tells an admin what the live system does: a job whose own cost cap ended its cascade is run
live through a real worker, then replayed under the same policy version — from its recorded steps and by
re-executing it against the same model server — and both replays stop where the worker stopped, for the
same reason."""

from __future__ import annotations

from decimal import Decimal

import pytest

from evaluation.history_runs import history_run
from routing.models import JobStatus, StepOutcome
from tests.support.governed import governed
from tests.support.workers import finished

pytestmark = pytest.mark.slow

# Under the test policy's cheap-first rule (nano below 0.80 and mini below 0.70 escalate), nano and mini
# are both unsure: only the flagship's answer would be confident.
UNSURE = "[task:classification] [confidence:nano=0.5,mini=0.6,flagship=0.9] Which queue does this go to?"


def test_replays_stop_where_the_job_cost_cap_stopped_the_live_cascade(model_server, workers):
    setup = governed(model_server.base_url)
    live_version = setup.policy.versions.get()
    workers.start()

    # Without a cap the job climbs to the flagship; its steps say what nano and mini cost.
    uncapped = finished(setup.submit(UNSURE))
    assert [(step.tier, step.outcome) for step in uncapped.steps.order_by("index")] == [
        ("nano", StepOutcome.ESCALATED),
        ("mini", StepOutcome.ESCALATED),
        ("flagship", StepOutcome.ACCEPTED),
    ]
    nano, mini, _ = (step.cost_usd for step in uncapped.steps.order_by("index"))
    # A cap over nano's cost and under nano's and mini's together: reached by the mini step.
    cap = nano + mini / 2

    capped = finished(setup.submit(UNSURE, constraints={"cost_cap_usd": float(cap)}))
    assert capped.status == JobStatus.COMPLETED
    plan = capped.route["plan"]
    assert [step["tier"] for step in plan["steps"]] == ["nano", "mini", "flagship"]  # the router kept the flagship
    steps = list(capped.steps.order_by("index"))
    assert [(step.tier, step.outcome) for step in steps] == [("nano", StepOutcome.ESCALATED), ("mini", "accepted")]
    # The cap, not the answer's confidence, kept mini's answer.
    assert steps[1].confidence == pytest.approx(0.6, abs=1e-6)
    assert steps[1].confidence < steps[1].threshold == 0.7
    assert steps[0].cost_usd < Decimal(str(float(cap))) <= capped.total_cost_usd
    assert capped.final_tier == "mini"

    routing, _ = history_run(version=live_version, application=setup.application.slug, mode="routing")
    full, _ = history_run(
        version=live_version, application=setup.application.slug, mode="full", cost_cap_usd=Decimal("5")
    )

    for report in (routing, full):
        assert (report["jobs"], report["decided"], report["unknown_reasons"]) == (2, 2, {}), report["mode"]
        # Both jobs end where they ended live: the capped one at mini, stopped by its cost cap.
        assert (report["final_tier_changed"], report["final_tier_transitions"]) == (0, {}), report["mode"]
        assert report["draft_stops"] == {"cost_cap": 1, "final_step": 1}, report["mode"]
        assert report["escalation_rate"]["draft"] == report["escalation_rate"]["original"], report["mode"]
    assert routing["cost_usd"]["draft"] == pytest.approx(routing["cost_usd"]["original"], abs=1e-12)
    assert full["executed"] == 2 and full["not_run_cost_cap"] == 0
