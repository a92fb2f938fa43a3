"""Per-rule offline calibration (`calibrate_thresholds --per-rule`): each rule's cascade calibrated on the
items that rule governs, instead of one shared threshold set across the rules.

Each rule with at least `rule_minimum(...)` items (the fewest with which a sample where the cascade and the
reference agree and are right on every item could certify anything at the full delta) is calibrated with
`calibrate()` exactly as the shared path does (Learn then Test on the target's own loss with the exact
four-cell test, its own calibration/holdout split), at delta / k for
the k rules calibrated (Bonferroni), so that every rule's guarantee holds simultaneously with probability
at least 1 - delta. A rule with fewer items keeps the thresholds it has and is reported with the reason;
its items are not pooled into another rule's calibration.

Why Bonferroni stays (measured on the study's per-rule set, evaluation.calibration.study, target 0.90,
40 splits): the rules' item sets are disjoint, so given how many items each rule has their certificates
err independently and Sidak's 1 - (1 - delta)^(1/k) would be valid — 0.0253 instead of 0.025 for two
rules, nothing measurable. Giving each rule the whole delta (not valid: it is the most any split of delta
could gain) moved tightness only from 1.261 to 1.243; splitting delta by the rules' reference cost
(valid: fixed without labels) gave 1.267. The slack is the 2-tier rule's own: 682 calibration items at a
relative cost near 0.1, where the margin the test needs (a few accuracy points) is 60% of the cost
(its tightness alone 1.63, the one-tier rule's 1.19). A staircase continued past its end (the last tier
at 0.00, the earlier one lowered: a longer fixed path, never worse) gave 1.257 / 1.263 / 1.294 at
0.90 / 0.95 / 0.97 against 1.261 / 1.263 / 1.294 on the same splits: not kept.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluation.calibration import exact
from evaluation.calibration.calibrate import METHOD, Calibration, CascadeCase, calibrate


def rule_minimum(target_relative: float, delta: float, holdout: float) -> int:
    """Items a rule needs: enough calibration items for the exact test (evaluation.calibration.exact) to
    certify a sample on which every loss is target - 1 (cascade and reference agree, and are right) — the
    least n with target^n <= delta; no real sample of fewer does better unless the cascade beats the
    reference."""
    needed = exact.items_to_reject((1.0, 0.0, 0.0, 0.0), target_relative, delta)
    if needed is None:  # target 1: an agreeing sample has loss 0, and nothing certifies a mean below it
        return math.inf  # type: ignore[return-value]
    return math.ceil(needed / (1 - holdout))


@dataclass(frozen=True)
class PerRuleCalibration:
    calibrations: dict[str, Calibration]
    skipped: dict[str, str]  # rule id -> why it was not calibrated on its own
    parameters: dict[str, Any]
    description: str = "Escalation thresholds calibrated offline, per rule."

    @property
    def certified(self) -> bool:
        return any(calibration.certified for calibration in self.calibrations.values())

    def rule_thresholds(self) -> dict[str, dict[str, float]]:
        return {
            rule: dict(calibration.thresholds)
            for rule, calibration in self.calibrations.items()
            if calibration.certified and calibration.thresholds
        }

    @property
    def reason(self) -> str:
        if self.certified:
            return ""
        reasons = [f"{rule}: {calibration.reason}" for rule, calibration in self.calibrations.items()]
        reasons += [f"{rule}: {why}" for rule, why in self.skipped.items()]
        return "; ".join(reasons) or "no rule governing these items escalates"

    def to_record(self) -> dict[str, Any]:
        return {
            "certified": self.certified,
            "per_rule": True,
            "method": f"{METHOD}; per rule, Bonferroni over the rules calibrated",
            "parameters": self.parameters,
            "thresholds": self.rule_thresholds(),
            "rules": {rule: calibration.to_record() for rule, calibration in self.calibrations.items()},
            "skipped": self.skipped,
            "reason": self.reason,
        }

    def comment(self, evaluation_pk: int, source_label: str) -> str:
        lines = [f"Thresholds calibrated per rule for {source_label}:"]
        for rule, calibration in self.calibrations.items():
            if calibration.certified:
                expected = calibration.expected or {}
                lines.append(
                    f"- {rule}: {calibration.thresholds} (expected accuracy {expected.get('accuracy')}, "
                    f"relative cost {expected.get('relative_cost')}; {calibration.guarantee})"
                )
        for rule, why in self.skipped.items():
            lines.append(f"- {rule}: unchanged ({why})")
        lines.append(f"Evidence: evaluation #{evaluation_pk}.")
        return "\n".join(lines)


def calibrate_per_rule(
    cases: Sequence[CascadeCase],
    *,
    target_relative: float,
    delta: float,
    holdout: float,
    seed: int,
    reference_tier: str,
) -> PerRuleCalibration:
    by_rule: dict[str, list[CascadeCase]] = defaultdict(list)
    for case in cases:
        if len(case.steps) > 1:
            by_rule[case.rule_id].append(case)
    skipped: dict[str, str] = {}
    calibrated: dict[str, list[CascadeCase]] = {}
    for rule, members in sorted(by_rule.items()):
        # The minimum at the Bonferroni share is not known before the count k; the full delta gives the
        # smallest minimum, so a rule below it could not be certified however few rules were tried.
        minimum = rule_minimum(target_relative, delta, holdout)
        if len(members) < minimum:
            skipped[rule] = f"too few items ({len(members)} < {minimum}) to calibrate on its own"
        else:
            calibrated[rule] = members
    share = delta / len(calibrated) if calibrated else delta
    calibrations = {
        rule: calibrate(
            members,
            target_relative=target_relative,
            delta=share,
            holdout=holdout,
            seed=seed,
            reference_tier=reference_tier,
        )
        for rule, members in calibrated.items()
    }
    parameters = {
        "target_relative": target_relative,
        "delta": delta,
        "delta_per_rule": round(share, 12),
        "confidence": round(1 - delta, 12),
        "holdout": holdout,
        "seed": seed,
        "reference_tier": reference_tier,
        "items_per_rule": {rule: len(members) for rule, members in sorted(by_rule.items())},
    }
    return PerRuleCalibration(calibrations, skipped, parameters)
