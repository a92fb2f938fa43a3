from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models

from routing.models.applications import Application
from routing.models.catalog import TIER_CHOICES, ModelDeployment
from routing.models.policies import PolicyVersion
from routing.models.runs import RunRole


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.BLOCKED,
        JobStatus.REJECTED,
        JobStatus.CANCELLED,
        JobStatus.EXPIRED,
    }
)


class JobPurpose(models.TextChoices):
    # An application's own work: its answer is released to the application once governance allows.
    APPLICATION = "application"
    # A reviewer's or admin's replay: an evaluation shown in the UI, never an answer the application reads.
    EVALUATION = "evaluation"


class Job(models.Model):
    """The truth about one unit of work. Messages on the broker carry only its id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="jobs")
    task_type = models.CharField(max_length=32)
    request = models.JSONField(help_text="messages, tools, response_format: what the model is sent.")
    labels = models.JSONField(default=dict, blank=True)
    constraints = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)
    # NULL, not "": the per-application unique constraint must ignore jobs without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_sha256 = models.CharField(max_length=64, blank=True)

    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="jobs")
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replays"
    )
    submitted_by = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The person who submitted it (a replay), so that they cannot approve it themselves.",
    )
    purpose = models.CharField(max_length=16, choices=JobPurpose.choices, default=JobPurpose.APPLICATION)
    run = models.ForeignKey("routing.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    run_role = models.CharField(max_length=16, choices=RunRole.choices, blank=True)
    # What the run's limits decided when the job was first routed (routing.execute.runs): later attempts
    # keep it, so that a resumed job is neither counted again nor judged again.
    run_admission = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    status_reason = models.TextField(blank=True)
    # Claiming and fencing: only the holder of the current attempt may write; a stale one cannot.
    attempt = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Optimistic locking for reviewers acting on the same job.
    version = models.PositiveIntegerField(default=0)

    input_tokens = models.PositiveIntegerField(default=0)
    complexity = models.FloatField(null=True, blank=True)
    route = models.JSONField(null=True, blank=True, help_text="The plan and its explanation.")
    result = models.JSONField(null=True, blank=True)
    final_tier = models.CharField(max_length=16, choices=TIER_CHOICES, blank=True)
    final_confidence = models.FloatField(null=True, blank=True)
    total_cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    total_tokens = models.PositiveIntegerField(default=0)
    escalations = models.PositiveSmallIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(
        null=True, blank=True, help_text="When its content was erased (a data-protection request)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_idempotency_key_per_application",
            ),
        ]
        indexes = [
            # The API's pages: an application's jobs newest first, and the same for one status.
            models.Index(fields=["application", "-created_at", "-id"], name="job_app_created"),
            models.Index(fields=["application", "status", "-created_at", "-id"], name="job_app_status_created"),
            models.Index(fields=["status", "-created_at", "-id"], name="job_status_created"),
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status__in=["queued", "running"]),
                name="job_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StepOutcome(models.TextChoices):
    ACCEPTED = "accepted"
    ESCALATED = "escalated"
    FAILED = "failed"


class Step(models.Model):
    """One model call of one attempt. Written once: (job, attempt, index) is unique."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    attempt = models.PositiveIntegerField()
    index = models.PositiveSmallIntegerField()
    tier = models.CharField(max_length=16, choices=TIER_CHOICES)
    deployment = models.ForeignKey(ModelDeployment, null=True, on_delete=models.PROTECT, related_name="steps")
    model = models.CharField(max_length=200, blank=True)
    provider_request_id = models.CharField(max_length=200, blank=True)
    calls = models.PositiveSmallIntegerField(default=1, help_text="Provider calls made, retries included.")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(default=0)
    confidence = models.FloatField(null=True, blank=True)
    confidence_method = models.CharField(max_length=32, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=StepOutcome.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "attempt", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "index"], name="step_once_per_attempt"),
        ]
        indexes = [models.Index(fields=["tier", "created_at"], name="step_tier_created")]

    def __str__(self) -> str:
        return f"step {self.index} of {self.job_id} ({self.tier}, {self.outcome})"
