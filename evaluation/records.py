"""What evaluation keeps: `Evaluation` rows, the policy a run is about, and the calibrated draft version.

A calibration writes, in one transaction: its `Evaluation` row (the full evidence), the draft version
(through `policy_version_create`, which validates it against the catalog and writes its ledger event)
whose comment names that row, and an `evaluation.recorded` ledger event carrying the SHA-256 of the
evidence — the row's content is read-only in the database, and the hash makes any rewrite detectable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.db import transaction

from audit import ledger
from audit.ledger import Actor
from evaluation.calibration.calibrate import Calibration
from evaluation.recorded.outcomes import EvaluationError
from routing.decide.policy.document import PolicyDocument, load_policy, policy_from_data
from routing.decide.policy.errors import InvalidPolicy
from routing.decide.policy.source import canonical_json
from routing.decide.thresholds import ThresholdRewriteError, rule_threshold_changes, thresholds_written
from routing.models import Evaluation, EvaluationKind, Policy, PolicyVersion, PolicyVersionStatus
from routing.services.policies import policy_create, policy_version_create

BUNDLED_POLICIES = Path(__file__).with_name("policies")


@dataclass(frozen=True)
class PolicySource:
    document: PolicyDocument
    label: str
    version: PolicyVersion | None = None


def resolve_policy(spec: str) -> PolicySource:
    """A policy file; else the policy of that name in the database (its active version, else its latest);
    else a policy bundled with evaluation (`evaluation/policies/<name>.yaml`)."""
    path = Path(spec)
    if not path.is_file():
        policy = Policy.objects.filter(name=spec).first()
        if policy is not None:
            versions = policy.versions.order_by("-number")
            version = versions.filter(status=PolicyVersionStatus.ACTIVE).first() or versions.first()
            if version is None:
                raise EvaluationError(f"policy {spec!r} has no version yet")
            return PolicySource(policy_from_data(version.document), f"{policy.name} v{version.number}", version)
        path = BUNDLED_POLICIES / f"{spec}.yaml"
        if not path.is_file():
            bundled = ", ".join(sorted(p.stem for p in BUNDLED_POLICIES.glob("*.yaml")))
            raise EvaluationError(
                f"--policy {spec!r} is neither a file nor a policy name (bundled policies: {bundled})"
            )
    try:
        return PolicySource(load_policy(path.read_bytes()), str(path))
    except InvalidPolicy as invalid:
        raise EvaluationError(f"{path}: invalid policy: {invalid}") from None


def version_by_id(version_id: int) -> PolicyVersion:
    version = PolicyVersion.objects.select_related("policy").filter(pk=version_id).first()
    if version is None:
        raise EvaluationError(f"no policy version has id {version_id}")
    return version


def evaluation_record(
    *,
    kind: str,
    parameters: dict[str, Any],
    report: dict[str, Any],
    policy_version: PolicyVersion | None = None,
) -> Evaluation:
    return Evaluation.objects.create(kind=kind, parameters=parameters, report=report, policy_version=policy_version)


def calibrated_source(document: PolicyDocument, rule_thresholds: dict[str, dict[str, float]]) -> str:
    """The input document with each covered rule's calibrated thresholds (rule id -> tier -> value), as YAML."""
    data = document.as_data()
    header = [
        "# Escalation thresholds calibrated by manage.py calibrate_thresholds (Learn then Test);",
        "# the evidence is in the Evaluation record named in this version's comment.",
    ]
    try:
        return thresholds_written(data, rule_threshold_changes(data, rule_thresholds), header=header)
    except ThresholdRewriteError as error:
        raise EvaluationError(f"the calibrated document did not survive a round trip through YAML: {error}") from None


def _comment(evaluation: Evaluation, calibration: Calibration, source_label: str) -> str:
    expected, held = calibration.expected or {}, calibration.holdout or {}
    thresholds = ", ".join(f"{tier} {value:g}" for tier, value in (calibration.thresholds or {}).items())
    lines = [
        f"Calibrated thresholds ({thresholds}) for rules {', '.join(calibration.rules)} of {source_label}.",
        f"Evidence: evaluation #{evaluation.pk} ({calibration.calibration_items} calibration items, "
        f"{calibration.holdout_items} held out).",
        f"Guarantee: {calibration.guarantee}.",
        f"Expected: accuracy {expected.get('accuracy')}, relative cost {expected.get('relative_cost')}.",
    ]
    if held:
        lines.append(
            f"Held out: accuracy {held.get('accuracy')} vs {held.get('reference_accuracy')} for the "
            f"reference, relative cost {held.get('relative_cost')}, target met: {held.get('target_met')}."
        )
    if calibration.reason:
        lines.append(f"Note: {calibration.reason}.")
    return "\n".join(lines)


class RuleCalibration(Protocol):
    """A calibration with thresholds per rule (live history, per-rule offline) and its own comment."""

    certified: bool
    description: str

    def rule_thresholds(self) -> dict[str, dict[str, float]]: ...

    def comment(self, evaluation_pk: int, source_label: str) -> str: ...


def _rule_thresholds(calibration: Calibration | RuleCalibration) -> dict[str, dict[str, float]]:
    if isinstance(calibration, Calibration):
        return {rule: dict(calibration.thresholds or {}) for rule in calibration.rules}
    return calibration.rule_thresholds()


def calibration_record(
    *,
    calibration: Calibration | RuleCalibration,
    source: PolicySource,
    parameters: dict[str, Any],
    report: dict[str, Any],
    policy_name: str,
    author: Any = None,
) -> tuple[Evaluation, PolicyVersion | None]:
    """The evidence row and, when thresholds were certified, the draft version carrying them."""
    actor = Actor.user(author.pk) if author is not None else Actor.system("calibrate_thresholds")
    with transaction.atomic():
        evaluation = evaluation_record(kind=EvaluationKind.CALIBRATION, parameters=parameters, report=report)
        version = None
        shared = isinstance(calibration, Calibration)
        if calibration.certified and _rule_thresholds(calibration):
            text = calibrated_source(source.document, _rule_thresholds(calibration))
            policy = Policy.objects.filter(name=policy_name).first() or policy_create(
                name=policy_name,
                actor=actor,
                description="Escalation thresholds calibrated offline." if shared else calibration.description,
            )
            comment = (
                _comment(evaluation, calibration, source.label)
                if shared
                else calibration.comment(evaluation.pk, source.label)
            )
            parent = source.version if source.version and source.version.policy_id == policy.pk else None
            try:
                version = policy_version_create(
                    policy=policy,
                    source=text,
                    author=author,
                    comment=comment,
                    parent=parent,
                    actor=actor,
                )
            except InvalidPolicy as invalid:
                raise EvaluationError(f"the calibrated policy does not fit the catalog: {invalid}") from None
            evaluation.policy_version = version
            evaluation.save(update_fields=["policy_version"])
        _recorded_event(evaluation, actor=actor, policy_version=version)
    return evaluation, version


def evidence_sha256(parameters: dict[str, Any], report: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"parameters": parameters, "report": report}).encode()).hexdigest()


def _recorded_event(
    evaluation: Evaluation, *, actor: Actor, policy_version: PolicyVersion | None, **body: Any
) -> None:
    ledger.append(
        "evaluation.recorded",
        actor=actor,
        subject={"policy_version": policy_version.pk if policy_version else None},
        body={
            "evaluation": evaluation.pk,
            "kind": str(evaluation.kind),
            "evidence_sha256": evidence_sha256(evaluation.parameters, evaluation.report),
            **body,
        },
    )


def spending_record(
    *, kind: str, parameters: dict[str, Any], report: dict[str, Any], policy_version: PolicyVersion, actor: Actor
) -> Evaluation:
    """A run that paid for model calls: its row and, in the same transaction, the ledger event that puts
    the evidence hash and the amount spent on the audit record."""
    with transaction.atomic():
        evaluation = evaluation_record(
            kind=kind, parameters=parameters, report=report, policy_version=policy_version
        )
        _recorded_event(
            evaluation,
            actor=actor,
            policy_version=policy_version,
            mode=report.get("mode"),
            spent_usd=str(report.get("spent_usd")),
            cost_cap_usd=str(report.get("cost_cap_usd")),
            calls=(report.get("calls") or {}).get("paid"),
        )
    return evaluation
