from __future__ import annotations

import uuid

from django.db import models

from routing.models.applications import Application
from routing.models.approvals import ApprovalRequest
from routing.models.jobs import Job


class ApprovalGrant(models.Model):
    """Proof, signed with the ledger's key, that people approved one tool call of a job's answer: bound to
    the application, the job, the tool, the SHA-256 of its canonical arguments, the policy version, the
    approvers, an expiry and a nonce (`message`, the signed canonical JSON). The application verifies it
    offline and redeems it once before executing the call (routing.services.grants)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="approval_grants")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="approval_grants")
    approval = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="grants")
    tool_call_index = models.PositiveSmallIntegerField()
    tool_call_id = models.CharField(max_length=200)
    tool = models.CharField(max_length=200)
    arguments_sha256 = models.CharField(max_length=64)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # The signed bytes (UTF-8 of this text) and the signature: the grant as the application holds it.
    message = models.TextField()
    signature = models.CharField(max_length=100)
    public_key = models.CharField(max_length=100)
    # Set once, by a conditional UPDATE (redeemed_at IS NULL): single use even under concurrent redemptions.
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_by_key = models.CharField(max_length=16, blank=True, help_text="The prefix of the key that redeemed it.")

    class Meta:
        ordering = ["job", "tool_call_index"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "tool_call_index"], name="one_grant_per_approved_tool_call"),
        ]

    def __str__(self) -> str:
        return f"grant {self.pk} for {self.tool} of job {self.job_id}"
