"""replay_history --mode full: past jobs' inputs re-executed under a draft against the real local model
server, within a cost cap that is never exceeded, nothing written about the jobs, the spend on the ledger."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from audit import payloads
from audit.ledger import Actor, canonical_json
from audit.models import LedgerEvent
from evaluation.history_runs import history_run
from evaluation.replay.reexecute import INPUT_ERASED, NOT_RUN, worst_case_usd
from routing.models import Evaluation, Job, Step
from routing.services.policies import policy_version_create
from tests.support.evaluations import LIMITED, LOWER, content, past_job, run_json
from tests.support.governed import governed

HIGHER = LIMITED.replace("{nano: 0.80, mini: 0.70}", "{nano: 0.99, mini: 0.70}", 1)


@pytest.fixture
def past(model_server, db):
    """Six classification jobs run under the live policy (nano threshold 0.80): four had a nano confidence
    of 0.75 and were escalated to mini, two were accepted at nano (0.95)."""
    setup = governed(model_server.base_url)
    live = setup.policy.versions.get()
    jobs = []
    for index in range(6):
        if index < 4:
            steps = [("nano", 0.75, False, "A", 0.0001), ("mini", 0.9, True, "B", 0.0004)]
        else:
            steps = [("nano", 0.95, True, "A", 0.0001)]
        jobs.append(past_job(setup.application, live, content(index, 0.75 if index < 4 else 0.95), steps))

    def draft(source: str):
        return policy_version_create(policy=setup.policy, source=source, author=None, parent=live)

    model_server.reset_stats()
    return setup, jobs, draft


def calls_by_tier(model_server, setup) -> dict[str, int]:
    by_model = model_server.stats()["by_model"]
    models = {tier: setup.deployments[tier].model for tier in ("nano", "mini", "flagship")}
    return {tier: by_model.get(model, {}).get("200", 0) for tier, model in models.items()}


@pytest.mark.django_db
def test_a_lower_threshold_stops_escalations_and_a_higher_one_adds_them(past, model_server) -> None:
    setup, jobs, draft = past
    lower = draft(LOWER)
    counts = (Job.objects.count(), Step.objects.count())
    before = {job.pk: (job.status, job.version, job.final_tier) for job in jobs}
    last_event = LedgerEvent.objects.order_by("-id").values_list("id", flat=True).first()
    progress: list[tuple[int, int]] = []

    report, evaluation = history_run(
        version=lower,
        application=setup.application.slug,
        mode="full",
        cost_cap_usd=Decimal("1"),
        progress=lambda done, total: progress.append((done, total)),
    )

    assert (report["mode"], report["executed"], report["decided"], report["not_run_cost_cap"]) == ("full", 6, 6, 0)
    assert report["stopped_at_cap"] is False
    assert report["escalation_rate"]["original"]["nano"] == pytest.approx(4 / 6, abs=1e-6)
    assert report["escalation_rate"]["draft"]["nano"] == 0.0
    assert report["final_tier_transitions"] == {"mini->nano": 4}
    assert calls_by_tier(model_server, setup) == {"nano": 6, "mini": 0, "flagship": 0}
    assert 0 < report["spent_usd"] <= report["cost_cap_usd"] == 1.0
    assert report["calls"]["over_worst_case"] == 0
    assert progress[0] == (0, 6) and progress[-1] == (6, 6)
    # Nothing about the jobs was written: no job, no step, no event; the originals are as they were.
    assert (Job.objects.count(), Step.objects.count()) == counts
    assert {job.pk: (job.status, job.version, job.final_tier) for job in Job.objects.filter(pk__in=before)} == before
    events = list(LedgerEvent.objects.filter(id__gt=last_event))
    assert [event.event_type for event in events] == ["evaluation.recorded"]
    recorded = events[0].body
    assert recorded["spent_usd"] == str(report["spent_usd"]) and recorded["evaluation"] == evaluation.pk
    evidence = canonical_json({"parameters": evaluation.parameters, "report": evaluation.report}).encode()
    assert recorded["evidence_sha256"] == hashlib.sha256(evidence).hexdigest()
    assert evaluation.parameters["mode"] == "full" and evaluation.report["spent_usd"] == report["spent_usd"]

    model_server.reset_stats()
    report, _ = history_run(
        version=draft(HIGHER), application=setup.application.slug, mode="full", cost_cap_usd=1.0
    )
    assert report["escalation_rate"]["draft"]["nano"] == 1.0
    assert report["final_tier_transitions"] == {"nano->mini": 2}
    assert calls_by_tier(model_server, setup) == {"nano": 6, "mini": 6, "flagship": 0}


@pytest.mark.django_db
def test_a_small_cap_is_never_exceeded_and_the_rest_is_not_run(past, model_server) -> None:
    setup, jobs, draft = past
    request = {"messages": jobs[0].request["messages"], "logprobs": True, "max_tokens": 64}
    worst = worst_case_usd([setup.deployments["nano"]], request, 10)
    # Actual calls cost about a tenth of their worst case: room for the first few, not for all six.
    cap = worst * Decimal("1.3")

    report, _ = history_run(version=draft(LOWER), application=setup.application.slug, mode="full", cost_cap_usd=cap)

    assert report["stopped_at_cap"] is True
    assert report["spent_usd"] <= float(cap)
    assert report["executed"] >= 2 and report["not_run_cost_cap"] >= 1
    assert report["executed"] + report["not_run_cost_cap"] == 6
    assert report["unknown_reasons"] == {NOT_RUN: report["not_run_cost_cap"]}
    # It stopped only because the next call's worst case no longer fitted.
    assert Decimal(str(report["cost_cap_usd"])) - Decimal(str(report["spent_usd"])) < worst
    assert sum(calls_by_tier(model_server, setup).values()) == report["calls"]["paid"] == report["executed"]


@pytest.mark.django_db
def test_an_erased_input_is_unknown_and_never_sent(past, model_server) -> None:
    setup, jobs, draft = past
    payloads.erase(subject={"job": jobs[0].pk}, actor=Actor.system("test"), reason="DSAR-1")
    Job.objects.filter(pk=jobs[1].pk).update(request={"messages": [{"role": "user", "content": ""}]})

    report = run_json(
        "replay_history",
        "--policy-version",
        str(draft(LOWER).pk),
        "--application",
        setup.application.slug,
        "--mode",
        "full",
        "--cost-cap",
        "0.5",
    )

    assert report["unknown_reasons"] == {INPUT_ERASED: 2}
    assert (report["input_erased"], report["executed"], report["decided"]) == (2, 4, 4)
    assert calls_by_tier(model_server, setup)["nano"] == 4
    assert Evaluation.objects.get(pk=report["evaluation"]).report["input_erased"] == 2


@pytest.mark.django_db
def test_the_summary_says_what_a_full_replay_spent(past) -> None:
    setup, _, draft = past
    out, err = io.StringIO(), io.StringIO()
    version = str(draft(LOWER).pk)
    call_command(
        "replay_history", "--policy-version", version, "--application", setup.application.slug,
        "--mode", "full", "--cost-cap", "0.25", stdout=out, stderr=err,
    )  # fmt: skip
    assert "of $0.25; executed 6, not run (cost cap) 0, input erased 0" in out.getvalue()
    assert err.getvalue().endswith("6/6 jobs\n")


LIMIT = "\n    limits: {max_output_tokens: 64}"
AGREEMENT = LIMITED.replace("confidence: logprob" + LIMIT, "confidence: agreement" + LIMIT, 1)


@pytest.mark.django_db
def test_a_second_sample_for_agreement_is_reserved_and_paid_for_too(past, model_server) -> None:
    setup, jobs, draft = past
    assert AGREEMENT != LIMITED
    version = draft(AGREEMENT)
    report, _ = history_run(version=version, application=setup.application.slug, mode="full", cost_cap_usd=1)
    calls = sum(calls_by_tier(model_server, setup).values())
    assert report["executed"] == 6 and calls == report["calls"]["paid"] >= 12  # two samples per scored step
    assert report["calls"]["over_worst_case"] == 0

    # Room for one answer's worst case but not for the second sample's as well: the run stops after it.
    model_server.reset_stats()
    request = {"messages": jobs[0].request["messages"], "max_tokens": 64}
    worst = worst_case_usd([setup.deployments["nano"]], request, 10)
    report, _ = history_run(
        version=version, application=setup.application.slug, mode="full", cost_cap_usd=worst * Decimal("1.05")
    )
    assert (report["executed"], report["not_run_cost_cap"], report["calls"]["paid"]) == (0, 6, 1)
    assert report["stopped_at_cap"] is True and report["spent_usd"] <= report["cost_cap_usd"]
