"""The root URLconf: the project's own pages (health, sign-in, the API schema) and each app's `urls.py`."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane.health import healthz

login = auth_views.LoginView.as_view(
    template_name="auth/login.html",
    redirect_authenticated_user=True,
    extra_context={
        "session_hours": settings.SESSION_ABSOLUTE_SECONDS // 3600,
        "idle_minutes": settings.SESSION_IDLE_SECONDS // 60,
    },
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("login/", login, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("routing.urls")),
    path("", include("review.urls")),
    path("", include("evaluation.urls")),
    path("", include("audit.urls")),
]

# What escaped every view and middleware: an outage is a 503 with Retry-After, and `/api/` and `/v1/`
# answer in the error shape their clients parse (named by string: the URLconf includes the apps the same way).
handler500 = "routing.api.errors.server_error"
