"""Applications: list and create. Scope `platform:admin`."""

from __future__ import annotations

from django.db import IntegrityError
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.admin.base import PLATFORM, PLATFORM_DOC, TAGS, AdminView
from routing.api.errors import field_problem
from routing.api.schema import problems
from routing.api.serializers.admin.applications import ApplicationCreateInputSerializer, ApplicationOutputSerializer
from routing.services.catalog import application_create


class ApplicationsApi(AdminView):
    levels = {"GET": PLATFORM, "POST": PLATFORM}

    @extend_schema(
        operation_id="admin_applications_list",
        summary="List applications",
        description=PLATFORM_DOC,
        responses={200: ApplicationOutputSerializer(many=True), **problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(ApplicationOutputSerializer(selectors.application_list(), many=True).data)

    @extend_schema(
        operation_id="admin_applications_create",
        summary="Create an application",
        description=PLATFORM_DOC,
        request=ApplicationCreateInputSerializer,
        responses={201: ApplicationOutputSerializer, **problems(409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = ApplicationCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if selectors.application_get(slug=serializer.validated_data["slug"]) is not None:
            raise field_problem("slug", "an application with this slug exists", status_code=409, code="exists")
        try:
            application = application_create(actor=self.actor, **serializer.validated_data)
        except IntegrityError:
            raise field_problem(
                "slug", "an application with this slug exists", status_code=409, code="exists"
            ) from None
        return Response(ApplicationOutputSerializer(application).data, status=201)
