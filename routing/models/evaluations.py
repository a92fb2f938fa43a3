from __future__ import annotations

import pgtrigger
from django.db import models

from routing.models.policies import PolicyVersion


class EvaluationKind(models.TextChoices):
    EVAL = "eval", "policy evaluation on recorded outcomes"
    CALIBRATION = "calibration", "threshold calibration"
    HISTORY = "history", "routing-only replay of past jobs"


class Evaluation(models.Model):
    """One offline run: what was asked (parameters), what came out (report), and which policy version it
    is about — the one evaluated or replayed, or the draft a calibration wrote. The evidence behind a
    calibrated version lives here; the version's comment names this row."""

    kind = models.CharField(max_length=16, choices=EvaluationKind.choices)
    parameters = models.JSONField(default=dict)
    report = models.JSONField(default=dict)
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="evaluations"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        triggers = [
            # Evidence for a policy version must not change after the fact; only the link may be set.
            pgtrigger.ReadOnly(
                name="evaluation_content_read_only", fields=["kind", "parameters", "report", "created_at"]
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} evaluation {self.pk}"
