from django.urls import path

from routing.api import admin, erasure, jobs

urlpatterns = [
    path("jobs", jobs.JobsApi.as_view(), name="api-jobs"),
    path("jobs/<str:job_id>", jobs.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<str:job_id>/cancel", jobs.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<str:job_id>/events", jobs.JobEventsApi.as_view(), name="api-job-events"),
    path("admin/policies", admin.PoliciesApi.as_view(), name="api-admin-policies"),
    path("admin/policies/<slug:name>/versions", admin.PolicyVersionsApi.as_view(), name="api-admin-versions"),
    path(
        "admin/policies/<slug:name>/versions/<str:number>",
        admin.PolicyVersionDetailApi.as_view(),
        name="api-admin-version",
    ),
    path(
        "admin/policies/<slug:name>/versions/<str:number>/submit",
        admin.PolicyVersionSubmitApi.as_view(),
        name="api-admin-version-submit",
    ),
    path(
        "admin/policies/<slug:name>/versions/<str:number>/activate",
        admin.PolicyVersionActivateApi.as_view(),
        name="api-admin-version-activate",
    ),
    path("admin/deployments", admin.DeploymentsApi.as_view(), name="api-admin-deployments"),
    path("admin/deployments/<slug:name>", admin.DeploymentDetailApi.as_view(), name="api-admin-deployment"),
    path(
        "admin/deployments/<slug:name>/disable",
        admin.DeploymentDisableApi.as_view(),
        name="api-admin-deployment-disable",
    ),
    path(
        "admin/deployments/<slug:name>/enable", admin.DeploymentEnableApi.as_view(), name="api-admin-deployment-enable"
    ),
    path("admin/erasures", erasure.ErasuresApi.as_view(), name="api-admin-erasures"),
    path("admin/applications", admin.ApplicationsApi.as_view(), name="api-admin-applications"),
    path("admin/applications/<slug:slug>/budget", admin.ApplicationBudgetApi.as_view(), name="api-admin-budget"),
    path("admin/applications/<slug:slug>/keys", admin.ApiKeysApi.as_view(), name="api-admin-keys"),
    path(
        "admin/applications/<slug:slug>/keys/<str:prefix>/revoke",
        admin.ApiKeyRevokeApi.as_view(),
        name="api-admin-key-revoke",
    ),
]
