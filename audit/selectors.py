"""Reading the ledger. Querysets are in chain order, (xact_id, id), which is seq order once sealed;
`event.seal` (select_related) carries seq and hashes, and is missing for an event not sealed yet."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import QuerySet

from audit.models import LedgerEvent


def events_for_job(job_id: object) -> QuerySet[LedgerEvent]:
    return events_list(job=job_id)


_EVENT_REFS = """
    SELECT e.id, s.seq, e.event_type
      FROM audit_ledgerevent e LEFT JOIN audit_ledgerseal s ON s.event_id = e.id
     WHERE e.subject_job = %s
     ORDER BY e.xact_id, e.id
"""


def event_refs_for_job(job_id: object) -> list[dict[str, Any]]:
    """The id, chain place (None until sealed) and type of each of a job's events, in chain order: what a
    job's detail lists, on every read of a job and every job submitted through the API. One statement
    without the ORM's query compiler or model instances, for three columns (bench/README.md, #15)."""
    with connection.cursor() as cursor:
        cursor.execute(_EVENT_REFS, [str(job_id)])
        return [{"id": id_, "seq": seq, "event_type": event_type} for id_, seq, event_type in cursor.fetchall()]


def events_list(
    *,
    job: object = None,
    application: object = None,
    policy_version: object = None,
    approval: object = None,
    step: object = None,
    event_type: str | None = None,
    actor_kind: str | None = None,
    actor_id: object = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[LedgerEvent]:
    """Events matching every given filter (subject ids compare as strings); `until` is exclusive."""
    filters = {
        "subject_job": job,
        "subject_application": application,
        "subject_policy_version": policy_version,
        "subject_approval": approval,
        "subject_step": step,
        "event_type": event_type,
        "actor_kind": actor_kind,
        "actor_id": actor_id,
    }
    events = LedgerEvent.objects.filter(
        **{column: str(value) for column, value in filters.items() if value is not None}
    )
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events.select_related("seal").order_by("xact_id", "id")


def with_actor_names(events: list[LedgerEvent]) -> list[LedgerEvent]:
    """Name the people among the events' actors (the ledger keeps their ids): one query a page."""
    ids = {event.actor_id for event in events if event.actor_kind == "user" and event.actor_id.isdigit()}
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}
    for event in events:
        person = event.actor_kind == "user" and event.actor_id.isdigit()
        event.actor_name = names.get(int(event.actor_id)) if person else None
    return events
