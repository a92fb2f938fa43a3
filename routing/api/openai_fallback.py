"""Every `/v1/*` path the OpenAI-compatible face does not serve answers a JSON 404 in OpenAI's error
shape (the SDKs parse it into `NotFoundError`), whatever the method, rather than an HTML page."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.views import APIView

from routing.api.errors import Problem
from routing.api.parsers import StrictJSONParser


class UnknownPathApi(APIView):
    error_style = "openai"
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    parser_classes = [StrictJSONParser]
    schema = None  # not an operation: left out of the API schema

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise Problem(
            f"no such endpoint: {request.method} {request.path[:200]}; the OpenAI-compatible endpoints are "
            "POST /v1/chat/completions, POST /v1/responses, GET and DELETE /v1/responses/{id}, "
            "GET /v1/responses/{id}/input_items, GET /v1/models and GET /v1/models/{model}",
            status_code=404,
            code="unknown_url",
        )
