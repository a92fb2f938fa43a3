"""The review API's URLs, under `/api/v1/review/` (review/urls.py includes them)."""

from django.urls import path

from review import api

urlpatterns = [
    path("jobs", api.HeldJobsApi.as_view(), name="api-review-jobs"),
    path("jobs/<str:job_id>", api.HeldJobApi.as_view(), name="api-review-job"),
    path("jobs/<str:job_id>/approve", api.ApproveApi.as_view(), name="api-review-approve"),
    path("jobs/<str:job_id>/reject", api.RejectApi.as_view(), name="api-review-reject"),
    path("jobs/<str:job_id>/override", api.OverrideApi.as_view(), name="api-review-override"),
    path("jobs/<str:job_id>/escalate", api.EscalateApi.as_view(), name="api-review-escalate"),
]
