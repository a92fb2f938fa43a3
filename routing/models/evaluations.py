from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models

from routing.models.policies import PolicyVersion


class EvaluationKind(models.TextChoices):
    EVAL = "eval", "policy evaluation on recorded outcomes"
    CALIBRATION = "calibration", "threshold calibration"
    HISTORY = "history", "replay of past jobs under a version (routing only, or full re-execution)"


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


class HistoryReplayMode(models.TextChoices):
    ROUTING = "routing", "routing only, from recorded confidences (no model is called)"
    FULL = "full", "full re-execution under a cost cap (calls models, spends money)"


class HistoryReplayStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class HistoryReplayRun(models.Model):
    """A replay of past jobs under a policy version, started from the UI and run by a worker. The row is
    the truth the progress bar reads; the report it produces is an `Evaluation` row, linked when done."""

    FINISHED = (HistoryReplayStatus.DONE, HistoryReplayStatus.FAILED)

    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="history_replays")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    mode = models.CharField(max_length=16, choices=HistoryReplayMode.choices)
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=HistoryReplayStatus.choices, default=HistoryReplayStatus.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    evaluation = models.ForeignKey(
        Evaluation, null=True, blank=True, on_delete=models.PROTECT, related_name="history_replay_runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The last time the worker said anything (start, progress, end): how stale a run is, is measured here.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"history replay {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        if self.status == HistoryReplayStatus.DONE:
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def last_activity(self):
        return self.heartbeat_at or self.created_at
