"""A job's whole story on one page, its chain check, the list of recent jobs, a replay beside its original."""

from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.verify import verify_events_for
from review import selectors
from review.forms import DecisionForm, OverrideForm, ReasonRequiredForm, ReplayForm
from review.reach import pending_request, within_reach
from review.services import approval_progress, counted_approvers, may_decide
from routing.models import Job, JobStatus
from web import pagination
from web.access import DECIDERS, JOB_READERS, REVIEWERS, can, role_required


def _job_or_404(job_id) -> Job:
    job = selectors.job_story(job_id)
    if job is None:
        raise Http404("no such job")
    return job


def job_for(request: HttpRequest, job_id) -> Job:
    """The job, for a job reader; for a policy admin (not a job reader), only while a rule that names
    their group waits for their decision, so they can read what they are asked to approve (review.reach).
    Refused the same way whether or not the job exists, so it tells them nothing about other jobs."""
    if can(request.user, *JOB_READERS):
        return _job_or_404(job_id)
    job = selectors.job_story(job_id)
    if job is None or not within_reach(request.user, job):
        raise PermissionDenied("this job is not awaiting a decision you may take")
    return job


def after_decision(request: HttpRequest, job: Job) -> HttpResponse:
    """Back to the job for a job reader; a policy admin may no longer read it once they have decided."""
    return redirect("job", job.pk) if can(request.user, *JOB_READERS) else redirect("dashboard")


def story_context(request: HttpRequest, job: Job, **extra) -> dict:
    steps = list(job.steps.all())
    events = selectors.job_events(job)
    pending = pending_request(job)
    output = (job.result or {}).get("output") or {}
    initial = {"expected_version": job.version}
    route = job.route or {}
    skipped = (route.get("explanation") or {}).get("deployments_skipped") or []
    reasons = Counter(reason for item in skipped for reason in item.get("reasons") or ["no reason given"])
    return {
        "job": job,
        "run_calls": job.run.calls if job.run_id else 0,
        "steps": steps,
        "events": events,
        "escalations": [event for event in events if event.event_type == "job.escalated"],
        "route": route,
        "plan": route.get("plan") or {},
        "explanation": route.get("explanation") or {},
        "skipped_reasons": reasons.most_common(),
        "output": output,
        "pending": pending,
        "pending_approvals": len(counted_approvers(job, pending)) if pending else 0,
        "pending_progress": approval_progress(job, pending) if pending else [],
        "can_decide": pending is not None and may_decide(request.user, job, pending),
        "can_replay": can(request.user, *REVIEWERS) and job.erased_at is None,
        "approve_form": DecisionForm(initial=initial),
        "reject_form": ReasonRequiredForm(initial=initial, auto_id="reject_%s"),
        "escalate_form": DecisionForm(initial=initial, auto_id="escalate_%s"),
        "override_form": OverrideForm(
            initial={**initial, "content": output.get("content") or "", "source": "edit"},
            tool_calls=output.get("tool_calls"),
            auto_id="override_%s",
        ),
        "other_steps": [
            step for step in steps if step.output is not None and step.index != (job.result or {}).get("step_index")
        ],
        "replay_form": ReplayForm(),
        "replays": list(selectors.job_replays(job)[:10]),
        "erasure": selectors.job_erasure(job),
        **extra,
    }


@require_GET
@role_required(*JOB_READERS, *DECIDERS)
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = job_for(request, job_id)
    return render(request, "jobs/detail.html", story_context(request, job))


@require_POST
@role_required(*JOB_READERS)
def job_verify(request: HttpRequest, job_id) -> HttpResponse:
    """Recompute this job's sealed events against their hashes (read-only; POST because it is work)."""
    job = _job_or_404(job_id)
    report = verify_events_for(job_id=job.pk)
    context = {"job": job, "report": report}
    if request.htmx:
        return render(request, "jobs/detail.html#verdict", context)
    return render(request, "jobs/detail.html", story_context(request, job, report=report))


@require_GET
@role_required(*JOB_READERS)
def job_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    status = status if status in JobStatus.values else ""
    jobs = selectors.recent_jobs(status=status)
    key = pagination.decode(request.GET.get("after"))
    jobs = pagination.after(jobs, key, fields=("created_at", "id"), descending=True)
    page = pagination.page(jobs, settings.ARBITER_UI_PAGE_SIZE, key=("created_at", "pk"))
    context = {"jobs": page.items, "next_cursor": page.next_cursor, "status": status,
               "statuses": JobStatus.choices, "first_page": key is None}
    if request.htmx and key is not None:
        return render(request, "jobs/list.html#rows", context)
    return render(request, "jobs/list.html", context)


@require_GET
@role_required(*JOB_READERS)
def job_compare(request: HttpRequest, job_id) -> HttpResponse:
    """A replay beside its original: route, steps, cost, answer. Polls while the replay runs."""
    replay = _job_or_404(job_id)
    if replay.replay_of_id is None:
        raise Http404("this job is not a replay")
    original = _job_or_404(replay.replay_of_id)
    sides = [_side(original), _side(replay)]
    differs = sorted(key for key in COMPARED if sides[0][key] != sides[1][key])
    context = {"replay": replay, "original": original, "sides": sides, "differs": differs,
               "running": any(side["running"] for side in sides)}
    if request.htmx:
        return render(request, "jobs/compare.html#sides", context)
    return render(request, "jobs/compare.html", context)


COMPARED = ("policy", "rule", "tier", "confidence", "cost", "escalations", "output", "status")


def _side(job: Job) -> dict:
    route = job.route or {}
    return {
        "job": job,
        "steps": list(job.steps.all()),
        "policy": job.policy_version_id,
        "rule": (route.get("plan") or {}).get("rule_id") or (route.get("explanation") or {}).get("matched_rule"),
        "tier": job.final_tier,
        "confidence": job.final_confidence,
        "cost": job.total_cost_usd,
        "escalations": job.escalations,
        "output": (job.result or {}).get("output"),
        "status": job.status,
        "running": not job.is_terminal and job.status != JobStatus.AWAITING_APPROVAL,
    }
