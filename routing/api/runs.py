"""Agent runs: read one as a whole (its totals and calls), and close it."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from audit.ledger import Actor
from routing import selectors
from routing.api.base import ApiView, parse_uuid
from routing.api.errors import Problem
from routing.api.schema import problems
from routing.api.serializers.runs import RunOutputSerializer
from routing.models import Application, Run
from routing.models.applications import JOBS_READ, JOBS_WRITE
from routing.services.runs import run_close

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The run's id.")


def run_or_404(application: Application, run_id: str) -> Run:
    run = selectors.run_get_for_application(application=application, run_id=parse_uuid(run_id, "run"))
    if run is None:
        raise Problem(f"no run {run_id[:80]!r}", status_code=404, code="not_found")
    return run


def run_detail(run: Run) -> dict:
    jobs = selectors.run_jobs(run=run)
    fields = ("id", "opened_at", "closed_at", "calls", "flagship_calls")
    totals = {name: getattr(run, name) for name in fields}
    return RunOutputSerializer({**totals, "cost_usd": selectors.run_cost(run=run), "jobs": jobs}).data


class RunDetailApi(ApiView):
    required_scopes = {"GET": JOBS_READ}

    @extend_schema(
        operation_id="runs_read",
        parameters=[RUN_ID],
        summary="Read a run: its totals and its calls",
        description="Another application's run is not found (404). See routing/api/RUNS.md.",
        responses={200: RunOutputSerializer, **problems(404, body=False)},
        tags=["runs"],
    )
    def get(self, request: Request, run_id: str) -> Response:
        return Response(run_detail(run_or_404(self.application, run_id)))


class RunCloseApi(ApiView):
    required_scopes = {"POST": JOBS_WRITE}

    @extend_schema(
        operation_id="runs_close",
        parameters=[RUN_ID],
        summary="Close a run",
        description="Later calls naming it are refused (409 `run_closed`); calls already made finish. A "
        "`run.closed` ledger event. Closing a closed run is 409 `run_closed`.",
        request=None,
        responses={200: RunOutputSerializer, **problems(404, 409, body=False)},
        tags=["runs"],
    )
    def post(self, request: Request, run_id: str) -> Response:
        run = run_or_404(self.application, run_id)
        if not run_close(run=run, actor=Actor.application(self.application.pk)):
            raise Problem("this run is already closed", status_code=409, code="run_closed")
        return Response(run_detail(run))
