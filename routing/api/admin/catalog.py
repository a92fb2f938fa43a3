"""The model catalog: list, add, change, disable and enable deployments. Scope `platform:admin`."""

from __future__ import annotations

from django.db import IntegrityError
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.admin.base import NAME, PLATFORM, PLATFORM_DOC, TAGS, AdminView, not_found
from routing.api.errors import field_problem
from routing.api.schema import problems
from routing.api.serializers.admin.catalog import (
    DeploymentCreateInputSerializer,
    DeploymentOutputSerializer,
    DeploymentUpdateInputSerializer,
)
from routing.models import ModelDeployment
from routing.services.catalog import DeploymentInvalid, deployment_create, deployment_update


def deployment_or_404(name: str) -> ModelDeployment:
    deployment = selectors.deployment_get(name=name)
    if deployment is None:
        raise not_found("deployment", name)
    return deployment


class DeploymentsApi(AdminView):
    levels = {"GET": PLATFORM, "POST": PLATFORM}

    @extend_schema(
        operation_id="admin_deployments_list",
        summary="List the model catalog",
        responses={200: DeploymentOutputSerializer(many=True), **problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(DeploymentOutputSerializer(selectors.deployment_list(), many=True).data)

    @extend_schema(
        operation_id="admin_deployments_create",
        summary="Add a deployment",
        description=PLATFORM_DOC
        + "`api_key_env` is the NAME of the environment variable that holds the key: one starting with "
        "`ARBITER_PROVIDER_KEY_` or listed in `ARBITER_PROVIDER_KEY_ENV_ALLOWLIST`. `base_url` gets the "
        "webhooks' address checks (no metadata, link-local; loopback and private only where allowed).",
        request=DeploymentCreateInputSerializer,
        responses={201: DeploymentOutputSerializer, **problems(409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = DeploymentCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if selectors.deployment_get(name=serializer.validated_data["name"]) is not None:
            raise field_problem("name", "a deployment with this name exists", status_code=409, code="exists")
        try:
            deployment = deployment_create(actor=self.actor, **serializer.validated_data)
        except DeploymentInvalid as invalid:
            raise field_problem(invalid.field, str(invalid), code="deployment_refused") from None
        except IntegrityError:
            raise field_problem("name", "a deployment with this name exists", status_code=409, code="exists") from None
        return Response(DeploymentOutputSerializer(deployment).data, status=201)


class DeploymentDetailApi(AdminView):
    levels = {"GET": PLATFORM, "PATCH": PLATFORM}

    @extend_schema(
        operation_id="admin_deployments_retrieve",
        parameters=[NAME],
        summary="Read a deployment",
        responses={200: DeploymentOutputSerializer, **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(DeploymentOutputSerializer(deployment_or_404(name)).data)

    @extend_schema(
        operation_id="admin_deployments_update",
        parameters=[NAME],
        summary="Change a deployment",
        description=PLATFORM_DOC + "Deployments are never deleted (steps refer to them): disable one instead.",
        request=DeploymentUpdateInputSerializer,
        responses={200: DeploymentOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def patch(self, request: Request, name: str) -> Response:
        deployment = deployment_or_404(name)
        serializer = DeploymentUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            deployment = deployment_update(deployment=deployment, actor=self.actor, **serializer.validated_data)
        except DeploymentInvalid as invalid:
            raise field_problem(invalid.field, str(invalid), code="deployment_refused") from None
        return Response(DeploymentOutputSerializer(deployment).data)


class DeploymentDisableApi(AdminView):
    levels = {"POST": PLATFORM}
    enabled = False

    @extend_schema(
        operation_id="admin_deployments_disable",
        parameters=[NAME],
        summary="Disable a deployment (instead of delete)",
        description=PLATFORM_DOC,
        request=None,
        responses={200: DeploymentOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str) -> Response:
        deployment = deployment_update(deployment=deployment_or_404(name), actor=self.actor, enabled=self.enabled)
        return Response(DeploymentOutputSerializer(deployment).data)


class DeploymentEnableApi(DeploymentDisableApi):
    enabled = True

    @extend_schema(
        operation_id="admin_deployments_enable",
        parameters=[NAME],
        summary="Enable a deployment",
        description=PLATFORM_DOC,
        request=None,
        responses={200: DeploymentOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)
