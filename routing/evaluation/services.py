"""The evaluation runs the commands call: each reads its inputs, runs, and keeps an `Evaluation` row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from audit.ledger import Actor
from routing.evaluation.calibrate import METHOD, calibrate, check_parameters, collect_cases
from routing.evaluation.curve import offline_curve
from routing.evaluation.history import history_jobs, history_replay
from routing.evaluation.outcomes import (
    EvaluationError,
    Outcomes,
    Price,
    TierMap,
    demo_prices,
    parse_tier_map,
    read_outcomes,
    top_tier,
)
from routing.evaluation.profile import workload_profile
from routing.evaluation.records import (
    PolicySource,
    calibration_record,
    evaluation_record,
    resolve_policy,
    spending_record,
)
from routing.evaluation.reexecute import ReexecutionAborted, reexecute_history
from routing.evaluation.reliability import tier_reliability
from routing.evaluation.responders import responder_for
from routing.evaluation.simulate import eval_catalog, policy_report, run_policy
from routing.models import Evaluation, EvaluationKind, PolicyVersion

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
    cost/quality curve over the cascade's thresholds (`curve`, see routing.evaluation.curve)."""
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
    holdout: float = 0.3,
    seed: int = 0,
    policy_name: str = "calibrated",
    author: Any = None,
    in_memory: bool = False,
) -> tuple[dict[str, Any], Evaluation, PolicyVersion | None]:
    """Calibrate the thresholds of the rules that govern the items, and write them as a draft version."""
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
    calibration = calibrate(
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
    expected, held = calibration.expected or {}, calibration.holdout
    summary = {
        "certified": calibration.certified,
        "thresholds": calibration.thresholds,
        "method": METHOD,
        "guarantee": calibration.guarantee,
        "expected_accuracy": expected.get("accuracy"),
        "expected_reference_accuracy": expected.get("reference_accuracy"),
        "expected_relative_cost": expected.get("relative_cost"),
        "expected_saving": expected.get("saving"),
        "holdout": None
        if held is None
        else {key: held[key] for key in ("items", "accuracy", "reference_accuracy", "relative_cost", "target_met")},
        "policy_version": version.pk if version else None,
        "evaluation": evaluation.pk,
        "rules": list(calibration.rules),
        "reason": calibration.reason,
        "details": report,
    }
    return summary, evaluation, version


HISTORY_MODES = ("routing", "full")
Progress = Callable[[int, int], None]


def history_cost_cap(mode: str, cost_cap_usd: Decimal | float | None) -> Decimal | None:
    """The checked cost cap of a history run: required (> 0) to re-execute, refused for routing only."""
    if mode not in HISTORY_MODES:
        raise EvaluationError(f"mode must be one of {', '.join(HISTORY_MODES)}, not {mode!r}")
    if mode == "routing":
        if cost_cap_usd is not None:
            raise EvaluationError("a cost cap applies to full re-execution only (routing mode calls no model)")
        return None
    if cost_cap_usd is None:
        raise EvaluationError("full re-execution calls real deployments: it needs a cost cap in USD (> 0)")
    if isinstance(cost_cap_usd, bool) or not isinstance(cost_cap_usd, (Decimal, float, int)):
        raise EvaluationError(f"the cost cap must be a number of USD, not {cost_cap_usd!r}")
    cap = Decimal(str(cost_cap_usd))
    if not cap.is_finite() or cap <= 0:
        raise EvaluationError(f"the cost cap must be a finite amount above 0 USD, not {cost_cap_usd}")
    return cap


def history_run(
    *,
    version: PolicyVersion,
    application: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    mode: str = "routing",
    cost_cap_usd: Decimal | float | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], Evaluation]:
    """What the draft `version` would have done with past jobs: from their recorded steps (`mode="routing"`),
    or by re-executing their inputs against the real deployments within `cost_cap_usd` (`mode="full"`).
    `progress(done, total)` is called at the start, about every 1% of the jobs, and at the end."""
    cap = history_cost_cap(mode, cost_cap_usd)
    jobs = list(history_jobs(application=application, since=since, until=until, limit=limit))
    parameters = {
        "policy_version": version.pk,
        "application": application,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
        "mode": mode,
        "cost_cap_usd": float(cap) if cap is not None else None,
    }
    if cap is None:
        report = history_replay(version=version, jobs=jobs, progress=progress)
        evaluation = evaluation_record(
            kind=EvaluationKind.HISTORY, parameters=parameters, report=report, policy_version=version
        )
        return {**report, "evaluation": evaluation.pk}, evaluation
    actor = Actor.system("replay_history")
    try:
        report = reexecute_history(version=version, jobs=jobs, cost_cap_usd=cap, progress=progress)
    except ReexecutionAborted as aborted:
        # The calls made so far were paid for: they go on the record before the error does.
        evaluation = spending_record(
            kind=EvaluationKind.HISTORY,
            parameters=parameters,
            report=aborted.report,
            policy_version=version,
            actor=actor,
        )
        raise EvaluationError(f"{aborted} (recorded as evaluation #{evaluation.pk})") from aborted
    evaluation = spending_record(
        kind=EvaluationKind.HISTORY, parameters=parameters, report=report, policy_version=version, actor=actor
    )
    return {**report, "evaluation": evaluation.pk}, evaluation
