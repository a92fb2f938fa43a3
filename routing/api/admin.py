"""The admin API (scope `policies:admin`): policies and versions, the model catalog, applications, keys,
budgets. A key with this scope administers the whole installation, not only its own application.

Four-eyes and the API. An API key is not a person: it cannot be the second pair of eyes on anything.
So over the API a version can be created and submitted, and it cannot be activated — activation is done
by a person in the web UI, where the author rule applies (the author of a version cannot activate it).
Versions created here are authored by the key's application, recorded as the inactive user
`app:<slug>` (services record a user as author; that user cannot log in), so that the ledger says
which application wrote them and no human author is claimed.
"""

from __future__ import annotations

from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from audit.ledger import Actor
from routing import selectors
from routing.api.base import ApiView
from routing.api.errors import Problem, field_problem
from routing.api.schema import problems
from routing.api.serializers.admin import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
    ApplicationCreateInputSerializer,
    ApplicationOutputSerializer,
    BudgetInputSerializer,
    DeploymentCreateInputSerializer,
    DeploymentOutputSerializer,
    DeploymentUpdateInputSerializer,
    PolicyOutputSerializer,
    PolicyVersionCreateInputSerializer,
    PolicyVersionOutputSerializer,
)
from routing.models import ApiKey, Application, ModelDeployment, Policy, PolicyVersion
from routing.policy.document import InvalidPolicy
from routing.services.catalog import (
    DeploymentInvalid,
    application_budget_set,
    application_create,
    application_principal,
    deployment_create,
    deployment_update,
)
from routing.services.keys import api_key_create, api_key_revoke
from routing.services.policies import PolicyActionError, policy_version_create, policy_version_submit

ADMIN = "policies:admin"
SLUG_PATTERN = "^[-a-zA-Z0-9_]+$"
NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN)
SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, pattern=SLUG_PATTERN, description="The application.")
NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="The version number.")
PREFIX = OpenApiParameter(
    "prefix", str, OpenApiParameter.PATH, pattern="^[0-9a-f]{12}$", description="The key's prefix (`arb_<prefix>_…`)."
)
TAGS = ["admin"]


def _not_found(what: str, name: object) -> Problem:
    return Problem(f"no {what} {str(name)[:80]!r}", status_code=404, code="not_found")


def policy_or_404(name: str) -> Policy:
    policy = selectors.policy_get(name=name)
    if policy is None:
        raise _not_found("policy", name)
    return policy


def version_or_404(name: str, number: int | str) -> PolicyVersion:
    text = str(number)
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise _not_found("version", f"{name} v{text}")
    version = selectors.policy_version_get(policy=policy_or_404(name), number=int(text))
    if version is None:
        raise _not_found("version", f"{name} v{number}")
    return version


def deployment_or_404(name: str) -> ModelDeployment:
    deployment = selectors.deployment_get(name=name)
    if deployment is None:
        raise _not_found("deployment", name)
    return deployment


def application_or_404(slug: str) -> Application:
    application = selectors.application_get(slug=slug)
    if application is None:
        raise _not_found("application", slug)
    return application


class AdminView(ApiView):
    @property
    def actor(self) -> Actor:
        return Actor.application(self.application.pk)


class PoliciesApi(AdminView):
    required_scopes = {"GET": ADMIN}

    @extend_schema(
        operation_id="admin_policies_list",
        summary="List policies",
        responses={200: PolicyOutputSerializer(many=True), **problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(PolicyOutputSerializer(selectors.policy_list(), many=True).data)


class PolicyVersionsApi(AdminView):
    required_scopes = {"GET": ADMIN, "POST": ADMIN}

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
        description="Validated against the schema and the catalog before it is saved. An invalid document is "
        "a 400 whose `errors` point at the line and path of each problem.",
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
                author=application_principal(application=self.application),
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
    required_scopes = {"GET": ADMIN}

    @extend_schema(
        operation_id="admin_policy_versions_retrieve",
        parameters=[NAME, NUMBER],
        summary="Read a version",
        responses={200: PolicyVersionOutputSerializer, **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, name: str, number: int) -> Response:
        return Response(PolicyVersionOutputSerializer(version_or_404(name, number)).data)


class PolicyVersionSubmitApi(AdminView):
    required_scopes = {"POST": ADMIN}

    @extend_schema(
        operation_id="admin_policy_versions_submit",
        parameters=[NAME, NUMBER],
        summary="Submit a draft for activation",
        request=None,
        responses={200: PolicyVersionOutputSerializer, **problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        version = version_or_404(name, number)
        try:
            policy_version_submit(version=version, user=application_principal(application=self.application))
        except PolicyActionError as refused:
            raise Problem(str(refused), status_code=409, code="invalid_state") from None
        return Response(PolicyVersionOutputSerializer(version_or_404(name, number)).data)


class PolicyVersionActivateApi(AdminView):
    required_scopes = {"POST": ADMIN}

    @extend_schema(
        operation_id="admin_policy_versions_activate",
        parameters=[NAME, NUMBER],
        summary="Activate a version: not over the API",
        description="Always 403 `activation_requires_person`. Four-eyes needs two people, and an API key is "
        "not a person: a policy admin activates a submitted version in the web UI (not its author).",
        request=None,
        responses={**problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        version = version_or_404(name, number)
        raise Problem(
            f"{name} v{version.number} cannot be activated with an API key: activation is a person's act "
            "(four-eyes — the author cannot activate their own version). Submit it, and a policy admin "
            "activates it in the web UI.",
            status_code=403,
            code="activation_requires_person",
        )


class DeploymentsApi(AdminView):
    required_scopes = {"GET": ADMIN, "POST": ADMIN}

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
        description=(
            "`api_key_env` is the NAME of the environment variable that holds the key: one starting with "
            "`ARBITER_PROVIDER_KEY_` or listed in `ARBITER_PROVIDER_KEY_ENV_ALLOWLIST`. `base_url` gets the "
            "webhooks' address checks (no metadata, link-local; loopback and private only where allowed)."
        ),
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
    required_scopes = {"GET": ADMIN, "PATCH": ADMIN}

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
        description="Deployments are never deleted (steps refer to them): disable one instead.",
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
    required_scopes = {"POST": ADMIN}
    enabled = False

    @extend_schema(
        operation_id="admin_deployments_disable",
        parameters=[NAME],
        summary="Disable a deployment (instead of delete)",
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
        request=None,
        responses={200: DeploymentOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, name: str) -> Response:
        return super().post(request, name)


class ApplicationsApi(AdminView):
    required_scopes = {"GET": ADMIN, "POST": ADMIN}

    @extend_schema(
        operation_id="admin_applications_list",
        summary="List applications",
        responses={200: ApplicationOutputSerializer(many=True), **problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return Response(ApplicationOutputSerializer(selectors.application_list(), many=True).data)

    @extend_schema(
        operation_id="admin_applications_create",
        summary="Create an application",
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


class ApplicationBudgetApi(AdminView):
    required_scopes = {"PUT": ADMIN}

    @extend_schema(
        operation_id="admin_applications_budget",
        parameters=[SLUG],
        summary="Set the monthly budget",
        description="Soft limit: a ledger event when reached. Hard limit: the policy's `budgets."
        "on_hard_limit` applies (downgrade or reject). null removes a limit.",
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


class ApiKeysApi(AdminView):
    required_scopes = {"GET": ADMIN, "POST": ADMIN}

    @extend_schema(
        operation_id="admin_keys_list",
        parameters=[SLUG],
        summary="List an application's keys (never their secrets)",
        responses={200: ApiKeyOutputSerializer(many=True), **problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, slug: str) -> Response:
        keys = selectors.api_key_list(application=application_or_404(slug))
        return Response(ApiKeyOutputSerializer(keys, many=True).data)

    @extend_schema(
        operation_id="admin_keys_create",
        parameters=[SLUG],
        summary="Create a key (shown once)",
        request=ApiKeyCreateInputSerializer,
        responses={201: ApiKeyCreatedOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        application = application_or_404(slug)
        serializer = ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, plaintext = api_key_create(application=application, actor=self.actor, **serializer.validated_data)
        return Response(
            {**ApiKeyOutputSerializer(key).data, "key": plaintext}, status=201, headers={"Cache-Control": "no-store"}
        )


class ApiKeyRevokeApi(AdminView):
    required_scopes = {"POST": ADMIN}

    @extend_schema(
        operation_id="admin_keys_revoke",
        parameters=[SLUG, PREFIX],
        summary="Revoke a key (at once, for good)",
        request=None,
        responses={200: ApiKeyOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, prefix: str) -> Response:
        application = application_or_404(slug)
        key: ApiKey | None = selectors.api_key_get(application=application, prefix=prefix)
        if key is None:
            raise _not_found("key", prefix)
        api_key_revoke(key=key, actor=self.actor)
        return Response(ApiKeyOutputSerializer(selectors.api_key_get(application=application, prefix=prefix)).data)
