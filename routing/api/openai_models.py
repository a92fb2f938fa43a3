"""`GET /v1/models/{id}` (the OpenAI SDKs' `models.retrieve`): `auto` is the default policy,
`arbiter/<policy>` a named one — each only while it has an active version, as `GET /v1/models` lists."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.base import ApiView
from routing.api.errors import field_problem
from routing.api.schema import OpenAIErrorSerializer
from routing.api.serializers.openai import ModelOutputSerializer
from routing.models import Policy

MODEL_PREFIX = "arbiter/"


def model_entry(model_id: str, policy: Policy) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": int(policy.created_at.timestamp()), "owned_by": "arbiter"}


def policy_named_by(model_id: str) -> Policy | None:
    """The policy a model id names, if it has an active version."""
    policies = selectors.policies_with_active_version()
    if model_id == "auto":
        return policies.filter(is_default=True).first()
    if model_id.startswith(MODEL_PREFIX) and len(model_id) > len(MODEL_PREFIX):
        return policies.filter(name=model_id[len(MODEL_PREFIX) :]).first()
    return None


class ModelApi(ApiView):
    error_style = "openai"
    required_scopes = {"GET": "jobs:write"}

    @extend_schema(
        operation_id="openai_model",
        summary="Model (OpenAI-compatible): one policy a completion can name",
        responses={
            200: ModelOutputSerializer,
            404: OpenApiResponse(OpenAIErrorSerializer, description="`model_not_found`: no such policy."),
        },
        tags=["openai"],
    )
    def get(self, request: Request, model_id: str) -> Response:
        policy = policy_named_by(model_id)
        if policy is None:
            raise field_problem(
                "model",
                f"the model {model_id[:200]!r} does not exist: use `auto` (the default policy) or "
                "`arbiter/<policy>`; GET /v1/models lists them",
                status_code=404,
                code="model_not_found",
            )
        return Response(model_entry(model_id, policy))
