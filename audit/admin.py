"""Read-only admin views of the ledger: the database refuses changes anyway; the admin never offers them."""

from __future__ import annotations

from django.contrib import admin

from audit.models import LedgerCheckpoint, LedgerEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerEvent)
class LedgerEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "seq", "created_at", "event_type", "actor_kind", "actor_id", "subject_job"]
    list_filter = ["event_type", "actor_kind"]
    search_fields = ["subject_job", "subject_application", "subject_policy_version", "actor_id"]
    list_select_related = ["seal"]
    readonly_fields = ["id", "xact_id", "canonical", "created_at", "event_type", "actor_kind", "actor_id"]
    fields = readonly_fields
    show_full_result_count = False  # count(*) over millions of events on every page is wasteful

    @admin.display(description="seq")
    def seq(self, event: LedgerEvent) -> int | None:
        seal = getattr(event, "seal", None)
        return seal.seq if seal else None


@admin.register(LedgerCheckpoint)
class LedgerCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["seq", "hash", "created_at", "public_key"]
    readonly_fields = ["message", "signature", "public_key", "seq", "hash", "created_at"]
    fields = readonly_fields
