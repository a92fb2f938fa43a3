"""Agent runs: a planner's and its subagents' calls seen as one (routing.services.runs), for job readers.

The list filters by application, state and held calls; a run's page shows its calls in order (a subagent's
under the planner call before it) with tier, cost, latency, confidence, escalations and holds, its totals by
tier against the limits of its policy's `runs:` section, and its workload profile. A held call's page links
here, so a reviewer decides it knowing what the run has done. Answers are not on these pages: a call's
answer is on its own page, behind the same release rules as every job's.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from review import selectors
from routing.decide.runs import RunFacts, observed_against_limits
from routing.execute.facts import document_for
from web import pagination
from web.access import JOB_READERS, role_required

STATES = (("open", "open"), ("closed", "closed"))


@require_GET
@role_required(*JOB_READERS)
def run_list(request: HttpRequest) -> HttpResponse:
    application = request.GET.get("application", "")[:80]
    state = request.GET.get("state", "")
    state = state if state in dict(STATES) else ""
    held = request.GET.get("held") == "1"
    runs = selectors.recent_runs(application=application, state=state, held=held)
    key = pagination.decode(request.GET.get("after"))
    runs = pagination.after(runs, key, fields=("opened_at", "id"), descending=True)
    page = pagination.page(runs, settings.ARBITER_UI_PAGE_SIZE, key=("opened_at", "pk"))
    query = "&".join(part for part in (
        f"application={application}" if application else "", f"state={state}" if state else "", "held=1" if held else ""
    ) if part)
    context = {"runs": page.items, "next_cursor": page.next_cursor, "application": application, "state": state,
               "held": held, "states": STATES, "query": query, "first_page": key is None}
    if request.htmx and key is not None:
        return render(request, "runs/list.html#rows", context)
    return render(request, "runs/list.html", context)


@require_GET
@role_required(*JOB_READERS)
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    run = selectors.run_story(run_id)
    if run is None:
        raise Http404("no such run")
    calls = selectors.run_calls(run)
    tiers, workload = selectors.run_totals(calls)
    latest = calls[-1].job if calls else None
    limits = document_for(latest.policy_version).runs.limits if latest else ()
    observed = observed_against_limits(RunFacts(run.calls, run.flagship_calls, float(run.cost_usd)))
    context = {
        "run": run,
        "calls": calls,
        "tiers": tiers,
        "workload": workload,
        "limits": [{"limit": limit, "observed": observed[limit.name]} for limit in limits],
        "held": sum(1 for call in calls if call.job.status == "awaiting_approval"),
        "total_cost": sum((tier.cost_usd for tier in tiers), start=0),
        "here": request.GET.get("job", ""),
    }
    return render(request, "runs/detail.html", context)
