"""The runs over past jobs the commands (and the evaluation pages) call: replay under a draft version,
routing only or fully re-executed under a cost cap, and calibration from live labels. Each keeps an
`Evaluation` row; a run that paid for model calls also writes its `evaluation.recorded` ledger event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from audit.ledger import Actor
from evaluation.calibration.calibrate import check_parameters
from evaluation.calibration.labels import collect_labels, live_evidence, live_reliability
from evaluation.calibration.live import LABEL_SOURCES, calibrate_live
from evaluation.recorded.outcomes import EvaluationError
from evaluation.records import PolicySource, calibration_record, evaluation_record, spending_record
from evaluation.replay.reexecute import ReexecutionAborted, reexecute_history
from evaluation.replay.routing_only import history_jobs, history_replay
from routing.decide.policy.document import policy_from_data
from routing.models import Evaluation, EvaluationKind, PolicyVersion

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
    `progress(done, total)` is called at the start, about every 1% of the jobs, and at the end. Both modes
    also report the jobs' live labels (`labels`), each tier's reliability against them (`reliability`) and
    the cost/quality curve over the labelled jobs (`curve`; evaluation.calibration.labels)."""
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
        report = {**history_replay(version=version, jobs=jobs, progress=progress), **live_evidence(jobs)}
        evaluation = evaluation_record(
            kind=EvaluationKind.HISTORY, parameters=parameters, report=report, policy_version=version
        )
        return {**report, "evaluation": evaluation.pk}, evaluation
    actor = Actor.system("replay_history")
    try:
        report = reexecute_history(version=version, jobs=jobs, cost_cap_usd=cap, progress=progress)
        report.update(live_evidence(jobs))
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


def live_calibration_run(
    *,
    version: PolicyVersion,
    target_relative: float,
    confidence: float = 0.95,
    holdout: float = 0.0,
    seed: int = 0,
    application: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    label_source: str = "shadow",
    policy_name: str = "calibrated",
    author: Any = None,
) -> tuple[dict[str, Any], Evaluation, PolicyVersion | None]:
    """Calibrate `version`'s thresholds from the labels of past jobs run under its policy (see
    evaluation.calibration.live), and write the certified ones as a draft version."""
    delta = round(1 - confidence, 12)
    check_parameters(target_relative=target_relative, delta=delta, holdout=holdout)
    if label_source not in LABEL_SOURCES:
        raise EvaluationError(f"label source must be one of {', '.join(LABEL_SOURCES)}, not {label_source!r}")
    jobs = list(history_jobs(application=application, since=since, until=until, limit=limit, policy=version.policy))
    labels = collect_labels(jobs)
    document = policy_from_data(version.document)
    calibration = calibrate_live(
        labels, document, target_relative=target_relative, delta=delta, holdout=holdout, seed=seed,
        label_source=label_source,
    )  # fmt: skip
    report = {**calibration.to_record(), "jobs": len(jobs), "reliability": live_reliability(labels)}
    parameters = {
        "source": "history",
        "policy_version": version.pk,
        "policy_sha256": version.sha256,
        "application": application,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "limit": limit,
        "target_relative": target_relative,
        "confidence": confidence,
        "holdout": holdout,
        "seed": seed,
        "label_source": label_source,
        "policy_name": policy_name,
    }
    source = PolicySource(document, f"{version.policy.name} v{version.number}", version)
    evaluation, draft = calibration_record(
        calibration=calibration,
        source=source,
        parameters=parameters,
        report=report,
        policy_name=policy_name,
        author=author,
    )
    summary = {**report, "policy_version": draft.pk if draft else None, "evaluation": evaluation.pk}
    return summary, evaluation, draft
