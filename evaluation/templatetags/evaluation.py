"""`{% version_evaluations version %}`: the evaluations about a policy version and the replay form, on
routing's version page (routing's pages show evaluation's part without routing importing evaluation)."""

from __future__ import annotations

from typing import Any

from django import template

from evaluation import selectors
from evaluation.forms import HistoryReplayForm
from evaluation.reports import headline
from routing.models import PolicyVersion
from web.access import POLICY_ADMINS, can

EVALUATIONS_SHOWN = 10

register = template.Library()


@register.inclusion_tag("evaluations/_version.html", takes_context=True)
def version_evaluations(context: template.Context, version: PolicyVersion) -> dict[str, Any]:
    request = context["request"]
    can_edit = can(request.user, *POLICY_ADMINS)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "version": version,
        "policy": version.policy,
        "evaluations": [
            (evaluation, headline(evaluation))
            for evaluation in selectors.evaluation_summaries(version_id=version.pk)[:EVALUATIONS_SHOWN]
        ],
        "replay_runs": list(selectors.history_replay_runs_for(version=version)[:EVALUATIONS_SHOWN]),
        # A refused replay comes back with its form (evaluation.views.history_replay_start).
        "replay_form": (context.get("replay_form") or HistoryReplayForm()) if can_edit else None,
    }
