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
