"""The review API: held jobs awaiting approval, and the decisions on them — approve, reject, override,
escalate — through the same services as the web UI (review.services), with the same rules.

A decision is a person's: these endpoints take the signed-in session of the web UI (unsafe methods need
its CSRF token in `X-CSRFToken`) or a person's own token (`Authorization: Bearer arbp_…`, minted on
/review/tokens/, scopes `reviews:read` and `reviews:decide`), never an application's API key. A key
belongs to an application and reaches only that application's jobs, and an application never decides
its own jobs; a key sent here is refused (403 `person_required`), whoever minted it.

Who may do what is the UI's: a job reader (reviewer, auditor) reaches every job, a policy admin only
the held jobs whose approval rules name their group (review.reach); outside reach a job is not found
(404). Deciding needs the reviewer or policy-admin role, and the services then check the person against
the pending request: never the job's submitter, only a group a requirement names, one decision per
person (403). Every decision carries the job's `version` as read (`expected_version`): if anyone acted
since, nothing is decided (409). Each decision, its ledger event and the job's move are one transaction.

Responses go through the release gate like the jobs API's: a held answer is never in them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.roles import Role, has_role
from review import selectors
from review.reach import held_within_reach, within_reach
from review.selectors import QueueFilters
from review.serializers import (
    DecisionInputSerializer,
    HeldJobFilterSerializer,
    HeldJobOutputSerializer,
    HeldJobPageOutputSerializer,
    OverrideInputSerializer,
    ReasonRequiredInputSerializer,
    ReviewJobOutputSerializer,
)
from review.services import (
    NotEligible,
    ReviewError,
    StaleReview,
    approval_approve,
    approval_escalate,
    approval_override,
    approval_reject,
)
from routing.api.authentication import ApiClient, ApiKeyAuthentication
from routing.api.base import ApiView, parse_uuid
from routing.api.errors import PROBLEM_MEDIA_TYPE, Problem
from routing.api.jobs import JobCursorPagination, job_detail
from routing.api.schema import ProblemSerializer, problems
from routing.models import ApprovalDecision, Job, PersonalToken
from routing.models.tokens import REVIEWS_DECIDE, REVIEWS_READ
from routing.services.personal_tokens import TOKEN_PREFIX, personal_token_authenticate
from web.access import DECIDERS, EVERYONE

TAGS = ["review"]
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id.")

# What a refusal by the services means to a client: its status, and the field it is about.
STATUS_BY_CODE = {"highest_tier": 409, "blocked_by_policy": 422}
FIELD_BY_CODE = {
    "reason_required": "reason",
    "invalid_output": "output",
    "invalid_override": "output",
    "unknown_step": "step",
}
DESCRIPTIONS = {
    403: "Not signed in (`not_authenticated`), an invalid personal token (`invalid_token`: unknown, revoked, "
    "expired, or its person deactivated), a token without the scope (`token_scope`), a failed CSRF check, an "
    "API key (`person_required`: decisions "
    "are a person's), a role this needs (`role_required`), or not eligible for this decision: your own job "
    "(`own_job`), no requirement names your group (`not_in_group`), you already decided (`already_decided`).",
    404: "No such job within your reach (a policy admin reaches only the held jobs whose rules name their group).",
    409: "The job changed since you read it (`stale_version`: reload, then decide), is no longer held "
    "(`not_held`), or its answer already came from the highest tier (`highest_tier`).",
    422: "The policy blocks the proposed output: no number of approvals can release it (`blocked_by_policy`).",
}


class ReviewerSession(SessionAuthentication):
    """The web UI's signed-in session; unsafe methods need its CSRF token (`X-CSRFToken`)."""


class PersonalTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer arbp_…`: the request is its person's, narrowed to the token's scopes. Any
    other bearer token is left to the next class (an application's key: refused with a reason)."""

    def authenticate(self, request: Request) -> tuple[Any, PersonalToken] | None:
        scheme, _, raw = get_authorization_header(request).partition(b" ")
        if scheme.lower() != b"bearer" or not raw.strip().startswith(TOKEN_PREFIX.encode()):
            return None
        try:
            token = personal_token_authenticate(raw.strip().decode("ascii")[:200])
        except UnicodeDecodeError:
            token = None
        if token is None:
            raise exceptions.AuthenticationFailed(
                "invalid personal token: unknown, revoked or expired, or its person is deactivated",
                code="invalid_token",
            )
        return token.user, token


class ApplicationKeyRefused(ApiKeyAuthentication):
    """Recognises an application's key (and the API's rule on keys in URLs) so that it is refused with
    a reason rather than ignored."""


class ReviewerSessionScheme(OpenApiAuthenticationExtension):
    target_class = "review.api.ReviewerSession"
    name = "ReviewerSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "A person signed in to the web UI (`/login/`). POST needs the CSRF token of the "
            "session as `X-CSRFToken` (the `csrftoken` cookie). Application API keys are refused here.",
        }


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "review.api.PersonalTokenAuthentication"
    name = "PersonalToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's own token (`arbp_<prefix>_<secret>`, minted on /review/tokens/): it acts "
            "as that person, with their roles at the moment of use. `reviews:read` lists and reads held jobs; "
            "`reviews:decide` also approves, rejects, overrides and escalates. No CSRF token is needed.",
        }


class ApplicationKeyRefusedScheme(OpenApiAuthenticationExtension):
    """Not a way in (documented as a 403), so no security scheme at all."""

    target_class = "review.api.ApplicationKeyRefused"
    name: list[str] = []

    def get_security_requirement(self, auto_schema):
        return None

    def get_security_definition(self, auto_schema):
        return []


class SignedInPerson(BasePermission):
    """A signed-in, active person holding one of the view's roles for the method (`roles`)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, ApiClient):
            raise exceptions.PermissionDenied(
                "review decisions are taken by a person: sign in to Arbiter and use the session (with its "
                "CSRF token). An application's key reaches only its own application's jobs, and an "
                "application never decides its own jobs.",
                code="person_required",
            )
        if user is None or not user.is_authenticated or not user.is_active:
            raise exceptions.NotAuthenticated(
                "sign in to Arbiter: the review API takes the web UI's session, or your personal token "
                "(Authorization: Bearer arbp_…, minted on /review/tokens/)"
            )
        roles = view.roles.get(request.method)
        if roles is None:
            return True  # an unsupported method: let DRF answer 405
        if isinstance(request.auth, PersonalToken):
            needed = REVIEWS_READ if request.method in SAFE_METHODS else REVIEWS_DECIDE
            if needed not in request.auth.scopes and REVIEWS_DECIDE not in request.auth.scopes:
                raise exceptions.PermissionDenied(
                    f"this token lacks the scope {needed} (it holds {', '.join(request.auth.scopes)})",
                    code="token_scope",
                )
        if not has_role(user, *roles):
            raise exceptions.PermissionDenied(
                f"this needs the role {' or '.join(role.value for role in roles)}", code="role_required"
            )
        return True


# A session is never answered 401 (it has no challenge: not signed in is a 403, as DRF does for sessions),
# and a key is refused before any rate limit counts it (429).
NEVER = (401, 429)


def review_problems(*codes: int, body: bool = True) -> dict[Any, OpenApiResponse]:
    responses = {key: value for key, value in problems(*codes, body=body).items() if key[0] not in NEVER}
    for code, description in DESCRIPTIONS.items():
        if (code, PROBLEM_MEDIA_TYPE) in responses:
            responses[(code, PROBLEM_MEDIA_TYPE)] = OpenApiResponse(ProblemSerializer, description=description)
    return responses


class ReviewView(ApiView):
    """Subclasses set `roles = {"GET": (...), "POST": (...)}`: the roles an operation needs."""

    authentication_classes = [ReviewerSession, PersonalTokenAuthentication, ApplicationKeyRefused]
    permission_classes = [SignedInPerson]
    roles: dict[str, tuple[Role, ...]] = {}

    @property
    def person(self):
        return self.request.user

    def job_or_404(self, job_id: str) -> Job:
        job = selectors.job_story(parse_uuid(job_id))
        if job is None or not within_reach(self.person, job):
            raise Problem(f"no job {job_id[:80]} within your reach", status_code=404, code="not_found")
        return job

    def detail(self, story: Job) -> dict[str, Any]:
        """`story`: the job as review.selectors.job_story reads it."""
        return job_detail(story, ReviewJobOutputSerializer, user=self.person)


class HeldCursorPagination(JobCursorPagination):
    ordering = ("created_at", "id")  # oldest first, as the queue


class HeldJobsApi(ReviewView):
    roles = {"GET": EVERYONE}

    @extend_schema(
        operation_id="review_jobs_list",
        summary="List held jobs awaiting approval",
        description="Oldest first, cursor-paginated: follow `next`. A reviewer or auditor sees every held job; "
        "a policy admin the ones whose rules name their group (and not their own). `may_decide` says whether "
        "you may decide each. The held answers are not in the list: read them on each job's `page`.",
        parameters=[HeldJobFilterSerializer],
        responses={200: HeldJobPageOutputSerializer, **review_problems(body=False)},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        filters = HeldJobFilterSerializer(data=request.query_params.dict())
        if not filters.is_valid():
            raise exceptions.ValidationError({f"query:{name}": errors for name, errors in filters.errors.items()})
        criteria = {k: v for k, v in filters.validated_data.items() if k not in ("page_size", "cursor")}
        held = selectors.held_approvals(QueueFilters(**criteria), now=timezone.now())
        held = held_within_reach(held, self.person).prefetch_related(
            Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("actor"))
        )
        paginator = HeldCursorPagination()
        page = paginator.paginate_queryset(held, request, view=self)
        rows = HeldJobOutputSerializer(page, many=True, context={"user": self.person}).data
        return paginator.get_paginated_response(rows)


class HeldJobApi(ReviewView):
    roles = {"GET": EVERYONE}

    @extend_schema(
        operation_id="review_jobs_retrieve",
        parameters=[JOB_ID],
        summary="Read a job as a reviewer",
        description="The job as the jobs API shows it (no held answer), with its `version`, the approval's "
        "requirements and decisions so far, and whether you may decide it.",
        responses={200: ReviewJobOutputSerializer, **review_problems(404, body=False)},
        tags=TAGS,
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(self.detail(self.job_or_404(job_id)))


class DecisionApi(ReviewView):
    """One decision: validate the body, find the job within reach, call the service, answer the job."""

    roles = {"POST": DECIDERS}
    input_serializer: type[DecisionInputSerializer] = DecisionInputSerializer
    decide: Callable[..., Job]

    def arguments(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"reason": data["reason"], "expected_version": data["expected_version"]}

    def post(self, request: Request, job_id: str) -> Response:
        serializer = self.input_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = self.job_or_404(job_id)
        try:
            job = self.decide(job=job, user=self.person, **self.arguments(serializer.validated_data))
        except ReviewError as refused:
            raise refusal(refused) from None
        return Response(self.detail(selectors.job_story(job.pk)))


def refusal(error: ReviewError) -> Problem:
    if isinstance(error, StaleReview):
        status = 409
    elif isinstance(error, NotEligible):
        status = 403
    else:
        status = STATUS_BY_CODE.get(error.code, 400)
    field = FIELD_BY_CODE.get(error.code)
    errors = [{"field": field, "message": str(error)}] if field else []
    return Problem(str(error), status_code=status, code=error.code, errors=errors)


DECISION_DOC = " Needs the reviewer or policy-admin role; you must be eligible for the pending approval."


class ApproveApi(DecisionApi):
    decide = staticmethod(approval_approve)

    @extend_schema(
        operation_id="review_jobs_approve",
        parameters=[JOB_ID],
        summary="Approve a held job",
        description="Your approval counts towards every requirement whose group you hold. The job is completed "
        "(and its answer released to the application) once every requirement has enough distinct eligible "
        "approvers; until then it stays held." + DECISION_DOC,
        request=DecisionInputSerializer,
        responses={200: ReviewJobOutputSerializer, **review_problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class RejectApi(DecisionApi):
    input_serializer = ReasonRequiredInputSerializer
    decide = staticmethod(approval_reject)

    @extend_schema(
        operation_id="review_jobs_reject",
        parameters=[JOB_ID],
        summary="Reject a held job",
        description="Ends the job: its answer is never released. A reason is required." + DECISION_DOC,
        request=ReasonRequiredInputSerializer,
        responses={200: ReviewJobOutputSerializer, **review_problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class OverrideApi(DecisionApi):
    input_serializer = OverrideInputSerializer
    decide = staticmethod(approval_override)

    def arguments(self, data: dict[str, Any]) -> dict[str, Any]:
        output = data.get("output")
        if output is not None:
            output = {"content": output["content"], "tool_calls": output.get("tool_calls", [])}
        return {**super().arguments(data), "output": output, "step_id": data.get("step")}

    @extend_schema(
        operation_id="review_jobs_override",
        parameters=[JOB_ID],
        summary="Override a held job's answer",
        description="Propose an edited answer (`output`) or another step's (`step`), with a reason. The "
        "proposal is governed again by the job's policy (422 if the policy blocks it) and needs as many "
        "distinct approvers as the held answer did, or more: yours is its first approval, so it is released "
        "only once enough others approve it." + DECISION_DOC,
        request=OverrideInputSerializer,
        responses={200: ReviewJobOutputSerializer, **review_problems(404, 409, 422)},
        tags=TAGS,
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)


class EscalateApi(DecisionApi):
    decide = staticmethod(approval_escalate)

    @extend_schema(
        operation_id="review_jobs_escalate",
        parameters=[JOB_ID],
        summary="Escalate a held job to a higher tier",
        description="Runs the job again from the tier above the one that answered (409 `highest_tier` if "
        "none is). Its new answer is governed, and held, again." + DECISION_DOC,
        request=DecisionInputSerializer,
        responses={200: ReviewJobOutputSerializer, **review_problems(404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request, job_id: str) -> Response:
        return super().post(request, job_id)
