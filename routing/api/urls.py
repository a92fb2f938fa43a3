from django.urls import path

from routing.api import grants, jobs, runs
from routing.api.admin import applications, budgets, catalog, erasures, keys, policies

urlpatterns = [
    path("jobs", jobs.JobsApi.as_view(), name="api-jobs"),
    path("jobs/<str:job_id>", jobs.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<str:job_id>/cancel", jobs.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<str:job_id>/events", jobs.JobEventsApi.as_view(), name="api-job-events"),
    path("runs/<str:run_id>", runs.RunDetailApi.as_view(), name="api-run"),
    path("runs/<str:run_id>/close", runs.RunCloseApi.as_view(), name="api-run-close"),
    path("grants/<str:grant_id>/redeem", grants.GrantRedeemApi.as_view(), name="api-grant-redeem"),
    path("admin/policies", policies.PoliciesApi.as_view(), name="api-admin-policies"),
    path("admin/policies/<slug:name>/versions", policies.PolicyVersionsApi.as_view(), name="api-admin-versions"),
    path(
        "admin/policies/<slug:name>/versions/<str:number>",
        policies.PolicyVersionDetailApi.as_view(),
        name="api-admin-version",
    ),
    path(
        "admin/policies/<slug:name>/versions/<str:number>/submit",
        policies.PolicyVersionSubmitApi.as_view(),
        name="api-admin-version-submit",
    ),
    path(
        "admin/policies/<slug:name>/versions/<str:number>/activate",
        policies.PolicyVersionActivateApi.as_view(),
        name="api-admin-version-activate",
    ),
    path("admin/deployments", catalog.DeploymentsApi.as_view(), name="api-admin-deployments"),
    path("admin/deployments/<slug:name>", catalog.DeploymentDetailApi.as_view(), name="api-admin-deployment"),
    path(
        "admin/deployments/<slug:name>/disable",
        catalog.DeploymentDisableApi.as_view(),
        name="api-admin-deployment-disable",
    ),
    path(
        "admin/deployments/<slug:name>/enable",
        catalog.DeploymentEnableApi.as_view(),
        name="api-admin-deployment-enable",
    ),
    path("admin/erasures", erasures.ErasuresApi.as_view(), name="api-admin-erasures"),
    path("admin/applications", applications.ApplicationsApi.as_view(), name="api-admin-applications"),
    path("admin/applications/<slug:slug>/budget", budgets.ApplicationBudgetApi.as_view(), name="api-admin-budget"),
    path("admin/applications/<slug:slug>/keys", keys.ApiKeysApi.as_view(), name="api-admin-keys"),
    path(
        "admin/applications/<slug:slug>/keys/<str:prefix>/revoke",
        keys.ApiKeyRevokeApi.as_view(),
        name="api-admin-key-revoke",
    ),
]
