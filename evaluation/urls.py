"""Evaluation's URLs: evaluation reports and history replays of a policy version."""

from django.urls import path

from evaluation import views

urlpatterns = [
    path("evaluations/", views.evaluation_list, name="evaluations"),
    path("evaluations/<int:evaluation_id>/", views.evaluation_detail, name="evaluation"),
    path("evaluations/replays/<int:run_id>/", views.history_replay_progress, name="history-replay"),
    path("policies/<slug:name>/v<int:number>/replay", views.history_replay_start, name="policy-history-replay"),
]
