from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models

from routing.models.applications import Application


class RunRole(models.TextChoices):
    PLANNER = "planner"
    SUBAGENT = "subagent"


class Run(models.Model):
    """Calls of one agent run (a planner and its subagents), governed together by the policy's `runs:`
    limits. Its counters are written only under a row lock on the run (routing.execute.runs), so that
    two calls racing at a limit cannot both pass it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="runs")
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Calls admitted (routed) so far; and, as of the last admission, the flagship calls: those that used the
    # flagship and those in flight that can reach it (routing.execute.runs._flagship_calls).
    calls = models.PositiveIntegerField(default=0)
    flagship_calls = models.PositiveIntegerField(default=0)
    # The steps' recorded costs, summed under the same lock at each admission (not a running total that
    # a lost attempt could leave behind).
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["application", "-opened_at"], name="run_app_opened")]

    def __str__(self) -> str:
        return f"run {self.id}"
