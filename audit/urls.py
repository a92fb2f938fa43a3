"""The ledger's pages: events, one event, and export packs."""

from django.urls import path

from audit.ui import ledger

urlpatterns = [
    path("ledger/", ledger.ledger_events, name="ledger"),
    path("ledger/events/<int:event_id>/", ledger.ledger_event, name="ledger-event"),
    path("ledger/exports/new", ledger.export_new, name="ledger-export-new"),
    path("ledger/exports/<str:export_id>/", ledger.export_progress, name="ledger-export"),
    path("ledger/exports/<str:export_id>/download", ledger.export_download, name="ledger-export-download"),
]
