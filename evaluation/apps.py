from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    """Replay, calibration and history runs. Its rows (`Evaluation`, `HistoryReplayRun`) are models of
    `routing`; routing never imports this app."""

    name = "evaluation"
    verbose_name = "Evaluation"
