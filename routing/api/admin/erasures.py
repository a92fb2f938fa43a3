"""The erasure API: `POST /api/v1/admin/erasures` — by job, by application, or by a data subject's
identifier across every application. Platform administration: it needs the admin scope.

`dry_run: true` answers what would be erased and changes nothing; the same body without it erases."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from routing import selectors
from routing.api.admin.base import PLATFORM, TAGS, AdminView
from routing.api.errors import Problem, field_problem
from routing.api.schema import problems
from routing.api.serializers.common import StrictSerializer
from routing.models import Job
from routing.services.erasure import (
    MAX_REFERENCE_LENGTH,
    MIN_IDENTIFIER_LENGTH,
    ErasureError,
    ErasureReason,
    erasure_apply,
    erasure_select,
)


class ErasureInputSerializer(StrictSerializer):
    job = serializers.UUIDField(required=False, help_text="Erase this job (and its replays).")
    application = serializers.SlugField(
        required=False, help_text="Erase every job of this application; with `subject`, search only its jobs."
    )
    subject = serializers.CharField(
        required=False,
        min_length=MIN_IDENTIFIER_LENGTH,
        max_length=320,
        help_text="A data subject's identifier (e-mail address, phone number, IBAN...): every job whose content "
        "mentions it, case-insensitively, in every application.",
    )
    reason = serializers.ChoiceField(
        choices=ErasureReason.choices,
        help_text="Why, as a code: the ledger keeps this code for ever, and never free text.",
        error_messages={
            "invalid_choice": f'"{{input}}" is not an erasure reason; one of {", ".join(ErasureReason.values)}'
        },
    )
    reference = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=MAX_REFERENCE_LENGTH,
        help_text="Optional free text (e.g. the request's ticket number): redacted and kept in the payload store, "
        "where retention and later erasures reach it; the ledger holds only its digest.",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Only say what would be erased.")


class ErasureOutputSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    scope = serializers.CharField(help_text="job, application or subject")
    jobs = serializers.ListField(child=serializers.UUIDField(), help_text="The jobs erased (or that would be).")
    payloads_outside_jobs = serializers.IntegerField(help_text="Stored contents found by the search, in no job.")
    payloads_erased = serializers.IntegerField(allow_null=True)
    erased_at = serializers.DateTimeField(allow_null=True)


class ErasuresApi(AdminView):
    levels = {"POST": PLATFORM}

    @extend_schema(
        operation_id="admin_erasures_create",
        summary="Erase personal data (or preview an erasure)",
        description="Blanks the raw content of the selected jobs and their replays (prompt, answers, edits, "
        "labels, metadata) and erases their stored payloads; one `job.erased` ledger event per job. The "
        "ledger keeps digests only, so it still verifies.",
        request=ErasureInputSerializer,
        responses={200: ErasureOutputSerializer, **problems(404)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = ErasureInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            selection = erasure_select(
                job=_job_or_404(data.get("job")),
                application=_application_or_404(data.get("application")),
                identifier=data.get("subject"),
            )
            outcome = None
            if not data["dry_run"]:
                outcome = erasure_apply(
                    selection=selection, actor=self.actor, reason=data["reason"], reference=data["reference"]
                )
        except ErasureError as error:
            raise Problem(str(error), status_code=400, code="invalid_erasure") from None
        return Response(
            ErasureOutputSerializer(
                {
                    "dry_run": outcome is None,
                    "scope": selection.scope,
                    "jobs": selection.job_ids,
                    "payloads_outside_jobs": len(selection.payload_digests),
                    "payloads_erased": outcome.payloads if outcome else None,
                    "erased_at": outcome.erased_at if outcome else None,
                }
            ).data
        )


def _job_or_404(job_id: uuid.UUID | None) -> Job | None:
    if job_id is None:
        return None
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise field_problem("job", f"no job {job_id}", status_code=404, code="not_found")
    return job


def _application_or_404(slug: str | None):
    if slug is None:
        return None
    application = selectors.application_get(slug=slug)
    if application is None:
        raise field_problem("application", f"no application {slug[:80]!r}", status_code=404, code="not_found")
    return application
