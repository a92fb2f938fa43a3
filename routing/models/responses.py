from __future__ import annotations

from django.db import models

from routing.models.jobs import Job


class StoredResponse(models.Model):
    """A Responses API call (`POST /v1/responses`): the job that answered it and how the call was shaped.

    No content lives here. The conversation the model was sent is the job's request and the answer is the
    job's released result, so a response is read through the release gate and erasing the job erases the
    response. What is kept is the call's shape: whether it may be read back and chained (`store`), the
    response it continued, how many leading messages of the job's request came from `instructions` (a
    continuation drops them: instructions do not carry over), how many messages after them are the
    continued conversation (so the call's own input items can be listed), the `tool_choice` it asked for,
    and when the application deleted it (`DELETE /v1/responses/{id}`: the handle is gone, the job and its
    ledger stay — they are the record, and an application does not delete the record).
    """

    job = models.OneToOneField(Job, primary_key=True, on_delete=models.CASCADE, related_name="stored_response")
    store = models.BooleanField(default=True)
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="continuations")
    instruction_messages = models.PositiveSmallIntegerField(default=0)
    history_messages = models.PositiveIntegerField(default=0)
    tool_choice = models.JSONField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"resp_{self.job_id.hex}"
