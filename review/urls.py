"""Review's URLs: the queue, the job pages and the decisions taken on them; the review API."""

from django.urls import include, path

from review import actions, job_pages, queue, run_pages, tokens

urlpatterns = [
    path("review/", queue.queue, name="queue"),
    path("review/count", queue.queue_count, name="queue-count"),
    path("review/bulk", queue.queue_bulk, name="queue-bulk"),
    path("jobs/", job_pages.job_list, name="jobs"),
    path("jobs/<uuid:job_id>/", job_pages.job_detail, name="job"),
    path("jobs/<uuid:job_id>/verify", job_pages.job_verify, name="job-verify"),
    path("jobs/<uuid:job_id>/compare", job_pages.job_compare, name="job-compare"),
    path("jobs/<uuid:job_id>/approve", actions.job_approve, name="job-approve"),
    path("jobs/<uuid:job_id>/reject", actions.job_reject, name="job-reject"),
    path("jobs/<uuid:job_id>/escalate", actions.job_escalate, name="job-escalate"),
    path("jobs/<uuid:job_id>/override/preview", actions.job_override_preview, name="job-override-preview"),
    path("jobs/<uuid:job_id>/override", actions.job_override, name="job-override"),
    path("jobs/<uuid:job_id>/replay", actions.job_replay_start, name="job-replay"),
    path("review/tokens/", tokens.token_list, name="review-tokens"),
    path("review/tokens/new", tokens.token_new, name="review-token-new"),
    path("review/tokens/<str:prefix>/revoke", tokens.token_revoke, name="review-token-revoke"),
    path("runs/", run_pages.run_list, name="runs"),
    path("runs/<uuid:run_id>/", run_pages.run_detail, name="run"),
    path("api/v1/review/", include("review.api_urls")),
]
