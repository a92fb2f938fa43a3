"""Deleting a stored response (`DELETE /v1/responses/{id}`).

What an application deletes is its handle on the response, not the record. The job — the request, the
governed answer, the approvals — and its ledger events are the record of what the model was asked and
what was released, and they stay exactly as they were (erasure, `routing.services.erasure`, is the way
content goes, under a stated reason). After the delete the response can no longer be read back, listed
or continued with `previous_response_id`; a held job stays held and its reviewers still decide it. An
identical request sent after the delete is a new call with a new response, even within the implicit
idempotency window (routing.services.implicit_idempotency): the deleted job gives up its implicit key.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit import ledger
from audit.ledger import Actor
from routing.models import Job, StoredResponse
from routing.services.implicit_idempotency import PREFIX as IMPLICIT_KEY_PREFIX


def stored_response_delete(*, stored: StoredResponse, actor: Actor) -> bool:
    """Remove the response's handle and write `response.deleted`, in one transaction. False when it was
    already gone (a concurrent delete got there first)."""
    with transaction.atomic():
        removed = StoredResponse.objects.filter(pk=stored.pk, store=True, deleted_at=None).update(
            deleted_at=timezone.now()
        )
        if not removed:
            return False
        # Otherwise a retry-shaped repeat would be answered with the response the application deleted.
        Job.objects.filter(pk=stored.job_id, idempotency_key__startswith=IMPLICIT_KEY_PREFIX).update(
            idempotency_key=None
        )
        ledger.append(
            "response.deleted",
            actor=actor,
            subject={"job": stored.job_id, "application": stored.job.application_id},
            body={"response": f"resp_{stored.job_id.hex}"},
        )
    return True
