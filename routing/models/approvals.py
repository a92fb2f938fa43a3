from __future__ import annotations

from django.conf import settings
from django.db import models

from routing.models.jobs import Job


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    OVERRIDDEN = "overridden"
    ESCALATED = "escalated"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ApprovalRequest(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="approval_requests")
    rule_ids = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    # What the decision is taken on: one entry per rule that holds the answer, each with its own group
    # and number of distinct approvers ({"rule": id, "group": role, "approvers": n}); every one of them
    # must be met. `required_approvers` (the largest) and `eligible_group` (the first rule's) summarise
    # it for queues and ledger bodies only.
    requirements = models.JSONField(default=list)
    required_approvers = models.PositiveSmallIntegerField(default=1)
    eligible_group = models.CharField(max_length=80, default="reviewer")
    expires_at = models.DateTimeField()
    on_expiry = models.CharField(max_length=16, default="reject")
    status = models.CharField(max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job"], condition=models.Q(status="pending"), name="one_pending_approval_per_job"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at", "id"], name="approval_queue"),
            models.Index(
                fields=["expires_at"], condition=models.Q(status="pending"), name="approval_deadline"
            ),
        ]

    def __str__(self) -> str:
        return f"approval {self.pk} for {self.job_id} ({self.status})"


class DecisionKind(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    OVERRIDE = "override"
    ESCALATE = "escalate"


class ApprovalDecision(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=DecisionKind.choices)
    reason = models.TextField(blank=True)
    override = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Four eyes: one person counts once towards the approvals a request needs.
            models.UniqueConstraint(fields=["request", "actor"], name="one_decision_per_reviewer"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor_id} on approval {self.request_id}"
