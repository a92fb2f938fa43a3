"""The ledger browser: filter events, open one, see the chain's status, export an evidence pack."""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audit import checkpoints, sealer
from audit.models import LedgerCheckpoint, LedgerEvent
from audit.selectors import events_list, with_actor_names
from audit.ui import exports
from audit.ui.forms import ExportForm, LedgerFilterForm
from web import pagination
from web.access import EXPORTERS, LEDGER_READERS, can, role_required


def chain_status() -> dict:
    """The head, the latest checkpoint (and whether its signature holds), how far sealing is behind."""
    latest = LedgerCheckpoint.objects.order_by("-seq", "-id").first()
    checkpoint = None
    if latest is not None:
        checkpoint = checkpoints.Checkpoint(latest.message, latest.signature, latest.public_key, "database")
    head = sealer.chain_head()
    return {
        "head": head,
        "unsigned": head.seq - checkpoint.seq if head and checkpoint else None,
        "checkpoint": checkpoint,
        "checkpoint_problem": checkpoint.signature_problem(checkpoints.trusted_public_keys()) if checkpoint else None,
        "lag": sealer.seal_lag(window=200),
    }


@require_GET
@role_required(*LEDGER_READERS)
def ledger_events(request: HttpRequest) -> HttpResponse:
    form = LedgerFilterForm(request.GET)
    # Newest first, by chain order (xact_id, id): every filter's index ends in those two columns.
    events = events_list(**form.filters()).order_by("-xact_id", "-id")
    key = pagination.decode(request.GET.get("after"), numeric=True)
    events = pagination.after(events, key and (key[0], int(key[1])), fields=("xact_id", "id"), descending=True)
    page = pagination.page(events, settings.ARBITER_UI_PAGE_SIZE, key=("xact_id", "pk"))
    query = request.GET.copy()
    query.pop("after", None)
    context = {
        "form": form,
        "events": with_actor_names(page.items),
        "next_cursor": page.next_cursor,
        "query": query.urlencode(),
        "first_page": key is None,
    }
    if request.htmx:
        return render(request, f"ledger/events.html#{'rows' if key else 'results'}", context)
    context.update(chain_status())
    context["can_export"] = can(request.user, *EXPORTERS)
    return render(request, "ledger/events.html", context)


@require_GET
@role_required(*LEDGER_READERS)
def ledger_event(request: HttpRequest, event_id: int) -> HttpResponse:
    event = get_object_or_404(LedgerEvent.objects.select_related("seal"), pk=event_id)
    return render(request, "ledger/event.html", {"event": event, "document": event.document})


@require_http_methods(["GET", "POST"])
@role_required(*EXPORTERS)
def export_new(request: HttpRequest) -> HttpResponse:
    form = ExportForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        since, until = form.window()
        application = form.cleaned_data["application"]
        state = exports.export_start(
            user=request.user,
            since=since,
            until=until,
            application=application or None,
            description=form.describe(),
        )
        return redirect("ledger-export", state.id)
    return render(request, "ledger/export.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
@role_required(*EXPORTERS)
def export_progress(request: HttpRequest, export_id: str) -> HttpResponse:
    state = exports.export_state(export_id)
    if state is None:
        raise Http404("no such export (exports are kept for a day)")
    context = {"state": state, "form": ExportForm()}
    if request.htmx:
        return render(request, "ledger/export.html#progress", context)
    return render(request, "ledger/export.html", context)


@require_GET
@role_required(*EXPORTERS)
def export_download(request: HttpRequest, export_id: str) -> HttpResponse:
    state = exports.export_state(export_id)
    path = exports.export_file(state) if state else None
    if path is None:
        raise Http404("this export is not ready, failed, or has expired")
    return FileResponse(path.open("rb"), as_attachment=True, filename=state.filename, content_type="application/zip")
