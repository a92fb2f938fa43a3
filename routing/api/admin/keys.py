"""An application's API keys: list, mint (shown once, never wider than the minting key), revoke."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.admin.base import APP, APP_DOC, SLUG, TAGS, AdminView, application_or_404, not_found
from routing.api.errors import Problem, field_problem
from routing.api.schema import problems
from routing.api.serializers.admin.keys import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
)
from routing.models import ApiKey
from routing.services.keys import InvalidScope, KeyRefused, api_key_create, api_key_revoke

PREFIX = OpenApiParameter(
    "prefix", str, OpenApiParameter.PATH, pattern="^[0-9a-f]{12}$", description="The key's prefix (`arb_<prefix>_…`)."
)


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
            raise not_found("key", prefix)
        api_key_revoke(key=key, actor=self.actor, revoked_with=self.client.key)
        return Response(ApiKeyOutputSerializer(selectors.api_key_get(application=application, prefix=prefix)).data)
