"""Escalation thresholds calibrated from live history (`calibrate_thresholds --from-history`).

What live labels can support. Offline, every tier's answer to every item is known; live, only the answers
the cascade produced are, and a label exists only where someone looked (evaluation.calibration.labels). So
calibration is per rule and per escalating tier, on that tier's *accepted* answers, and never below the
threshold that was in force: an answer scored under it was escalated, was never shadowed, and nobody
knows whether it would have been right.

The risk, for one (rule, tier), with tau* the highest threshold in force among its labelled answers (so
every answer with confidence >= tau* was accepted, and equally eligible for a label), and lambda >= tau*:

    R(lambda) = P(confidence >= lambda and the answer is wrong | confidence >= tau*),   alpha = 1 - target

— the share of the answers the tier accepts today that it would still accept at lambda and that are
wrong ("wrong" = disagreeing with the shadow tier, or overridden by a reviewer). It is a 0/1 loss on i.i.d.
draws when labels are a uniform sample of those answers, which shadow sampling is by design (a set rate,
at random, among accepted answers), so the exact binomial (Clopper-Pearson) p-value of H(lambda):
R(lambda) > alpha is valid. Learn then Test (Angelopoulos, Bates, Candès, Jordan, Lei 2021,
arXiv:2110.01052) with fixed-sequence testing over lambda = 1.00, 0.99, ... down to tau* (R grows as
lambda falls) keeps the lambdas it rejects; the lowest kept is chosen. The pairs are tested at delta / k
(Bonferroni over the k pairs tried), so the whole draft's claims hold simultaneously with probability
>= 1 - delta. A held-out share of the labels (`holdout`, default 0) is not used to choose, only to report.

The same procedure as offline (evaluation.calibration.calibrate): Learn then Test, fixed-sequence, on the
loss of the target itself, L = r x [reference right] - [cascade right]. Here the reference is the label's
judge (the shadow tier, or the reviewer), right by definition, and an escalated answer is the judge's:
so L = [accepted at lambda and wrong] - (1 - r), and E[L] <= 0 is exactly R(lambda) <= alpha. That loss is
0/1 up to a constant, and for a 0/1 loss the exact binomial test is the most powerful one (uniformly, for
a one-sided null) — so it, not the four-cell test the offline loss needs, tests each lambda here.

When nothing is certified, the report says how many labels, arriving at the disagreement rate seen at
threshold 1.00, would certify it (`labels_to_certify`); none when that rate is already above alpha.

What the guarantee does not cover, and the report says so:
- review labels by default: approval rules choose which answers a reviewer sees (often the unsure
  ones), so they are not a random sample. With `label_source="all"` they are pooled in, and the claim then
  assumes that being reviewed is independent of being right given the confidence — false under a
  confidence-based hold rule;
- thresholds below tau* (no evidence) and jobs outside the window (drift);
- a tier's population shifting when the tier below changes its threshold (more jobs reach it);
- shadow labels measure agreement with the shadow tier, not the truth.
Too few labels for even lambda = 1.00 to be certified gives a "not certified" report with the reason,
never a threshold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluation.calibration.binomial import binomial_p_value, clopper_pearson_upper, trials_to_reject
from evaluation.calibration.labels import REVIEW, SHADOW, Label, LabelSet
from routing.decide.policy.document import PolicyDocument
from routing.decide.router import PlanStep

METHOD = (
    "Learn then Test (Angelopoulos et al. 2021), fixed-sequence over thresholds from 1.00 down to the one "
    "in force, exact binomial (Clopper-Pearson) p-values, Bonferroni over (rule, tier); risk = share of the "
    "tier's accepted answers still accepted and wrong <= 1 - target"
)
LABEL_SOURCES = {"shadow": (SHADOW,), "all": (SHADOW, REVIEW)}


def threshold_path(floor: float) -> list[float]:
    """1.00, 0.99, ... down to the lowest grid value at or above `floor`: fixed before seeing labels."""
    return [value for value in (round(1 - index / 100, 2) for index in range(101)) if value >= floor - 1e-9]


def losses_at(pairs: Sequence[tuple[float, bool]], threshold: float) -> int:
    gate = PlanStep("", (), threshold, "")
    return sum(1 for confidence, right in pairs if not right and gate.accepts(confidence))


def lowest_certified(
    pairs: Sequence[tuple[float, bool]], *, alpha: float, delta: float, floor: float
) -> tuple[float | None, int]:
    """The lowest threshold fixed-sequence testing certifies on `pairs` (confidence, right), and how many
    hypotheses it tested. None when not even 1.00 is certified."""
    chosen, tested = None, 0
    for threshold in threshold_path(floor):
        tested += 1
        if binomial_p_value(losses_at(pairs, threshold), len(pairs), alpha) > delta:
            break
        chosen = threshold
    return chosen, tested


def labels_needed(alpha: float, delta: float) -> int:
    """The fewest labels with which a loss-free sample certifies anything: (1 - alpha)^n <= delta."""
    return math.ceil(math.log(delta) / math.log1p(-alpha))


@dataclass(frozen=True)
class TierCertificate:
    rule: str
    tier: str
    labels: int
    calibration_labels: int
    holdout_labels: int
    threshold_in_force: float | None
    threshold: float | None
    tested: int
    risk: float | None = None
    risk_upper_bound: float | None = None
    holdout_risk: float | None = None
    escalation_share: float | None = None  # of the calibration answers, those the threshold now escalates
    reason: str = ""
    labels_to_certify: int | None = None  # when nothing is: labels that would certify 1.00 at the rate seen


@dataclass(frozen=True)
class LiveCalibration:
    certified: bool
    certificates: tuple[TierCertificate, ...]
    parameters: dict[str, Any]
    labels: dict[str, Any]
    reason: str = ""
    description: str = "Escalation thresholds calibrated from live history."
    rules: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(sorted(self.rule_thresholds())))

    def rule_thresholds(self) -> dict[str, dict[str, float]]:
        thresholds: dict[str, dict[str, float]] = {}
        for certificate in self.certificates:
            if certificate.threshold is not None:
                thresholds.setdefault(certificate.rule, {})[certificate.tier] = certificate.threshold
        return thresholds

    @property
    def guarantee(self) -> str:
        p = self.parameters
        return (
            f"with probability >= {p['confidence']:g} over the labelled sample, simultaneously for every "
            f"certified (rule, tier): of the answers the tier accepts at the threshold in force, at most "
            f"{p['alpha']:g} are still accepted at the calibrated threshold and wrong (labels: "
            f"{', '.join(p['label_sources'])}); it covers the jobs of the window as shadow sampling drew them, "
            "not thresholds below the one in force, not review selection, not drift"
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "certified": self.certified,
            "thresholds": self.rule_thresholds(),
            "method": METHOD,
            "guarantee": self.guarantee,
            "parameters": self.parameters,
            "labels": self.labels,
            "certificates": [asdict(certificate) for certificate in self.certificates],
            "reason": self.reason,
        }

    def comment(self, evaluation_pk: int, source_label: str) -> str:
        lines = [f"Thresholds calibrated from live history for {source_label}:"]
        for c in self.certificates:
            if c.threshold is not None:
                lines.append(
                    f"- {c.rule} / {c.tier}: {c.threshold:g} (was {c.threshold_in_force:g}; {c.calibration_labels} "
                    f"labels, risk <= {c.risk_upper_bound}, held out {c.holdout_risk})"
                )
        lines += [f"Evidence: evaluation #{evaluation_pk}.", f"Guarantee: {self.guarantee}."]
        return "\n".join(lines)


def escalating_tiers(document: PolicyDocument) -> dict[str, tuple[str, ...]]:
    """rule id -> the tiers of its cascade that can escalate (all but the last)."""
    return {rule.id: tuple(rule.cascade[:-1]) for rule in document.rules if len(rule.cascade) > 1}


def _certify(
    rule: str, tier: str, labels: Sequence[Label], *, alpha: float, delta: float, holdout: float, seed: int
) -> TierCertificate:
    usable = [label for label in labels if label.confidence is not None and label.threshold is not None]
    if not usable:
        return TierCertificate(rule, tier, len(labels), 0, 0, None, None, 0, reason="no labelled accepted answer")
    floor = max(label.threshold for label in usable)  # type: ignore[type-var]
    # Only answers every job in the window would have accepted: a common, fully labelled-eligible population.
    population = [(label.confidence, label.correct) for label in usable if label.confidence >= floor]  # type: ignore[operator]
    random.Random(f"{seed}:{rule}:{tier}").shuffle(population)
    held = round(len(population) * holdout)
    calibration, holdout_pairs = population[held:], population[:held]
    threshold, tested = lowest_certified(calibration, alpha=alpha, delta=delta, floor=floor)
    sizes = (len(labels), len(calibration), len(holdout_pairs), floor)
    if threshold is None:
        needed = labels_needed(alpha, delta)
        rate = losses_at(calibration, 1.0) / len(calibration) if calibration else 0.0
        more = trials_to_reject(rate, alpha, delta)
        reason = (
            f"too few labels: {len(calibration)} calibration labels, a loss-free sample needs at least {needed}"
            if len(calibration) < needed
            else "not even threshold 1.00 keeps the accepted-and-wrong share under the target"
        )
        if more is None:
            reason += f"; at the disagreement rate seen at 1.00 ({rate:.3g}) no number of labels would certify it"
        else:
            reason += f"; at the disagreement rate seen at 1.00 ({rate:.3g}) about {more} labels would certify it"
        return TierCertificate(rule, tier, *sizes, None, tested, reason=reason, labels_to_certify=more)
    losses = losses_at(calibration, threshold)
    gate = PlanStep(tier, (), threshold, "")
    return TierCertificate(
        rule,
        tier,
        *sizes,
        threshold,
        tested,
        risk=round(losses / len(calibration), 6),
        risk_upper_bound=round(clopper_pearson_upper(losses, len(calibration), 1 - delta), 6),
        holdout_risk=round(losses_at(holdout_pairs, threshold) / len(holdout_pairs), 6) if holdout_pairs else None,
        escalation_share=round(sum(1 for c, _ in calibration if not gate.accepts(c)) / len(calibration), 6),
    )


def calibrate_live(
    labels: LabelSet,
    document: PolicyDocument,
    *,
    target_relative: float,
    delta: float,
    holdout: float,
    seed: int = 0,
    label_source: str = "shadow",
) -> LiveCalibration:
    alpha = 1 - target_relative
    sources = LABEL_SOURCES[label_source]
    eligible = [label for label in labels.labels if label.accepted and label.source in sources]
    pairs = [(rule, tier) for rule, tiers in escalating_tiers(document).items() for tier in tiers]
    grouped = {pair: [label for label in eligible if (label.rule_id, label.tier) == pair] for pair in pairs}
    tried = [pair for pair, members in grouped.items() if members]
    parameters = {
        "target_relative": target_relative,
        "alpha": round(alpha, 12),
        "delta": delta,
        "confidence": round(1 - delta, 12),
        "delta_per_pair": round(delta / len(tried), 12) if tried else None,
        "holdout": holdout,
        "seed": seed,
        "label_sources": list(sources),
    }
    record = labels.to_record()
    if not tried:
        reason = f"no {' or '.join(sources)} label on an accepted answer of an escalating tier of this policy's rules"
        return LiveCalibration(False, (), parameters, record, reason)
    certificates = tuple(
        _certify(rule, tier, grouped[(rule, tier)], alpha=alpha, delta=delta / len(tried), holdout=holdout, seed=seed)
        for rule, tier in tried
    )
    certified = any(certificate.threshold is not None for certificate in certificates)
    reason = "" if certified else "; ".join(f"{c.rule}/{c.tier}: {c.reason}" for c in certificates)
    return LiveCalibration(certified, certificates, parameters, record, reason)
