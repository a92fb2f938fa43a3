"""Reading evaluation rows (`Evaluation`, `HistoryReplayRun`: routing's models, evaluation's records)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import JSONObject

from routing.models import Evaluation, HistoryReplayRun, PolicyVersion


def evaluation_list(*, kind: str | None = None, version_id: int | None = None) -> QuerySet[Evaluation]:
    evaluations = Evaluation.objects.select_related("policy_version__policy").order_by("-created_at", "-id")
    if kind:
        evaluations = evaluations.filter(kind=kind)
    if version_id:
        evaluations = evaluations.filter(policy_version_id=version_id)
    return evaluations


# The report keys a list row's headline reads (evaluation.reports.headline); the rest can be large.
EVALUATION_HEADLINE_KEYS = (
    "accuracy", "relative_cost", "items", "policy", "thresholds", "certified", "holdout", "jobs",
    "final_tier_changed", "cost_usd",
)


def evaluation_summaries(*, kind: str | None = None, version_id: int | None = None) -> QuerySet[Evaluation]:
    """Evaluations for a list: without their report and parameters, with the headline keys as `summary`."""
    return (
        evaluation_list(kind=kind, version_id=version_id)
        .defer("report", "parameters")
        .annotate(summary=JSONObject(**{key: KeyTransform(key, "report") for key in EVALUATION_HEADLINE_KEYS}))
    )


def evaluation_get(*, evaluation_id: int) -> Evaluation | None:
    return Evaluation.objects.select_related("policy_version__policy").filter(pk=evaluation_id).first()


def history_replay_run_get(*, run_id: int) -> HistoryReplayRun | None:
    return (
        HistoryReplayRun.objects.select_related("policy_version__policy", "requested_by", "evaluation")
        .filter(pk=run_id)
        .first()
    )


def history_replay_runs_for(*, version: PolicyVersion) -> QuerySet[HistoryReplayRun]:
    return version.history_replays.select_related("requested_by").order_by("-created_at", "-id")
