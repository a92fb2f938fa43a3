from __future__ import annotations

from django.db import models

from routing.models.jobs import Job


class WebhookDelivery(models.Model):
    """One attempt to deliver a job's event to its callback URL. Every attempt is kept."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=40)
    url = models.URLField(max_length=2000)
    attempt = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    delivered = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "created_at", "id"]
        indexes = [models.Index(fields=["job", "event"], name="webhook_job_event")]

    def __str__(self) -> str:
        return f"{self.event} for {self.job_id}, attempt {self.attempt}"


class WebhookOutbox(models.Model):
    """A job event its application is to be told about, written in the transaction that settles the job.

    The broker may be unreachable at that commit; this row is not. A delivery that ends (delivered,
    refused, or out of attempts) marks it done; the beat sweeper sends again any that is overdue
    (`due_at`: when its next attempt should have started), so a webhook outlives a broker outage or a
    worker that died holding it. Delivery stays at least once: the receiver deduplicates on
    `Arbiter-Delivery`, and a delivered event is never sent again."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_outbox")
    event = models.CharField(max_length=40)
    due_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    # Deliveries begun. One that begins and records no attempt died mid-way (a worker killed, a crash):
    # after ARBITER_WEBHOOK_MAX_ATTEMPTS of those the event is given up, instead of re-sent every sweep.
    started = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "event"], name="webhook_outbox_once_per_event")]
        indexes = [
            models.Index(fields=["due_at"], name="webhook_outbox_pending", condition=models.Q(done_at__isnull=True))
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.job_id}" + (" (done)" if self.done_at else "")
