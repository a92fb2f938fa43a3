"""The admin API, at two levels, each a permission class (routing/api/permissions.py):

- `app:admin` — an application administers itself: its own keys (never wider than the key minting them)
  and its own budget and usage, read-only. It never reaches another application.
- `platform:admin` — the installation: policies and versions, the model catalog, every application, key
  and budget. Only a person with the policy-admin role (or a superuser) holds such a key.

A key acts for the person who minted it (`ApiKey.created_by`): what it creates is authored by that
person, the ledger names the person as actor and the key's prefix as `via_key`, and its powers end
when the person loses the policy-admin role or is deactivated. A legacy key without an owner cannot
administer anything. Four-eyes holds here as in the UI: a version is activated only once submitted, by a
person who neither wrote nor submitted it — so one admin's key can never activate what that admin wrote.
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
from routing.api.permissions import ApplicationAdmin, HasScope, PlatformAdmin
from routing.api.schema import problems
from routing.api.serializers.admin import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
    ApplicationCreateInputSerializer,
    ApplicationOutputSerializer,
    BudgetInputSerializer,
    BudgetOutputSerializer,
    DeploymentCreateInputSerializer,
    DeploymentOutputSerializer,
    DeploymentUpdateInputSerializer,
    PolicyOutputSerializer,
    PolicyVersionCreateInputSerializer,
    PolicyVersionOutputSerializer,
)
from routing.decide.policy.document import InvalidPolicy
from routing.execute.budgets import month_spend
from routing.models import ApiKey, Application, ModelDeployment, Policy, PolicyVersion
from routing.services.catalog import (
    DeploymentInvalid,
    application_budget_set,
    application_create,
    deployment_create,
    deployment_update,
)
from routing.services.keys import InvalidScope, KeyRefused, api_key_create, api_key_revoke
from routing.services.policies import (
    FourEyesRefused,
    PolicyActionError,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)

APP = ApplicationAdmin
PLATFORM = PlatformAdmin
APP_DOC = "Scope `app:admin` (this key's own application only) or `platform:admin`. "
PLATFORM_DOC = "Scope `platform:admin`. "
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
    """Subclasses set `levels = {"GET": APP, "PUT": PLATFORM, ...}`: one permission class per operation."""

    levels: dict[str, type[ApplicationAdmin | PlatformAdmin]] = {}

    def get_permissions(self):
        level = self.levels.get(self.request.method) if getattr(self, "request", None) else None
        return [level()] if level else [HasScope()]  # HasScope: 401 without a key, else 405

    @property
    def owner(self):
        """The person the key acts for (the permission classes guarantee there is one)."""
        return self.client.owner

    @property
    def via_key(self) -> str:
        return self.client.key.prefix

    @property
    def actor(self) -> Actor:
        return Actor.user(self.owner.pk)


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


class ApiKeysApi(AdminView):
    levels = {"GET": APP, "POST": APP}

    @extend_schema(
        operation_id="admin_keys_list",
        parameters=[SLUG],
        summary="List an application's keys (never their secrets)",
        description=APP_DOC,
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
        description=APP_DOC + "The new key acts for the same person as the key that mints it, and is no wider "
        "than it: an `app:admin` key mints keys for its own application with a subset of its own scopes "
        "(403 otherwise). A `platform:admin` key is only ever held by a policy admin.",
        request=ApiKeyCreateInputSerializer,
        responses={201: ApiKeyCreatedOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str) -> Response:
        application = application_or_404(slug)
        serializer = ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            key, plaintext = api_key_create(
                application=application,
                created_by=self.owner,
                minted_with=self.client.key,
                **serializer.validated_data,
            )
        except KeyRefused as refused:
            raise Problem(str(refused), status_code=403, code="key_refused") from None
        except InvalidScope as invalid:
            raise field_problem("scopes", str(invalid)) from None
        return Response(
            {**ApiKeyOutputSerializer(key).data, "key": plaintext}, status=201, headers={"Cache-Control": "no-store"}
        )


class ApiKeyRevokeApi(AdminView):
    levels = {"POST": APP}

    @extend_schema(
        operation_id="admin_keys_revoke",
        parameters=[SLUG, PREFIX],
        summary="Revoke a key (at once, for good)",
        description=APP_DOC,
        request=None,
        responses={200: ApiKeyOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request, slug: str, prefix: str) -> Response:
        application = application_or_404(slug)
        key: ApiKey | None = selectors.api_key_get(application=application, prefix=prefix)
        if key is None:
            raise _not_found("key", prefix)
        api_key_revoke(key=key, actor=self.actor, revoked_with=self.client.key)
        return Response(ApiKeyOutputSerializer(selectors.api_key_get(application=application, prefix=prefix)).data)
