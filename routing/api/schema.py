"""OpenAPI documentation helpers: the bearer scheme, problem-detail responses, closed request objects."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from routing.api.errors import PROBLEM_MEDIA_TYPE


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "routing.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "arb_<prefix>_<secret>",
            "description": "An application's API key as `Authorization: Bearer <key>`. Keys in the URL are refused. "
            "A key acts for the person who minted it. Scopes: `jobs:write`, `jobs:read` (its application's jobs), "
            "`grants:redeem` (its application's approval grants), "
            "`app:admin` (its own application's keys, budget and usage), `platform:admin` (policies, the catalog, "
            "every application, key and budget; only for a policy admin).",
        }


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_null=True,
        help_text="Where the error is: a path into the JSON body (`messages[0].role`), "
        "`header:<name>` or `query:<name>`; null for the body as a whole.",
    )
    message = serializers.CharField()
    line = serializers.IntegerField(required=False, allow_null=True, help_text="Policy documents: the line.")
    path = serializers.CharField(required=False, help_text="Policy documents: the path inside the document.")


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="A URI naming the kind of problem: `urn:arbiter:problem:<code>`.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `validation_error`.")
    errors = FieldErrorSerializer(many=True)


class OpenAIErrorObjectSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    job_id = serializers.UUIDField(required=False)
    job_url = serializers.CharField(required=False)


class OpenAIErrorSerializer(serializers.Serializer):
    error = OpenAIErrorObjectSerializer()


PROBLEM_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, a wrong field (see `errors`), a bad header or query parameter.",
    401: "No key, a malformed Authorization header, an unknown, revoked or expired key, or a key in the URL.",
    403: "The key lacks the scope this operation needs, targets another application than its own, acts for a "
    "person who no longer holds the role it needs (or has no owner at all), or the act is not allowed.",
    404: "No such object for this application (another application's objects are not found either).",
    405: "Method not allowed.",
    406: "Only JSON is served.",
    409: "The object's state does not allow this operation.",
    410: "Gone: the object's time is over (an expired approval grant).",
    413: "The body is larger than the limit (1 MiB unless configured).",
    415: "The body must be `application/json` (UTF-8).",
    422: "Well-formed but refused: e.g. an Idempotency-Key reused with another body, an invalid policy.",
    429: "Rate limit for this key reached; see `Retry-After`.",
}

EXAMPLE_PROBLEM = OpenApiExample(
    "validation error",
    value={
        "type": "urn:arbiter:problem:validation-error",
        "title": "Invalid request",
        "status": 400,
        "detail": 'task_type: "poetry" is not a valid task type; allowed: classification, extraction, …',
        "code": "validation_error",
        "errors": [{"field": "task_type", "message": '"poetry" is not a valid task type; allowed: …'}],
    },
    response_only=True,
    status_codes=["400"],
)

COMMON = (400, 401, 403, 405, 406, 415, 429)


def problems(*codes: int, body: bool = True) -> dict[Any, OpenApiResponse]:
    """Problem-detail responses for the common codes plus `codes` (413 where a body is read)."""
    wanted = sorted(set(COMMON) | set(codes) | ({413} if body else set()))
    return {
        (code, PROBLEM_MEDIA_TYPE): OpenApiResponse(
            ProblemSerializer,
            description=PROBLEM_DESCRIPTIONS[code],
            examples=[EXAMPLE_PROBLEM] if code == 400 else [],
        )
        for code in wanted
    }


def close_request_objects(result: dict, generator, request, public) -> dict:
    """Request bodies are closed: an unknown field is refused, so the schema says so."""
    for name, component in (result.get("components", {}).get("schemas", {})).items():
        if name.endswith("Request") and component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
    return result
