"""Deleting a stored response (`DELETE /v1/responses/{id}`).

What an application deletes is its handle on the response, not the record. The job — the request, the
governed answer, the approvals — and its ledger events are the record of what the model was asked and
what was released, and they stay exactly as they were (erasure, `routing.services.erasure`, is the way
content goes, under a stated reason). After the delete the response can no longer be read back, listed
or continued with `previous_response_id`; a held job stays held and its reviewers still decide it.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import StoredResponse


def stored_response_delete(*, stored: StoredResponse, actor: Actor) -> bool:
    """Remove the response's handle and write `response.deleted`, in one transaction. False when it was
    already gone (a concurrent delete got there first)."""
    with transaction.atomic():
        removed = StoredResponse.objects.filter(pk=stored.pk, store=True, deleted_at=None).update(
            deleted_at=timezone.now()
        )
        if not removed:
            return False
        ledger.append(
            "response.deleted",
            actor=actor,
            subject={"job": stored.job_id, "application": stored.job.application_id},
            body={"response": f"resp_{stored.job_id.hex}"},
        )
    return True
