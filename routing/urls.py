"""Routing's URLs: the REST API, the OpenAI-compatible endpoint, metrics, and the pages of policies,
the catalog, applications (keys, budgets), erasure and the dashboard."""

from django.urls import include, path

from routing.execute.metrics import metrics_view
from routing.ui import applications, catalog, dashboard, erasure, policies

urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("routing.api.urls")),
    path("v1/", include("routing.api.openai_urls")),
    path("", dashboard.dashboard, name="dashboard"),
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
    path(
        "applications/<slug:slug>/review-notify",
        applications.application_review_notify,
        name="application-review-notify",
    ),
    # Erasure of personal data (by job, application or data subject)
    path("erasure/", erasure.erasure_new, name="erasure"),
    path("erasure/preview", erasure.erasure_preview, name="erasure-preview"),
    path("erasure/confirm", erasure.erasure_confirm, name="erasure-confirm"),
]
