"""The web UI's URLs (sign-in, dashboard, review queue, jobs, policies, evaluations, catalog, ledger)."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

from audit.ui import actions, dashboard, erasure, jobs, ledger, queue
from routing.ui import applications, catalog, evaluations, policies

login = auth_views.LoginView.as_view(
    template_name="auth/login.html",
    redirect_authenticated_user=True,
    extra_context={
        "session_hours": settings.SESSION_ABSOLUTE_SECONDS // 3600,
        "idle_minutes": settings.SESSION_IDLE_SECONDS // 60,
    },
)

urlpatterns = [
    path("login/", login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.dashboard, name="dashboard"),
    # Review
    path("review/", queue.queue, name="queue"),
    path("review/count", queue.queue_count, name="queue-count"),
    path("review/bulk", queue.queue_bulk, name="queue-bulk"),
    path("jobs/", jobs.job_list, name="jobs"),
    path("jobs/<uuid:job_id>/", jobs.job_detail, name="job"),
    path("jobs/<uuid:job_id>/verify", jobs.job_verify, name="job-verify"),
    path("jobs/<uuid:job_id>/compare", jobs.job_compare, name="job-compare"),
    path("jobs/<uuid:job_id>/approve", actions.job_approve, name="job-approve"),
    path("jobs/<uuid:job_id>/reject", actions.job_reject, name="job-reject"),
    path("jobs/<uuid:job_id>/escalate", actions.job_escalate, name="job-escalate"),
    path("jobs/<uuid:job_id>/override/preview", actions.job_override_preview, name="job-override-preview"),
    path("jobs/<uuid:job_id>/override", actions.job_override, name="job-override"),
    path("jobs/<uuid:job_id>/replay", actions.job_replay_start, name="job-replay"),
    # Policies
    path("policies/", policies.policy_list, name="policies"),
    path("policies/<slug:name>/", policies.policy_detail, name="policy"),
    path("policies/<slug:name>/new", policies.policy_version_new, name="policy-version-new"),
    path("policies/<slug:name>/check", policies.policy_check, name="policy-check"),
    path("policies/<slug:name>/diff", policies.policy_diff, name="policy-diff"),
    path("policies/<slug:name>/v<int:number>/", policies.policy_version, name="policy-version"),
    path("policies/<slug:name>/v<int:number>/thresholds", policies.policy_thresholds, name="policy-thresholds"),
    path(
        "policies/<slug:name>/v<int:number>/submit", policies.policy_version_submit_view, name="policy-version-submit"
    ),
    path(
        "policies/<slug:name>/v<int:number>/activate",
        policies.policy_version_activate_view,
        name="policy-version-activate",
    ),
    path(
        "policies/<slug:name>/v<int:number>/replay",
        evaluations.history_replay_start,
        name="policy-history-replay",
    ),
    # Evaluations
    path("evaluations/", evaluations.evaluation_list, name="evaluations"),
    path("evaluations/<int:evaluation_id>/", evaluations.evaluation_detail, name="evaluation"),
    path("evaluations/replays/<int:run_id>/", evaluations.history_replay_progress, name="history-replay"),
    # Catalog, applications, keys, budgets
    path("catalog/", catalog.catalog, name="catalog"),
    path("catalog/<slug:name>/enabled", catalog.deployment_toggle, name="deployment-toggle"),
    path("applications/", applications.application_list, name="applications"),
    path("applications/<slug:slug>/", applications.application_detail, name="application"),
    path("applications/<slug:slug>/keys", applications.api_key_new, name="application-key-new"),
    path(
        "applications/<slug:slug>/keys/<str:prefix>/revoke",
        applications.api_key_revoke_view,
        name="application-key-revoke",
    ),
    path("applications/<slug:slug>/budget", applications.application_budget, name="application-budget"),
    # Ledger
    path("ledger/", ledger.ledger_events, name="ledger"),
    path("ledger/events/<int:event_id>/", ledger.ledger_event, name="ledger-event"),
    path("ledger/exports/new", ledger.export_new, name="ledger-export-new"),
    path("ledger/exports/<str:export_id>/", ledger.export_progress, name="ledger-export"),
    path("ledger/exports/<str:export_id>/download", ledger.export_download, name="ledger-export-download"),
    # Erasure of personal data (by job, application or data subject)
    path("erasure/", erasure.erasure_new, name="erasure"),
    path("erasure/preview", erasure.erasure_preview, name="erasure-preview"),
    path("erasure/confirm", erasure.erasure_confirm, name="erasure-confirm"),
]
