"""Labels from live history (reviews, shadow comparisons), their reliability and curve in history reports,
and calibrate_thresholds --from-history: a Learn-then-Test guarantee on what the labels can support."""

from __future__ import annotations

import math
import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import LedgerEvent
from evaluation.calibration.live import labels_needed, lowest_certified
from evaluation.history_runs import history_run
from routing.models import Evaluation, EvaluationKind, PolicyVersion
from routing.models.approvals import ApprovalStatus, DecisionKind
from routing.services.policies import policy_version_create
from tests.support.evaluations import past_job, reviewed, run_json, shadow_compared
from tests.support.governed import POLICY, governed

NANO_MINI = [("nano", 0.6, False, "X", 0.0001), ("mini", 0.9, True, "B", 0.0004)]


def binomial_tail(losses: int, n: int, p: float) -> float:
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(losses + 1))


# ---------------------------------------------------------------- the procedure, without the database


def test_over_repeated_samples_the_certified_threshold_meets_the_target_as_often_as_promised() -> None:
    """Confidence uniform on [0.5, 1] (the accepted answers at threshold 0.5), right with probability
    equal to the confidence: R(lambda) = P(c >= lambda, wrong | c >= 0.5) = (1 - lambda)^2 exactly."""
    alpha, delta, runs = 0.05, 0.1, 400
    failures, chosen = 0, []
    for seed in range(runs):
        rng = random.Random(seed)
        pairs = []
        for _ in range(300):
            confidence = round(rng.uniform(0.5, 1.0), 4)
            pairs.append((confidence, rng.random() < confidence))
        threshold, _ = lowest_certified(pairs, alpha=alpha, delta=delta, floor=0.5)
        assert threshold is not None
        chosen.append(threshold)
        failures += (1 - threshold) ** 2 > alpha
    # Promised: P(R(chosen) > alpha) <= delta. Allow the binomial noise of 400 runs (about 2.3 sd).
    assert failures / runs <= delta + 2.3 * math.sqrt(delta * (1 - delta) / runs)
    # And not vacuous: the lowest safe threshold is 0.7764; the chosen ones are close to it, not all 1.
    assert sorted(chosen)[runs // 2] < 0.9
    assert min(chosen) >= 0.7


def test_too_few_labels_certify_nothing() -> None:
    needed = labels_needed(0.03, 0.05)
    assert (0.97**needed <= 0.05) and (0.97 ** (needed - 1) > 0.05)
    right = [(0.99, True)] * (needed - 1)
    assert lowest_certified(right, alpha=0.03, delta=0.05, floor=0.8) == (None, 1)
    assert lowest_certified([*right, (0.99, True)], alpha=0.03, delta=0.05, floor=0.8)[0] == 0.8


def test_it_never_goes_below_the_threshold_in_force() -> None:
    pairs = [(0.9, True)] * 400
    assert lowest_certified(pairs, alpha=0.05, delta=0.05, floor=0.85) == (0.85, 16)


# ---------------------------------------------------------------- labels from the database


@pytest.fixture
def setup(db):
    return governed("http://127.0.0.1:9/v1")


@pytest.mark.django_db
def test_reviews_and_shadow_comparisons_become_labels_and_the_history_report_shows_them(setup) -> None:
    live = setup.policy.versions.get()
    app, thresholds = setup.application, {"nano": 0.8}

    def job(steps, name):
        return past_job(app, live, f"[task:classification] {name}", steps, thresholds=thresholds)

    approved = job([("nano", 0.95, True, "A", 0.0001)], "approved")
    reviewed(approved, ApprovalStatus.APPROVED, kind=DecisionKind.APPROVE)
    overridden = job(NANO_MINI, "overridden")
    cheap = overridden.steps.get(index=0)
    reviewed(overridden, ApprovalStatus.OVERRIDDEN, kind=DecisionKind.OVERRIDE, picked=cheap)
    rejected = job([("nano", 0.85, True, "C", 0.0001)], "rejected")
    reviewed(rejected, ApprovalStatus.REJECTED, kind=DecisionKind.REJECT)
    escalated = job([("nano", 0.85, True, "D", 0.0001)], "escalated")
    reviewed(escalated, ApprovalStatus.ESCALATED, kind=DecisionKind.ESCALATE)
    agree = job([("nano", 0.92, True, "E", 0.0001)], "agree")
    shadow_compared(agree, agree.steps.get(), agree=True)
    disagree = job([("nano", 0.82, True, "F", 0.0001)], "disagree")
    shadow_compared(disagree, disagree.steps.get(), agree=False)
    both = job([("nano", 0.9, True, "G", 0.0001)], "both")
    shadow_compared(both, both.steps.get(), agree=False)
    reviewed(both, ApprovalStatus.APPROVED, kind=DecisionKind.APPROVE)

    report, _ = history_run(version=live, application=app.slug)

    labels = report["labels"]
    assert labels["by_source"] == {"review": 4, "shadow": 2}
    assert labels["by_outcome"] == {"review_right": 3, "review_wrong": 1, "shadow_right": 1, "shadow_wrong": 1}
    assert labels["unlabelled_reviews"] == {"escalate": 1, "reject": 1}
    assert labels["shadow_superseded_by_review"] == 1  # the reviewer's approval wins
    nano = report["reliability"]["nano"]
    # nano answers: 0.95 right, 0.6 right (picked by the overriding reviewer), 0.92 right, 0.82 wrong, 0.9 right
    assert nano["answers"] == 5 and nano["sources"] == {"review": 3, "shadow": 2}
    # Bins: [0.6, 0.7) one right at 0.6; [0.8, 0.9) one wrong at 0.82; [0.9, 1] three right, mean 0.9233.
    assert nano["ece"] == pytest.approx((0.4 + 0.82 + 3 * (1 - (0.95 + 0.92 + 0.9) / 3)) / 5, abs=1e-6)
    assert report["reliability"]["mini"]["answers"] == 1 and report["reliability"]["mini"]["bins"][0]["accuracy"] == 0
    # nano and mini both escalate in cheap-first: a 21 x 21 grid; here mini stays at 0.7.
    assert len(report["curve"]) == 21 * 21
    strict_mini = next(p for p in report["curve"] if p["thresholds"] == {"nano": 0.8, "mini": 1.0})
    assert strict_mini["jobs"] == 4  # 'overridden' would send mini's 0.9 on to a flagship it never called
    curve = {point["thresholds"]["nano"]: point for point in report["curve"] if point["thresholds"]["mini"] == 0.7}
    # At the threshold in force (0.8) the five labelled jobs answer as they did: 3 right ('overridden' is
    # wrong: its final mini answer was overridden; 'disagree' is wrong by its shadow label).
    assert curve[0.8]["jobs"] == 5 and curve[0.8]["accuracy"] == pytest.approx(3 / 5)
    assert curve[0.8]["relative_cost"] == pytest.approx(1.0)
    # At 0.95 the shadowed nano answers 0.92 and 0.82 escalate to their shadow tier, mini (right by the
    # shadow label's definition, and paid for); 'both' (0.9, reviewed) would reach a mini it never called.
    assert curve[0.95]["jobs"] == 4
    assert curve[0.95]["accuracy"] == pytest.approx(3 / 4)
    assert curve[0.95]["relative_cost"] == pytest.approx((0.0001 + 0.0005 + 2 * 0.0005) / (0.0001 + 0.0005 + 0.0002))


def many_shadowed(setup, count: int = 200, floor: float = 0.8) -> None:
    """Shadowed nano answers c = 0.800, 0.801, ..., every other one below 0.86 wrong, all others right."""
    live = setup.policy.versions.get()
    for index in range(count):
        confidence = round(floor + index / 1000, 3)
        job = past_job(
            setup.application,
            live,
            f"[task:classification] ticket {index}",
            [("nano", confidence, True, "A", 0.0001)],
            thresholds={"nano": floor},
        )
        shadow_compared(job, job.steps.get(), agree=not (confidence < 0.86 and index % 2 == 0))


def expected_threshold(alpha: float, delta: float) -> float:
    """Computed here from the definition: the sequence 1.00, 0.99, ... stops at the first p-value > delta."""
    confidences = [round(0.8 + index / 1000, 3) for index in range(200)]
    wrong = [c for index, c in enumerate(confidences) if c < 0.86 and index % 2 == 0]
    chosen = None
    for step in range(21):
        threshold = round(1 - step / 100, 2)
        if binomial_tail(sum(1 for c in wrong if c >= threshold), 200, alpha) > delta:
            break
        chosen = threshold
    return chosen


@pytest.mark.django_db
def test_from_history_it_certifies_per_rule_and_writes_a_draft_with_the_evidence(setup) -> None:
    many_shadowed(setup)
    live = setup.policy.versions.get()
    expected = expected_threshold(alpha=0.1, delta=0.05)
    assert expected == 0.84

    summary = run_json(
        "calibrate_thresholds", "--from-history", "--policy-version", str(live.pk), "--application",
        setup.application.slug, "--target-relative", "0.9", "--holdout", "0", "--policy-name", "live-calibrated",
    )  # fmt: skip

    assert summary["certified"] is True and summary["jobs"] == 200
    assert summary["thresholds"] == {"cheap-first": {"nano": expected}}
    (certificate,) = summary["certificates"]
    assert (certificate["rule"], certificate["tier"], certificate["threshold_in_force"]) == ("cheap-first", "nano", 0.8)
    assert certificate["calibration_labels"] == 200 and certificate["risk"] == pytest.approx(10 / 200)
    assert certificate["risk_upper_bound"] <= 0.1 + 1e-6
    assert "not review selection" in summary["guarantee"]
    draft = PolicyVersion.objects.get(pk=summary["policy_version"])
    rules = {rule["id"]: rule for rule in draft.document["rules"]}
    assert rules["cheap-first"]["escalate_below"] == {"nano": 0.84, "mini": 0.7}
    assert rules["default"]["escalate_below"] == {"mini": 0.75}  # no label: untouched
    evaluation = Evaluation.objects.get(pk=summary["evaluation"])
    assert (evaluation.kind, evaluation.policy_version) == (EvaluationKind.CALIBRATION, draft)
    assert evaluation.parameters["source"] == "history"
    assert f"evaluation #{evaluation.pk}" in draft.comment
    assert LedgerEvent.objects.filter(event_type="evaluation.recorded", subject_policy_version=str(draft.pk)).exists()


@pytest.mark.django_db
def test_with_too_few_labels_it_says_so_and_writes_nothing(setup) -> None:
    many_shadowed(setup, count=40)
    live = setup.policy.versions.get()
    versions = PolicyVersion.objects.count()
    summary = run_json(
        "calibrate_thresholds", "--from-history", "--policy-version", str(live.pk), "--application",
        setup.application.slug, "--target-relative", "0.97",
    )  # fmt: skip
    assert summary["certified"] is False and summary["policy_version"] is None
    assert "too few labels: 40 calibration labels, a loss-free sample needs at least 99" in summary["reason"]
    assert PolicyVersion.objects.count() == versions


@pytest.mark.django_db
def test_review_labels_count_only_when_asked_for(setup) -> None:
    live = setup.policy.versions.get()
    for index in range(3):
        steps = [("nano", 0.9, True, "A", 0.0001)]
        job = past_job(setup.application, live, f"q {index}", steps, thresholds={"nano": 0.8})
        reviewed(job, ApprovalStatus.APPROVED, kind=DecisionKind.APPROVE)
    base = ["--from-history", "--policy-version", str(live.pk), "--application", setup.application.slug]
    shadow_only = run_json("calibrate_thresholds", *base, "--target-relative", "0.9")
    assert "no shadow label on an accepted answer" in shadow_only["reason"]
    pooled = run_json("calibrate_thresholds", *base, "--target-relative", "0.9", "--label-source", "all")
    assert pooled["certificates"][0]["labels"] == 3 and pooled["parameters"]["label_sources"] == ["shadow", "review"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give --outcomes FILE --tiers"),
        (["--outcomes", "x.jsonl", "--from-history"], "two different sources"),
        (["--from-history"], "needs --policy-version"),
        (["--from-history", "--policy-version", "1", "--tiers", "mini=a"], "--tiers only apply to --outcomes"),
        (["--from-history", "--policy-version", "1", "--in-memory"], "--in-memory only apply to --outcomes"),
        (["--from-history", "--policy-version", "1", "--per-rule"], "--per-rule only apply to --outcomes"),
        (["--from-history", "--policy-version", "1", "--limit", "0"], "--limit must be at least 1"),
        (["--from-history", "--policy-version", "999999"], "no policy version has id 999999"),
        (["--from-history", "--policy-version", "1", "--since", "yesterday"], "not an ISO date"),
        (["--outcomes", "x.jsonl"], "--outcomes needs --tiers"),
        (["--outcomes", "x.jsonl", "--tiers", "mini=a", "--since", "2026-01-01"], "--since only apply to"),
        (["--outcomes", "x.jsonl", "--tiers", "mini=a", "--policy-version", "3"], "--policy-version only apply"),
    ],
)
def test_bad_combinations_of_sources_are_clear_errors(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("calibrate_thresholds", *arguments, "--target-relative", "0.97")


@pytest.mark.django_db
def test_a_draft_of_another_policy_gets_its_labels_from_that_policys_jobs_only(setup) -> None:
    many_shadowed(setup, count=50)
    other = governed("http://127.0.0.1:9/v1", policy_source=POLICY)
    version = other.policy.versions.get()
    draft = policy_version_create(policy=other.policy, source=POLICY, author=None, parent=version)
    summary = run_json(
        "calibrate_thresholds", "--from-history", "--policy-version", str(draft.pk), "--target-relative", "0.9"
    )
    assert summary["jobs"] == 0 and summary["certified"] is False


def test_an_uncertified_tier_says_how_many_labels_would_certify_it_at_the_rate_seen() -> None:
    from evaluation.calibration.binomial import binomial_p_value, trials_to_reject

    # 1% wrong among the answers accepted at 1.00, target 3%: a finite number, and it really certifies.
    more = trials_to_reject(0.01, 0.03, 0.05)
    assert more is not None and binomial_p_value(math.floor(more * 0.01), more, 0.03) <= 0.05
    assert binomial_p_value(math.floor(more * 0.9 * 0.01), round(more * 0.9), 0.03) > 0.05
    assert trials_to_reject(0.04, 0.03, 0.05) is None  # worse than the target: never
