"""The evaluation runs the commands call: each reads its inputs, runs, and keeps an `Evaluation` row.

Runs on recorded outcomes live here; runs over past jobs (`history_run`, `live_calibration_run`) live in
`evaluation.history_runs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.calibration.calibrate import METHOD, Calibration, calibrate, check_parameters, collect_cases
from evaluation.calibration.curve import offline_curve
from evaluation.calibration.per_rule import PerRuleCalibration, calibrate_per_rule
from evaluation.calibration.reliability import tier_reliability
from evaluation.recorded.outcomes import (
    Outcomes,
    Price,
    TierMap,
    demo_prices,
    parse_tier_map,
    read_outcomes,
    top_tier,
)
from evaluation.recorded.profile import workload_profile
from evaluation.recorded.responders import responder_for
from evaluation.recorded.simulate import eval_catalog, policy_report, run_policy
from evaluation.records import (
    PolicySource,
    calibration_record,
    evaluation_record,
    resolve_policy,
)
from routing.models import Evaluation, EvaluationKind, PolicyVersion

__all__ = [
    "EvaluationInputs",
    "calibration_run",
    "evaluation_inputs",
    "evaluation_run",
]

HTTP_WORKERS = 4


@dataclass(frozen=True)
class EvaluationInputs:
    outcomes: Outcomes
    tiers: TierMap
    prices: dict[str, Price]
    policy: PolicySource

    def parameters(self) -> dict[str, Any]:
        return {
            "outcomes": self.outcomes.source,
            "outcomes_sha256": self.outcomes.sha256,
            "tiers": self.tiers,
            "prices_per_mtok": {
                tier: [self.prices[tier].input_per_mtok, self.prices[tier].output_per_mtok] for tier in self.tiers
            },
            "policy": self.policy.label,
            "policy_sha256": self.policy.document.sha256,
            "policy_version": self.policy.version.pk if self.policy.version else None,
        }


def evaluation_inputs(*, outcomes: str | Path, tiers: str, policy: str) -> EvaluationInputs:
    recorded = read_outcomes(outcomes)
    return EvaluationInputs(recorded, parse_tier_map(tiers, recorded.models), demo_prices(), resolve_policy(policy))


def _workers(in_memory: bool) -> int:
    # Concurrent requests overlap the HTTP round trips; in memory the work is all CPU.
    return 1 if in_memory else HTTP_WORKERS


def evaluation_run(*, inputs: EvaluationInputs, in_memory: bool = False) -> tuple[dict[str, Any], Evaluation]:
    """Replay every item under the policy; the report has the policy's figures, the baselines, the
    reliability of each tier's confidence (`calibration`), the workload profile (`profile`) and the
    cost/quality curve over the cascade's thresholds (`curve`, see evaluation.calibration.curve)."""
    catalog = eval_catalog(inputs.tiers, inputs.prices)
    with responder_for(inputs.outcomes, inputs.tiers, inputs.prices, in_memory=in_memory) as responder:
        runs = run_policy(
            inputs.outcomes.items, inputs.policy.document, catalog, responder, workers=_workers(in_memory)
        )
    report = policy_report(runs, inputs.outcomes, inputs.tiers, inputs.prices)
    routed = {run.item_id for run in runs if run.error is None}
    items = [item for item in inputs.outcomes.items if item.id in routed]
    report["calibration"] = tier_reliability(items, inputs.tiers)
    report["profile"] = workload_profile(items, inputs.tiers, inputs.prices, runs)
    # Every tier's answer to every item, read from the file in memory (no model call): the curve needs
    # the answers the policy's own run did not reach.
    with responder_for(inputs.outcomes, inputs.tiers, inputs.prices, in_memory=True) as observer:
        cases, _ = collect_cases(items, inputs.policy.document, catalog, inputs.tiers, observer)
    report["curve"] = offline_curve(cases)
    report["policy"] = {"source": inputs.policy.label, "sha256": inputs.policy.document.sha256}
    evaluation = evaluation_record(
        kind=EvaluationKind.EVAL,
        parameters={**inputs.parameters(), "transport": "in-memory" if in_memory else "model server"},
        report=report,
        policy_version=inputs.policy.version,
    )
    return {**report, "evaluation": evaluation.pk}, evaluation


def calibration_run(
    *,
    inputs: EvaluationInputs,
    target_relative: float,
    confidence: float = 0.95,
    holdout: float = 0.0,
    seed: int = 0,
    policy_name: str = "calibrated",
    author: Any = None,
    in_memory: bool = False,
    per_rule: bool = False,
) -> tuple[dict[str, Any], Evaluation, PolicyVersion | None]:
    """Calibrate the thresholds of the rules that govern the items, and write them as a draft version:
    one shared threshold set across the rules, or (`per_rule`) each rule's on its own items."""
    delta = round(1 - confidence, 12)
    check_parameters(target_relative=target_relative, delta=delta, holdout=holdout)
    catalog = eval_catalog(inputs.tiers, inputs.prices)
    with responder_for(inputs.outcomes, inputs.tiers, inputs.prices, in_memory=in_memory) as responder:
        cases, errors = collect_cases(
            inputs.outcomes.items,
            inputs.policy.document,
            catalog,
            inputs.tiers,
            responder,
            workers=_workers(in_memory),
        )
    method = calibrate_per_rule if per_rule else calibrate
    calibration = method(
        cases,
        target_relative=target_relative,
        delta=delta,
        holdout=holdout,
        seed=seed,
        reference_tier=top_tier(inputs.tiers),
    )
    report = {**calibration.to_record(), "items": len(cases), "unroutable": len(errors)}
    parameters = {
        **inputs.parameters(),
        "target_relative": target_relative,
        "confidence": confidence,
        "holdout": holdout,
        "seed": seed,
        "per_rule": per_rule,
        "policy_name": policy_name,
        "transport": "in-memory" if in_memory else "model server",
    }
    evaluation, version = calibration_record(
        calibration=calibration,
        source=inputs.policy,
        parameters=parameters,
        report=report,
        policy_name=policy_name,
        author=author,
    )
    if isinstance(calibration, PerRuleCalibration):
        summary = {
            "certified": calibration.certified,
            "per_rule": True,
            "thresholds": calibration.rule_thresholds(),
            "method": report["method"],
            "rules": {rule: _summary(entry) for rule, entry in calibration.calibrations.items()},
            "skipped": calibration.skipped,
            "reason": calibration.reason,
        }
    else:
        summary = {**_summary(calibration), "rules": list(calibration.rules)}
    return {**summary, "policy_version": version.pk if version else None, "evaluation": evaluation.pk,
            "details": report}, evaluation, version  # fmt: skip


def _summary(calibration: Calibration) -> dict[str, Any]:
    expected, held = calibration.expected or {}, calibration.holdout
    return {
        "certified": calibration.certified,
        "thresholds": calibration.thresholds,
        "method": METHOD,
        "guarantee": calibration.guarantee,
        "expected_accuracy": expected.get("accuracy"),
        "expected_reference_accuracy": expected.get("reference_accuracy"),
        "expected_relative_cost": expected.get("relative_cost"),
        "expected_saving": expected.get("saving"),
        "expected_margin": expected.get("margin"),
        "items_needed": calibration.needed,
        "holdout": None
        if held is None
        else {key: held[key] for key in ("items", "accuracy", "reference_accuracy", "relative_cost", "target_met")},
        "reason": calibration.reason,
    }
