"""Approval grants: the application redeems one, once, before executing the tool call it approves."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from routing.api.base import ApiView, parse_uuid
from routing.api.errors import Problem
from routing.api.schema import problems
from routing.api.serializers.grants import GrantRedeemInputSerializer, GrantRedemptionOutputSerializer
from routing.models.applications import GRANTS_REDEEM
from routing.services.grants import GrantRefused, grant_redeem

GRANT_ID = OpenApiParameter("grant_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The grant's `id`.")

# Each refusal's status; its `code` is the service's, stable for clients.
REFUSAL_STATUS = {
    "not_found": 404,
    "grant_signature_invalid": 403,
    "grant_tool_mismatch": 403,
    "grant_arguments_mismatch": 403,
    "grant_already_redeemed": 409,
    "grant_expired": 410,
}


class GrantRedeemApi(ApiView):
    required_scopes = {"POST": GRANTS_REDEEM}

    @extend_schema(
        operation_id="grants_redeem",
        parameters=[GRANT_ID],
        summary="Redeem an approval grant (once)",
        description=(
            "Call it just before executing an approved tool call, with the grant's `token` and the tool and "
            "arguments about to be executed; execute only on 200. The redemption is a `grant.redeemed` ledger "
            "event; a refusal is a `grant.refused` event and a problem with a stable `code`: "
            "`grant_signature_invalid` (403: the token is not the grant as Arbiter signed it), "
            "`grant_tool_mismatch` (403), `grant_arguments_mismatch` (403: the arguments' canonical SHA-256 "
            "differs from the approved one), `grant_already_redeemed` (409: single use, also under concurrent "
            "redemptions), `grant_expired` (410). Another application's grant is not found (404)."
        ),
        request=GrantRedeemInputSerializer,
        responses={200: GrantRedemptionOutputSerializer, **problems(404, 409, 410)},
        tags=["grants"],
    )
    def post(self, request: Request, grant_id: str) -> Response:
        grant_uuid = parse_uuid(grant_id, "grant")
        serializer = GrantRedeemInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            redemption = grant_redeem(
                application_id=self.application.pk,
                grant_id=grant_uuid,
                key_prefix=self.client.key.prefix,
                **serializer.validated_data,
            )
        except GrantRefused as refused:
            raise Problem(
                str(refused), status_code=REFUSAL_STATUS[refused.code], code=refused.code, extra={"grant_id": grant_id}
            ) from None
        grant = redemption.grant
        return Response(
            GrantRedemptionOutputSerializer(
                {
                    "id": grant.pk,
                    "job_id": grant.job_id,
                    "tool_call_id": grant.tool_call_id,
                    "tool": grant.tool,
                    "arguments_sha256": grant.arguments_sha256,
                    "redeemed_at": grant.redeemed_at,
                    "ledger_event_id": redemption.ledger_event_id,
                }
            ).data
        )
