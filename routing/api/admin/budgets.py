"""An application's monthly budget: read by the application itself (`app:admin`), set by the platform."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing.api.admin.base import APP, APP_DOC, PLATFORM, PLATFORM_DOC, SLUG, TAGS, AdminView, application_or_404
from routing.api.schema import problems
from routing.api.serializers.admin.applications import ApplicationOutputSerializer
from routing.api.serializers.admin.budgets import BudgetInputSerializer, BudgetOutputSerializer
from routing.execute.budgets import month_spend
from routing.services.catalog import application_budget_set


class ApplicationBudgetApi(AdminView):
    levels = {"GET": APP, "PUT": PLATFORM}

    @extend_schema(
        operation_id="admin_applications_budget_retrieve",
        parameters=[SLUG],
        summary="Read the monthly budget and this month's spend",
        description=APP_DOC,
        responses={200: BudgetOutputSerializer, **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        application = application_or_404(slug)
        return Response(BudgetOutputSerializer({"application": application, "spend": month_spend(application)}).data)

    @extend_schema(
        operation_id="admin_applications_budget",
        parameters=[SLUG],
        summary="Set the monthly budget",
        description=PLATFORM_DOC + "Budgets are set by the platform, never by the application itself. Soft "
        "limit: a ledger event when reached. Hard limit: the policy's `budgets.on_hard_limit` applies "
        "(downgrade or reject). null removes a limit.",
        request=BudgetInputSerializer,
        responses={200: ApplicationOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def put(self, request: Request, slug: str) -> Response:
        application = application_or_404(slug)
        serializer = BudgetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        application = application_budget_set(
            application=application,
            actor=self.actor,
            soft_limit_usd=serializer.validated_data["monthly_soft_limit_usd"],
            hard_limit_usd=serializer.validated_data["monthly_hard_limit_usd"],
        )
        return Response(ApplicationOutputSerializer(application).data)
