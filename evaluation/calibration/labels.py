"""Labels from live history: which past answers were right, as far as anyone found out.

Two sources, one label per answer (a reviewer's verdict wins over a shadow comparison of the same step):
- **review** — a held job's approval request, once resolved, labels the answer that was held (the
  accepted step of that attempt): *approved* → right; *overridden* → wrong, and when the reviewer picked
  another step's output instead, that step → right. A *rejection* is no label: it refuses the action, and
  a right answer is rejected when the action is not allowed (a correct refund over a limit); counting it
  as wrong would mix policy into accuracy. An *escalation* (re-run higher) expresses doubt, not a
  verdict, and an *expiry* nobody's judgement: neither is a label. All are counted under `unlabelled`.
- **shadow** — a `shadow.compared` event labels the accepted cheap answer: right when the shadow tier's
  answer agrees (agreement 1), wrong otherwise. "Right" here means "what the higher tier says", a proxy.

Who gets labelled is not random for reviews: approval rules choose which answers are held (often the
low-confidence ones), so review labels describe the held answers, not the traffic. Shadow sampling is
random at the rule's rate among accepted answers, so shadow labels are a uniform sample of those.

`history_curve` is the cost/quality curve from labelled past jobs (see its docstring for what its
accuracy means); `live_reliability` the reliability diagram of each tier's live confidences.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from audit.models import LedgerEvent
from evaluation.calibration.curve import Thresholds, sweep
from evaluation.calibration.reliability import reliability
from routing.decide import cascade
from routing.decide.router import PlanStep
from routing.decide.tiers import tier_rank
from routing.execute.facts import cost_cap
from routing.models import ApprovalDecision, Job, Step, StepOutcome
from routing.models.approvals import ApprovalStatus, DecisionKind
from routing.selectors import steps_walked

REVIEW, SHADOW = "review", "shadow"
UNLABELLED = {
    ApprovalStatus.REJECTED: "reject",
    ApprovalStatus.ESCALATED: "escalate",
    ApprovalStatus.EXPIRED: "expired",
    ApprovalStatus.PENDING: "pending",
    ApprovalStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class Label:
    job_id: str
    step_id: int
    rule_id: str | None
    tier: str
    confidence: float | None
    threshold: float | None  # the escalation threshold in force when the answer was scored
    correct: bool
    source: str
    accepted: bool  # the cascade kept this answer (an overriding reviewer may pick an escalated one)
    shadow_tier: str | None = None
    shadow_cost_usd: float = 0.0


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    unlabelled: dict[str, int]
    superseded: int  # shadow labels of answers a reviewer also judged

    def by_step(self) -> dict[int, Label]:
        return {label.step_id: label for label in self.labels}

    def to_record(self) -> dict[str, Any]:
        counts = Counter(label.source for label in self.labels)
        outcomes = Counter(f"{label.source}_{'right' if label.correct else 'wrong'}" for label in self.labels)
        return {
            "total": len(self.labels),
            "by_source": {source: counts.get(source, 0) for source in (REVIEW, SHADOW)},
            "by_outcome": dict(sorted(outcomes.items())),
            "by_tier": dict(sorted(Counter(label.tier for label in self.labels).items())),
            "unlabelled_reviews": dict(sorted(self.unlabelled.items())),
            "shadow_superseded_by_review": self.superseded,
        }


def rule_of(job: Job) -> str | None:
    return ((job.route or {}).get("plan") or {}).get("rule_id")


def _held_step(steps: Sequence[Step], request) -> Step | None:
    """The accepted step the request was about: the last one recorded before it (each attempt accepts once)."""
    accepted = [
        step for step in steps if step.outcome == StepOutcome.ACCEPTED and step.created_at <= request.created_at
    ]
    return max(accepted, key=lambda step: (step.created_at, step.pk), default=None)


def _label(job: Job, step: Step, correct: bool, source: str, **extra: Any) -> Label:
    accepted = step.outcome == StepOutcome.ACCEPTED
    return Label(
        str(job.pk), step.pk, rule_of(job), step.tier, step.confidence, step.threshold, correct, source, accepted,
        **extra,
    )  # fmt: skip


def collect_labels(jobs: Sequence[Job]) -> LabelSet:
    """The labels of these jobs' answers (jobs with steps and approval_requests prefetched)."""
    steps_of = {str(job.pk): list(job.steps.all()) for job in jobs}
    overrides: dict[int, int | None] = {}
    decisions = ApprovalDecision.objects.filter(request__job__in=[job.pk for job in jobs], kind=DecisionKind.OVERRIDE)
    for decision in decisions.only("request_id", "override"):
        overrides[decision.request_id] = (decision.override or {}).get("step")
    review: dict[int, Label] = {}
    unlabelled: Counter[str] = Counter()
    for job in jobs:
        steps = steps_of[str(job.pk)]
        for request in job.approval_requests.all():
            if request.status in UNLABELLED:
                unlabelled[UNLABELLED[request.status]] += 1
                continue
            held = _held_step(steps, request)
            if held is None:
                unlabelled["no_step"] += 1
                continue
            picked = overrides.get(request.pk) if request.status == ApprovalStatus.OVERRIDDEN else None
            if request.status == ApprovalStatus.APPROVED or picked == held.pk:
                review[held.pk] = _label(job, held, True, REVIEW)
                continue
            review[held.pk] = _label(job, held, False, REVIEW)
            chosen = next((step for step in steps if step.pk == picked), None)
            if chosen is not None:
                review[chosen.pk] = _label(job, chosen, True, REVIEW)
    shadow: dict[int, Label] = {}
    by_id = {step.pk: (job, step) for job in jobs for step in steps_of[str(job.pk)]}
    events = LedgerEvent.objects.filter(event_type="shadow.compared", subject_job__in=list(steps_of))
    for event in events.order_by("id"):
        body, found = event.body, by_id.get(int(event.subject.get("step") or 0))
        if found is None or body.get("agreement") is None:
            continue
        job, step = found
        shadow[step.pk] = _label(
            job,
            step,
            body["agreement"] >= 1.0,
            SHADOW,
            shadow_tier=body.get("shadow_tier"),
            shadow_cost_usd=float(Decimal(str(body.get("shadow_cost_usd") or 0))),
        )
    superseded = len(shadow.keys() & review.keys())
    merged = {**shadow, **review}
    ordered = sorted(merged.values(), key=lambda label: (label.job_id, label.step_id))
    return LabelSet(tuple(ordered), dict(unlabelled), superseded)


def live_reliability(labels: LabelSet, *, bins: int = 10) -> dict[str, dict[str, Any]]:
    """Per tier: the reliability bins and ECE of the live confidences against their labels."""
    pairs: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    without: Counter[str] = Counter()
    for label in labels.labels:
        if label.confidence is None:
            without[label.tier] += 1
        else:
            pairs[label.tier].append((label.confidence, label.correct))
    report = {}
    for tier in sorted(pairs.keys() | without.keys(), key=lambda name: tier_rank(name) or 0):
        entry = reliability(pairs[tier], bins=bins)
        entry["unbinned"] = without[tier]
        entry["sources"] = dict(Counter(label.source for label in labels.labels if label.tier == tier))
        report[tier] = entry
    return report


@dataclass(frozen=True)
class WalkStep:
    """One answer of a labelled job, as the curve's walk reads it: a recorded step, or the shadow call."""

    tier: str
    confidence: float | None
    threshold: float | None  # the one in force when it was scored (None for the shadow call)
    cost_usd: Decimal
    label: bool | None


@dataclass(frozen=True)
class LabelledJob:
    """A labelled past job as the curve walks it, by the walk a worker uses (routing.decide.cascade,
    the job's cost cap included), over the steps its cascade walked (routing.selectors.steps_walked: a
    later attempt resumes from an earlier one's recorded steps):

    - a tier with a recorded answer answers with its recorded confidence and cost;
    - a tier that failed in the job is unavailable: the walk moves on, as the worker's did;
    - a tier the job never called is unknown, and so is a recorded answer without a confidence that the
      walk would have to judge (a worker always records one): the outcome is then not known, never guessed;
    - the job's cost cap (`cost_cap_usd`, from its constraints) ends the cascade where the recorded costs
      reach it, keeping that step's answer, as it did live.

    The shadow call: when the next tier of the plan after the answer that was kept is the shadow tier
    and the label is a shadow label, the shadow answer is one more step (right by the shadow label's
    definition: it is the answer the cheap one was compared with). It was never scored, so it has no
    confidence to judge; but a shadow label defines right as "what the shadow tier says", so tiers above
    it are beyond what the label can judge, and the walk over this job ends at the shadow tier: the plan
    walked is cut after it, and its answer, the last, is final — kept whatever its confidence, as the
    last step's answer always is. (`plan_tiers` stays the whole plan: it says which tiers escalate.)"""

    plan_tiers: tuple[str, ...]
    steps: tuple[WalkStep, ...]  # the walked steps, in plan order
    original_cost: float
    shadow: WalkStep | None = None
    failed_tiers: frozenset[str] = frozenset()  # tiers that failed in the last attempt
    cost_cap_usd: Decimal | None = None
    _answers: dict[str, WalkStep] = field(init=False, repr=False, compare=False)
    _own_gates: tuple[PlanStep, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # What every walk over this job shares, worked out once: the curve walks it once per setting.
        answers = {step.tier: step for step in self.steps}
        tiers = self.plan_tiers
        if self.shadow is not None:
            answers[self.shadow.tier] = self.shadow
            tiers = tiers[: tiers.index(self.shadow.tier) + 1]
        own = tuple(PlanStep(tier, (), answers[tier].threshold if tier in answers else None, "") for tier in tiers)
        object.__setattr__(self, "_answers", answers)
        object.__setattr__(self, "_own_gates", own)

    def walk(self, gates: Mapping[str, PlanStep]) -> cascade.Walk:
        """The walk under `gates` (tier -> a step carrying its threshold); a tier without a gate keeps
        the threshold recorded with its answer."""
        plan = [gates.get(own.tier) or own for own in self._own_gates]
        return cascade.cascade_walk(plan, self._recorded, cost_cap_usd=self.cost_cap_usd)

    def _recorded(self, index: int, step: PlanStep) -> cascade.StepAnswer:
        answer = self._answers.get(step.tier)
        if answer is None:
            if step.tier in self.failed_tiers:
                return cascade.Unavailable(f"{step.tier} failed in the job")
            return cascade.Unknown(f"{step.tier} was never called in the job")
        if answer.confidence is None:
            if index < len(self._own_gates) - 1:
                return cascade.Unknown(f"{step.tier}'s answer has no recorded confidence")
            # The last step's answer is final: the walk never reads its confidence (0.0, as a worker scores
            # an answer it cannot score).
            return cascade.Answered(0.0, answer.cost_usd, answer)
        return cascade.Answered(answer.confidence, answer.cost_usd, answer)

    def outcome(self, gates: Mapping[str, PlanStep]) -> tuple[bool, float] | None:
        """(right, cost) of the answer the walk keeps, or None when that is not known: the walk reached
        a tier the job never called, or kept an answer nobody labelled."""
        walk = self.walk(gates)
        final = walk.final
        answer = final.result.answer if final is not None and isinstance(final.result, cascade.Answered) else None
        if answer is None or answer.label is None:
            return None
        return answer.label, float(walk.total_cost)


def labelled_jobs(jobs: Sequence[Job], labels: LabelSet) -> list[LabelledJob]:
    by_step = labels.by_step()
    walked = []
    for job in jobs:
        recorded = list(job.steps.all())
        last = steps_walked(recorded)
        if not last or not any(step.pk in by_step for step in last):
            continue
        attempt = last[-1].attempt
        plan = tuple(entry["tier"] for entry in ((job.route or {}).get("plan") or {}).get("steps", []))
        if not plan:
            continue
        walk = [
            WalkStep(
                step.tier,
                step.confidence,
                step.threshold,
                step.cost_usd,
                by_step[step.pk].correct if step.pk in by_step else None,
            )
            for step in last
        ]
        label = by_step.get(last[-1].pk)
        position = plan.index(last[-1].tier) if last[-1].tier in plan else -1
        shadow = None
        next_tier = plan[position + 1] if 0 <= position < len(plan) - 1 else None
        if label is not None and label.source == SHADOW and label.shadow_tier and next_tier == label.shadow_tier:
            shadow = WalkStep(label.shadow_tier, None, None, Decimal(str(label.shadow_cost_usd)), True)
        failed = frozenset(
            step.tier for step in recorded if step.outcome == StepOutcome.FAILED and step.attempt == attempt
        )
        original = math.fsum(float(step.cost_usd) for step in last)
        walked.append(LabelledJob(plan, tuple(walk), original, shadow, failed, cost_cap(job)))
    return walked


def history_curve(jobs: Sequence[Job], labels: LabelSet) -> list[dict[str, Any]]:
    """The curve from labelled past jobs. For each threshold setting, only the labelled jobs whose answer
    under it is known from what they recorded count (`jobs` says how many): the walk (a worker's, each
    job's cost cap included; see LabelledJob) must stop on a step that ran and was labelled. `accuracy` is
    the share of those answers judged right — approved by a reviewer, or (shadow) agreeing with the shadow
    tier, whose own answer counts as right; `relative_cost` is what the walk pays over what the same jobs
    originally paid."""
    walked = labelled_jobs(jobs, labels)
    tiers = sorted({tier for job in walked for tier in job.plan_tiers[:-1]}, key=lambda tier: tier_rank(tier) or 0)[:2]
    if not tiers:
        return []

    def evaluate(thresholds: Thresholds) -> dict[str, Any] | None:
        gates = {tier: PlanStep(tier, (), value, "") for tier, value in thresholds.items()}
        outcomes = [(job.outcome(gates), job.original_cost) for job in walked]
        known = [(outcome, original) for outcome, original in outcomes if outcome is not None]
        original = math.fsum(original for _, original in known)
        if not known or not original:
            return None
        return {
            "relative_cost": round(math.fsum(outcome[1] for outcome, _ in known) / original, 6),
            "accuracy": round(sum(outcome[0] for outcome, _ in known) / len(known), 6),
            "jobs": len(known),
        }

    return sweep(tiers, evaluate)


def live_evidence(jobs: Sequence[Job]) -> dict[str, Any]:
    """What a history report says about the jobs' labels: counts, reliability per tier, and the curve."""
    labels = collect_labels(jobs)
    return {
        "labels": labels.to_record(),
        "reliability": live_reliability(labels),
        "curve": history_curve(jobs, labels) if labels.labels else [],
    }
