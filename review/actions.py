"""What a reviewer does to a job: approve, reject, override (preview, then confirm), escalate, replay.

Each view checks the role, validates the form and calls the one service that decides; the services
enforce four-eyes, "not your own job" and optimistic locking (the page's `expected_version`), and their
message is shown to the reviewer as it is. Success redirects to the job (post/redirect/get).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from review.forms import DecisionForm, OverrideForm, ReasonRequiredForm, ReplayForm
from review.job_pages import after_decision, job_for, story_context
from review.services import (
    ReviewError,
    StaleReview,
    approval_approve,
    approval_escalate,
    approval_override,
    approval_reject,
    job_replay,
)
from routing.models import Job, Step
from web.access import DECIDERS, REVIEWERS, role_required
from web.diffs import output_text, unified


def _story(request: HttpRequest, job_id) -> Job:
    return job_for(request, job_id)


def _refused(request: HttpRequest, job_id, error: ReviewError | None = None, **forms) -> HttpResponse:
    """The job as it is now, with the reason the action was not taken (409: someone acted first)."""
    status = 409 if isinstance(error, StaleReview) else 400
    context = story_context(request, _story(request, job_id), action_error=str(error) if error else None, **forms)
    return render(request, "jobs/detail.html", context, status=status)


def _decide(request: HttpRequest, job_id, form: DecisionForm, form_name: str, decide: Callable, done: str):
    job = _story(request, job_id)
    if not form.is_valid():
        return _refused(request, job_id, **{form_name: form})
    try:
        job = decide(
            job=job,
            user=request.user,
            reason=form.cleaned_data["reason"],
            expected_version=form.cleaned_data["expected_version"],
        )
    except ReviewError as error:
        return _refused(request, job_id, error)
    messages.success(request, done.format(status=job.get_status_display().lower()))
    return after_decision(request, job)


@require_POST
@role_required(*DECIDERS)
def job_approve(request: HttpRequest, job_id) -> HttpResponse:
    return _decide(request, job_id, DecisionForm(request.POST), "approve_form", approval_approve,
                   "your approval is recorded; the job is {status}.")


@require_POST
@role_required(*DECIDERS)
def job_reject(request: HttpRequest, job_id) -> HttpResponse:
    return _decide(request, job_id, ReasonRequiredForm(request.POST, auto_id="reject_%s"), "reject_form",
                   approval_reject, "the job is rejected.")


@require_POST
@role_required(*DECIDERS)
def job_escalate(request: HttpRequest, job_id) -> HttpResponse:
    return _decide(request, job_id, DecisionForm(request.POST, auto_id="escalate_%s"), "escalate_form",
                   approval_escalate, "the job is queued again on a higher tier.")


def _override_form(request: HttpRequest, job: Job) -> tuple[OverrideForm, dict]:
    previous = (job.result or {}).get("output") or {}
    form = OverrideForm(request.POST, tool_calls=previous.get("tool_calls"), auto_id="override_%s")
    return form, previous


def _proposed_output(form: OverrideForm, job: Job, previous: dict) -> dict | None:
    if form.cleaned_data["source"] == "edit":
        return form.edited_output(previous)
    step = Step.objects.filter(job=job, pk=form.cleaned_data["step"], output__isnull=False).first()
    if step is None:
        form.add_error("step", "That step does not belong to this job or has no output.")
        return None
    return step.output


@require_POST
@role_required(*DECIDERS)
def job_override_preview(request: HttpRequest, job_id) -> HttpResponse:
    """Stage one: the diff between the current answer and the proposed one, and a confirm button."""
    job = _story(request, job_id)
    form, previous = _override_form(request, job)
    proposed = _proposed_output(form, job, previous) if form.is_valid() else None
    context: dict = {"override_form": form}
    if proposed is not None:
        context["override_diff"] = unified(
            output_text(previous), output_text(proposed), before_name="current answer", after_name="your override"
        )
        context["override_unchanged"] = proposed == previous
    if request.htmx:
        return render(request, "jobs/detail.html#override_preview", {"job": job, **context},
                      status=200 if proposed else 400)
    return render(request, "jobs/detail.html", story_context(request, job, **context),
                  status=200 if proposed else 400)


@require_POST
@role_required(*DECIDERS)
def job_override(request: HttpRequest, job_id) -> HttpResponse:
    """Stage two: the confirmed override, through the service."""
    job = _story(request, job_id)
    form, previous = _override_form(request, job)
    proposed = _proposed_output(form, job, previous) if form.is_valid() else None
    if proposed is None:
        return _refused(request, job_id, override_form=form)
    by_step = form.cleaned_data["source"] == "step"
    try:
        job = approval_override(
            job=job,
            user=request.user,
            reason=form.cleaned_data["reason"],
            output=None if by_step else proposed,
            step_id=form.cleaned_data["step"] if by_step else None,
            expected_version=form.cleaned_data["expected_version"],
        )
    except ReviewError as error:
        return _refused(request, job_id, error)
    if job.status == "completed":
        messages.success(request, "the override is recorded; the job is completed with your answer.")
    else:
        messages.success(
            request,
            "the override is recorded as the first approval of your answer; it is released once "
            "enough other reviewers approve it.",
        )
    return after_decision(request, job)


@require_POST
@role_required(*REVIEWERS)
def job_replay_start(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("application", "policy_version"), pk=job_id)
    form = ReplayForm(request.POST)
    if not form.is_valid():
        return _refused(request, job_id, replay_form=form)
    replay = job_replay(job=job, user=request.user, policy_version=form.cleaned_data["policy_version"])
    messages.success(request, "the replay was submitted as a new job; it is shown beside the original.")
    return redirect("job-compare", replay.pk)
