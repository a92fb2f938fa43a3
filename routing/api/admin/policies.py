"""Policies and their versions: list, draft, submit, activate (four-eyes). Scope `platform:admin`."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.admin.base import NAME, PLATFORM, PLATFORM_DOC, TAGS, AdminView, not_found
from routing.api.errors import Problem
from routing.api.schema import problems
from routing.api.serializers.admin.policies import (
    PolicyOutputSerializer,
    PolicyVersionCreateInputSerializer,
    PolicyVersionOutputSerializer,
)
from routing.decide.policy.document import InvalidPolicy
from routing.models import Policy, PolicyVersion
from routing.services.policies import (
    FourEyesRefused,
    PolicyActionError,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)

NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version number.")


def policy_or_404(name: str) -> Policy:
    policy = selectors.policy_get(name=name)
    if policy is None:
        raise not_found("policy", name)
    return policy


def version_or_404(name: str, number: int | str) -> PolicyVersion:
    text = str(number)
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise not_found("version", f"{name} v{text}")
    version = selectors.policy_version_get(policy=policy_or_404(name), number=int(text))
    if version is None:
        raise not_found("version", f"{name} v{number}")
    return version


class PoliciesApi(AdminView):
    levels = {"GET": PLATFORM}

    @extend_schema(
        operation_id="admin_policies_list",
        summary="List policies",
        description=PLATFORM_DOC,
        responses={200: PolicyOutputSerializer(many=True), **problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(PolicyOutputSerializer(selectors.policy_list(), many=True).data)


class PolicyVersionsApi(AdminView):
    levels = {"GET": PLATFORM, "POST": PLATFORM}

    @extend_schema(
        operation_id="admin_policy_versions_list",
        parameters=[NAME],
        summary="List a policy's versions",
        responses={200: PolicyVersionOutputSerializer(many=True), **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, name: str) -> Response:
        versions = selectors.policy_version_list(policy=policy_or_404(name))
        return Response(PolicyVersionOutputSerializer(versions, many=True).data)

    @extend_schema(
        operation_id="admin_policy_versions_create",
        parameters=[NAME],
        summary="Create a draft version",
        description=PLATFORM_DOC + "Authored by the person the key acts for. Validated against the schema and the "
        "catalog before it is saved. An invalid document is a 400 whose `errors` point at the line and path of "
        "each problem.",
        request=PolicyVersionCreateInputSerializer,
        responses={201: PolicyVersionOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str) -> Response:
        policy = policy_or_404(name)
        serializer = PolicyVersionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        parent = version_or_404(name, data["parent"]) if data.get("parent") else None
        try:
            version = policy_version_create(
                policy=policy,
                source=data["source"],
                comment=data.get("comment", ""),
                parent=parent,
                author=self.owner,
                via_key=self.via_key,
            )
        except InvalidPolicy as invalid:
            raise Problem(
                f"the policy document is invalid: {invalid}",
                code="invalid_policy",
                errors=[
                    {"field": "source", "message": str(error), "line": error.line, "path": error.path}
                    for error in invalid.errors
                ],
            ) from None
        return Response(PolicyVersionOutputSerializer(version_or_404(name, version.number)).data, status=201)


class PolicyVersionDetailApi(AdminView):
    levels = {"GET": PLATFORM}

    @extend_schema(
        operation_id="admin_policy_versions_retrieve",
        parameters=[NAME, NUMBER],
        summary="Read a version",
        description=PLATFORM_DOC,
        responses={200: PolicyVersionOutputSerializer, **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, name: str, number: int) -> Response:
        return Response(PolicyVersionOutputSerializer(version_or_404(name, number)).data)


class PolicyVersionSubmitApi(AdminView):
    levels = {"POST": PLATFORM}

    @extend_schema(
        operation_id="admin_policy_versions_submit",
        parameters=[NAME, NUMBER],
        summary="Submit a draft for activation",
        description=PLATFORM_DOC,
        request=None,
        responses={200: PolicyVersionOutputSerializer, **problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        version = version_or_404(name, number)
        try:
            policy_version_submit(version=version, user=self.owner, via_key=self.via_key)
        except PolicyActionError as refused:
            raise Problem(str(refused), status_code=409, code="invalid_state") from None
        return Response(PolicyVersionOutputSerializer(version_or_404(name, number)).data)


class PolicyVersionActivateApi(AdminView):
    levels = {"POST": PLATFORM}

    @extend_schema(
        operation_id="admin_policy_versions_activate",
        parameters=[NAME, NUMBER],
        summary="Activate a submitted version (four-eyes)",
        description=PLATFORM_DOC + "The key acts for its owner, and four-eyes applies to that person: a "
        "version is activated only once submitted (409 `invalid_state` for a draft), and never by the person "
        "who wrote or submitted it (403 `four_eyes`), whichever key or page they use.",
        request=None,
        responses={200: PolicyVersionOutputSerializer, **problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        version = version_or_404(name, number)
        try:
            policy_version_activate(version=version, user=self.owner, via_key=self.via_key)
        except FourEyesRefused as refused:
            raise Problem(str(refused), status_code=403, code="four_eyes") from None
        except PolicyActionError as refused:
            raise Problem(str(refused), status_code=409, code="invalid_state") from None
        return Response(PolicyVersionOutputSerializer(version_or_404(name, number)).data)
