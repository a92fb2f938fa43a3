"""The review queue: held jobs with filters, a count that refreshes itself, keyset pages, bulk decisions."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from review import selectors
from review.forms import BulkForm, QueueFilterForm
from review.services import ReviewError, approval_approve, approval_reject
from routing.models import Job
from web import pagination
from web.access import JOB_READERS, REVIEWERS, role_required


def _queue_context(request: HttpRequest) -> dict:
    form = QueueFilterForm(request.GET)
    filters = form.filters()
    now = timezone.now()
    requests = selectors.held_approvals(filters, now=now)
    key = pagination.decode(request.GET.get("after"))
    requests = pagination.after(requests, key, fields=("created_at", "id"))
    page = pagination.page(requests, settings.ARBITER_UI_PAGE_SIZE, key=("created_at", "pk"))
    count, more = selectors.held_count(filters, now=now)
    query = request.GET.copy()
    query.pop("after", None)
    return {
        "form": form,
        "rows": selectors.with_decisions(page.items),
        "next_cursor": page.next_cursor,
        "query": query.urlencode(),
        "count": count,
        "count_more": more,
        "first_page": key is None,
    }


@require_GET
@role_required(*JOB_READERS)
def queue(request: HttpRequest) -> HttpResponse:
    context = _queue_context(request)
    if request.htmx:
        part = "rows" if request.GET.get("after") else "results"
        return render(request, f"review/queue.html#{part}", context)
    return render(request, "review/queue.html", context)


@require_GET
@role_required(*JOB_READERS)
def queue_count(request: HttpRequest) -> HttpResponse:
    """The small partial the queue page polls every 10 s."""
    filters = QueueFilterForm(request.GET).filters()
    count, more = selectors.held_count(filters, now=timezone.now())
    seen = request.GET.get("seen", "")
    query = request.GET.copy()
    query.pop("seen", None)
    return render(
        request,
        "review/queue.html#count",
        {"count": count, "count_more": more, "seen": int(seen) if seen.isdigit() else count,
         "query": query.urlencode()},
    )


@require_POST
@role_required(*REVIEWERS)
def queue_bulk(request: HttpRequest) -> HttpResponse:
    """One decision and one reason for many jobs; each goes through the service on its own, so one
    failure (someone else acted, the reviewer submitted it) is reported without stopping the rest."""
    form = BulkForm(request.POST)
    results = []
    if form.is_valid():
        decide = approval_approve if form.cleaned_data["decision"] == "approve" else approval_reject
        selected = form.selected()
        jobs = Job.objects.in_bulk([job_id for job_id, _ in selected])
        for job_id, version in selected:
            job = jobs.get(job_id)
            if job is None:
                results.append((job_id, False, "no such job"))
                continue
            try:
                job = decide(job=job, user=request.user, reason=form.cleaned_data["reason"], expected_version=version)
            except ReviewError as error:
                results.append((job_id, False, str(error)))
            else:
                results.append((job_id, True, job.get_status_display().lower()))
    context = {"bulk_form": form, "results": results, "failures": sum(1 for r in results if not r[1])}
    if request.htmx:
        response = render(request, "review/queue.html#bulk_results", context, status=200 if form.is_valid() else 400)
        return trigger_client_event(response, "queue-changed")
    context.update(_queue_context(request))
    return render(request, "review/queue.html", context, status=200 if form.is_valid() else 400)
