"""The erasure page: choose what to erase, see the jobs it would touch, confirm with a reason.

The preview and the erasure call the same service as the command and the admin API; the confirmation
names how many jobs the person saw, so that an erasure never touches more than was previewed."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from audit.ledger import Actor
from routing.services.erasure import ErasureError, ErasureSelection, erasure_apply, erasure_select
from routing.ui.forms import ErasureForm
from web.access import ERASERS, role_required

TEMPLATE = "erasure/erasure.html"


@require_GET
@role_required(*ERASERS)
def erasure_new(request: HttpRequest) -> HttpResponse:
    return render(request, TEMPLATE, {"form": ErasureForm()})


@require_POST
@role_required(*ERASERS)
def erasure_preview(request: HttpRequest) -> HttpResponse:
    form = ErasureForm(request.POST)
    selection = _selection(form)
    if selection is None:
        return _invalid(request, form)
    context = {"form": form, "selection": selection, "jobs": selection.preview()}
    return render(request, f"{TEMPLATE}#preview" if request.htmx else TEMPLATE, context)


@require_POST
@role_required(*ERASERS)
def erasure_confirm(request: HttpRequest) -> HttpResponse:
    form = ErasureForm(request.POST)
    selection = _selection(form)
    if selection is None:
        return _invalid(request, form)
    if request.POST.get("expected_jobs") != str(len(selection.job_ids)):
        form.add_error(None, "What this would erase changed since the preview: check the list again.")
        context = {"form": form, "selection": selection, "jobs": selection.preview()}
        return render(request, TEMPLATE, context, status=409)
    data = form.cleaned_data
    outcome = erasure_apply(
        selection=selection, actor=Actor.user(request.user.pk), reason=data["reason"], reference=data["reference"]
    )
    context = {"form": ErasureForm(), "outcome": outcome, "erased": selection.preview()}
    return render(request, TEMPLATE, context)


def _selection(form: ErasureForm) -> ErasureSelection | None:
    if not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        return erasure_select(job=data["job_row"], application=data["application"], identifier=data["subject"] or None)
    except ErasureError as error:
        form.add_error(None, str(error))
        return None


def _invalid(request: HttpRequest, form: ErasureForm) -> HttpResponse:
    return render(request, f"{TEMPLATE}#preview" if request.htmx else TEMPLATE, {"form": form}, status=400)
