"""Evaluations: the list of offline runs, one run's report, and replays of past jobs started from a
policy version page with a progress bar."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from evaluation import reports, selectors
from evaluation.forms import EvaluationFilterForm, HistoryReplayForm
from evaluation.queued_replays import history_replay_request, is_stale
from evaluation.recorded.outcomes import EvaluationError
from routing.models import Evaluation, HistoryReplayRun, HistoryReplayStatus
from routing.ui.policies import version_context, version_or_404
from web import pagination
from web.access import JOB_READERS, POLICY_ADMINS, POLICY_READERS, can, role_required


def _evaluation(evaluation_id: int) -> Evaluation:
    evaluation = selectors.evaluation_get(evaluation_id=evaluation_id)
    if evaluation is None:
        raise Http404("no such evaluation")
    return evaluation


def _run(run_id: int) -> HistoryReplayRun:
    run = selectors.history_replay_run_get(run_id=run_id)
    if run is None:
        raise Http404("no such replay")
    return run


@require_GET
@role_required(*POLICY_READERS)
def evaluation_list(request: HttpRequest) -> HttpResponse:
    form = EvaluationFilterForm(request.GET)
    evaluations = selectors.evaluation_summaries(**form.filters())
    key = pagination.decode(request.GET.get("after"))
    evaluations = pagination.after(evaluations, key, fields=("created_at", "id"), descending=True)
    page = pagination.page(evaluations, settings.ARBITER_UI_PAGE_SIZE, key=("created_at", "pk"))
    query = request.GET.copy()
    query.pop("after", None)
    context = {"form": form, "rows": [(row, reports.headline(row)) for row in page.items],
               "next_cursor": page.next_cursor, "query": query.urlencode(), "first_page": key is None}
    if request.htmx and key is not None:
        return render(request, "evaluations/list.html#rows", context)
    return render(request, "evaluations/list.html", context)


@require_GET
@role_required(*POLICY_READERS)
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = _evaluation(evaluation_id)
    return render(request, "evaluations/detail.html", {
        "evaluation": evaluation,
        "report": evaluation.report or {},
        "figures": reports.figures(evaluation),
        "run": evaluation.history_replay_runs.select_related("requested_by").first(),
        "can_read_jobs": can(request.user, *JOB_READERS),
    })


@require_POST
@role_required(*POLICY_ADMINS)
def history_replay_start(request: HttpRequest, name: str, number: int) -> HttpResponse:
    version = version_or_404(name, number)
    form = HistoryReplayForm(request.POST)
    if form.is_valid():
        try:
            run = history_replay_request(version=version, user=request.user, **form.replay_arguments())
        except EvaluationError as error:
            form.add_error(None, str(error))
        else:
            return redirect("history-replay", run.pk)
    return render(request, "policies/version.html", version_context(request, version, replay_form=form), status=400)


@require_GET
@role_required(*POLICY_READERS)
def history_replay_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's progress; polled by htmx until it ends, and then the report is opened."""
    run = _run(run_id)
    if request.htmx and run.status == HistoryReplayStatus.DONE and run.evaluation_id:
        return HttpResponseClientRedirect(reverse("evaluation", args=[run.evaluation_id]))
    context = {"run": run, "stale": is_stale(run), "policy": run.policy_version.policy}
    return render(request, "evaluations/replay.html#progress" if request.htmx else "evaluations/replay.html", context)
