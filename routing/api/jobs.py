"""The jobs API: submit, read, list, cancel, and a job's ledger events. Every read is the caller's own."""

from __future__ import annotations

from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from audit.ledger import Actor
from audit.selectors import event_refs_for_job, events_for_job
from routing import selectors
from routing.api.base import ApiView, parse_uuid
from routing.api.errors import Problem, field_problem
from routing.api.schema import problems
from routing.api.serializers.common import output_serializer
from routing.api.serializers.jobs import (
    JobCancelInputSerializer,
    JobListFilterSerializer,
    JobOutputSerializer,
    JobPageOutputSerializer,
    JobSubmitInputSerializer,
    JobSummaryOutputSerializer,
    LedgerEventOutputSerializer,
)
from routing.models import Application, Job
from routing.release import released_ledger_body
from routing.services.jobs import IdempotencyConflict, JobError, NoActivePolicy, job_cancel, job_submit
from routing.services.runs import RunClosed, RunNotFound

IDEMPOTENCY_HEADER = "Idempotency-Key"
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")
MAX_IDEMPOTENCY_KEY = 255

SUBMIT_EXAMPLE = OpenApiExample(
    "classification",
    value={
        "task_type": "classification",
        "messages": [
            {"role": "user", "content": "Which queue does this ticket belong to? 'My card was charged twice.'"}
        ],
        "labels": {"region": "eu", "pii": False},
        "constraints": {"latency_budget_ms": 3000, "cost_cap_usd": 0.01, "max_tier": "mini"},
        "callback_url": "https://hooks.example.com/arbiter",
        "metadata": {"ticket": "T-1042"},
    },
    request_only=True,
)


def idempotency_key_from(request: Request) -> str | None:
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return None
    if not raw or len(raw) > MAX_IDEMPOTENCY_KEY or not all("\x21" <= ch <= "\x7e" for ch in raw):
        raise field_problem(
            f"header:{IDEMPOTENCY_HEADER}",
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (a UUID is ideal)",
            code="invalid_idempotency_key",
        )
    return raw


def job_or_404(application: Application, job_id: str) -> Job:
    job = selectors.job_get_for_application(application=application, job_id=parse_uuid(job_id))
    if job is None:
        raise Problem(f"no job {job_id}", status_code=404, code="not_found")
    return job


def job_detail(job: Job, serializer: type[JobOutputSerializer] = JobOutputSerializer, **context: Any) -> dict[str, Any]:
    """A job as the release gate lets it be read, with the numbers of its ledger events (the review API
    adds to it through a subclass of the serializer)."""
    return output_serializer(serializer, job, context={"ledger_events": event_refs_for_job(job.pk), **context}).data


class JobCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            valid = cursor is None or cursor.position is None or parse_datetime(cursor.position) is not None
        if not valid:
            raise field_problem(
                "query:cursor", "invalid cursor: pass the `next` or `previous` link as given", code="invalid_cursor"
            )
        return cursor


class JobsApi(ApiView):
    required_scopes = {"GET": "jobs:read", "POST": "jobs:write"}

    @extend_schema(
        operation_id="jobs_submit",
        summary="Submit a job",
        description=(
            "Validated strictly; the job, its `job.submitted` ledger event and its dispatch are one transaction.\n\n"
            "**Idempotency**: send `Idempotency-Key`. The same key with the same body returns the same job "
            "(200) however many times and however concurrently it is sent; the first answers 201. The same key "
            "with another body is refused (422). Keys are kept on the job row for as long as the job exists "
            "(well over 24 hours)."
        ),
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="1-255 visible ASCII characters; a UUID is ideal.",
            )
        ],
        request=JobSubmitInputSerializer,
        examples=[SUBMIT_EXAMPLE],
        responses={
            201: OpenApiResponse(JobOutputSerializer, description="Created."),
            200: OpenApiResponse(JobOutputSerializer, description="The job created earlier with this Idempotency-Key."),
            **problems(422),
        },
        tags=["jobs"],
    )
    def post(self, request: Request) -> Response:
        idempotency_key = idempotency_key_from(request)
        serializer = JobSubmitInputSerializer.for_input(request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job, created = job_submit(
                application=self.application,
                actor=Actor.application(self.application.pk),
                submitted_by=self.client.owner,  # the key acts for its owner: they cannot review this job
                idempotency_key=idempotency_key,
                **serializer.validated_data,
            )
        except IdempotencyConflict as conflict:
            raise Problem(
                str(conflict),
                status_code=422,
                code="idempotency_conflict",
                errors=[{"field": f"header:{IDEMPOTENCY_HEADER}", "message": str(conflict)}],
                extra={"job_id": str(conflict.job.pk)},
            ) from None
        except NoActivePolicy as missing:
            raise field_problem("policy", str(missing), status_code=422, code="no_active_policy") from None
        except RunNotFound as missing:
            raise field_problem("run_id", str(missing), status_code=404, code="run_not_found") from None
        except RunClosed as closed:
            raise field_problem("run_id", str(closed), status_code=409, code="run_closed") from None
        except JobError as error:
            raise Problem(str(error), code="invalid_job") from None
        if created:
            selectors.job_just_created(job)  # answered from what was written, not read back
        else:
            job = selectors.job_get_for_application(application=self.application, job_id=job.pk)
        return Response(job_detail(job), status=201 if created else 200, headers={"Location": f"/api/v1/jobs/{job.pk}"})

    @extend_schema(
        operation_id="jobs_list",
        summary="List jobs",
        description="Newest first, cursor-paginated: follow `next`. Only this application's jobs.",
        parameters=[JobListFilterSerializer],
        responses={200: JobPageOutputSerializer, **problems(body=False)},
        tags=["jobs"],
    )
    def get(self, request: Request) -> Response:
        filters = JobListFilterSerializer(data=request.query_params.dict())
        if not filters.is_valid():
            raise exceptions.ValidationError({f"query:{name}": errors for name, errors in filters.errors.items()})
        criteria = {k: v for k, v in filters.validated_data.items() if k not in ("page_size", "cursor")}
        jobs = selectors.job_list_for_application(application=self.application, **criteria)
        paginator = JobCursorPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSummaryOutputSerializer(page, many=True).data)


class JobDetailApi(ApiView):
    required_scopes = {"GET": "jobs:read"}

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[JOB_ID],
        summary="Read a job",
        description="Status, result, the route (rule and policy version), every step, the approval state and "
        "the numbers of its ledger events.",
        responses={200: JobOutputSerializer, **problems(404, body=False)},
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(job_detail(job_or_404(self.application, job_id)))


class JobCancelApi(ApiView):
    required_scopes = {"POST": "jobs:write"}

    @extend_schema(
        operation_id="jobs_cancel",
        parameters=[JOB_ID],
        summary="Cancel a job",
        description="Cancels a job that has not finished (a held approval is cancelled too). 409 if it had.",
        request=JobCancelInputSerializer,
        responses={200: JobOutputSerializer, **problems(404, 409)},
        tags=["jobs"],
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_or_404(self.application, job_id)
        serializer = JobCancelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not job_cancel(job=job, actor=Actor.application(self.application.pk), **serializer.validated_data):
            raise Problem(f"job {job.pk} has already finished ({job.status})", status_code=409, code="job_finished")
        return Response(job_detail(job_or_404(self.application, job_id)))


class JobEventsApi(ApiView):
    required_scopes = {"GET": "jobs:read"}

    @extend_schema(
        operation_id="jobs_events",
        parameters=[JOB_ID],
        summary="A job's ledger events",
        description="Every event recorded about the job, in chain order, with its hash once sealed. Bodies "
        "carry rule ids, counts and digests of the application's own request; the answer, reasons written "
        "from it and reviewers' edits are left out (their keys are listed in `withheld`).",
        responses={200: LedgerEventOutputSerializer(many=True), **problems(404, body=False)},
        tags=["jobs"],
    )
    def get(self, request: Request, job_id: str) -> Response:
        job = job_or_404(self.application, job_id)
        events = [
            {
                "id": event.id,
                "seq": getattr(getattr(event, "seal", None), "seq", None),
                "event_type": event.event_type,
                "created_at": event.created_at,
                "actor": {"kind": event.actor_kind, "id": event.actor_id},
                "subject": event.subject,
                "body": released_ledger_body(event.event_type, event.body),
                "hash": bytes(event.seal.hash).hex() if getattr(event, "seal", None) else None,
            }
            for event in events_for_job(job.pk)
        ]
        return Response(LedgerEventOutputSerializer(events, many=True).data)
