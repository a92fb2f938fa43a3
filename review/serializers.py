"""Input and output serializers of the review API.

Outputs are the jobs API's, read through the same release gate (routing.services.release): a held
answer, the reasons quoting it and the steps' errors are never in them before the approvals release the
job. Decisions are listed by who took them and when, without their reasons (a reviewer's reason may quote
the answer). A reviewer reads the held answer on the job's page in the web UI (`page`).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from review.reach import pending_request
from routing.api.serializers.common import MAX_JSON_BYTES, StrictSerializer, choice_field, json_size
from routing.api.serializers.jobs import (
    ApprovalOutputSerializer,
    JobOutputSerializer,
    StepOutputSerializer,
)
from routing.decide.tiers import TASK_TYPES, TIER_NAMES
from routing.models import Job, JobStatus
from routing.services.approvals import may_decide

MAX_REASON = 4000
MAX_CONTENT = 256 * 1024
MAX_ID = 2**63 - 1  # a bigint: anything larger is simply not found, never a database error


class DecisionOutputSerializer(serializers.Serializer):
    by = serializers.CharField(source="actor.username", help_text="The person who decided.")
    kind = serializers.CharField(help_text="approve, reject, override or escalate")
    created_at = serializers.DateTimeField()


class ReviewApprovalOutputSerializer(ApprovalOutputSerializer):
    decisions = DecisionOutputSerializer(
        many=True, source="decisions.all", help_text="Who decided so far, in order (reasons are in the ledger)."
    )


class ReviewStepOutputSerializer(StepOutputSerializer):
    id = serializers.IntegerField(help_text="Give it as `step` to override with this step's output.")


def _page(job_id: object) -> str:
    return reverse("job", kwargs={"job_id": job_id})


def _may_decide(context: dict[str, Any], job: Job, request) -> bool:
    return request is not None and request.status == "pending" and may_decide(context["user"], job, request)


class ReviewJobOutputSerializer(JobOutputSerializer):
    """A job as the jobs API shows it to its application, plus what a reviewer acts on."""

    application = serializers.CharField(source="application.slug")
    version = serializers.IntegerField(
        help_text="Send it back as `expected_version` with a decision: if the job changed since, the decision "
        "is refused (409) rather than taken on what you did not see."
    )
    steps = ReviewStepOutputSerializer(many=True)
    may_decide = serializers.SerializerMethodField(
        help_text="Whether you may decide the pending approval (a requirement names your group, you did not "
        "submit the job)."
    )
    page = serializers.SerializerMethodField(help_text="The job's page in the web UI, where its answer is read.")

    @extend_schema_field(ReviewApprovalOutputSerializer(allow_null=True))
    def get_approval(self, job: Job) -> dict[str, Any] | None:
        requests = list(job.approval_requests.all())
        return ReviewApprovalOutputSerializer(requests[-1]).data if requests else None

    def get_may_decide(self, job: Job) -> bool:
        return _may_decide(self.context, job, pending_request(job))

    def get_page(self, job: Job) -> str:
        return _page(job.pk)


class HeldJobOutputSerializer(serializers.Serializer):
    """One held job of the queue, from its pending approval request."""

    id = serializers.UUIDField(source="job.id")
    application = serializers.CharField(source="job.application.slug")
    task_type = serializers.CharField(source="job.task_type")
    status = serializers.ChoiceField(choices=JobStatus.choices, source="job.status")
    version = serializers.IntegerField(source="job.version", help_text="Send it back as `expected_version`.")
    final_tier = serializers.CharField(source="job.final_tier")
    final_confidence = serializers.FloatField(source="job.final_confidence", allow_null=True)
    escalations = serializers.IntegerField(source="job.escalations")
    total_cost_usd = serializers.DecimalField(source="job.total_cost_usd", max_digits=14, decimal_places=8)
    created_at = serializers.DateTimeField(source="job.created_at")
    approval = ReviewApprovalOutputSerializer(source="*")
    may_decide = serializers.SerializerMethodField(help_text="Whether you may decide it.")
    page = serializers.SerializerMethodField(help_text="The job's page in the web UI, where its answer is read.")

    def get_may_decide(self, request) -> bool:
        return _may_decide(self.context, request.job, request)

    def get_page(self, request) -> str:
        return _page(request.job_id)


class HeldJobPageOutputSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="URL of the next page (newer held jobs), or null.")
    previous = serializers.CharField(allow_null=True)
    results = HeldJobOutputSerializer(many=True)


class HeldJobFilterSerializer(StrictSerializer):
    task_type = choice_field(TASK_TYPES, "task type", required=False)
    tier = choice_field(TIER_NAMES, "tier", required=False, help_text="The tier whose answer is held.")
    rule = serializers.SlugField(required=False, max_length=80, help_text="An approval rule holding the answer.")
    application = serializers.SlugField(required=False, max_length=80)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)
    cursor = serializers.CharField(required=False, max_length=1000)


class DecisionInputSerializer(StrictSerializer):
    expected_version = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ID,
        help_text="The job's `version` as you read it. Someone else acted since: 409, nothing decided.",
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MAX_REASON, help_text="Kept in the ledger."
    )


class ReasonRequiredInputSerializer(DecisionInputSerializer):
    reason = serializers.CharField(max_length=MAX_REASON, help_text="Required; kept in the ledger.")


@extend_schema_field(OpenApiTypes.OBJECT)
class ArgumentsField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError("arguments must be an object")
        if json_size(data) > MAX_JSON_BYTES:
            raise serializers.ValidationError(f"arguments is larger than {MAX_JSON_BYTES} bytes")
        return data


class EditedToolCallSerializer(StrictSerializer):
    id = serializers.CharField(required=False, max_length=200)
    name = serializers.RegexField(r"^[A-Za-z0-9_.\-]{1,64}$", max_length=64)
    arguments = ArgumentsField()


class EditedOutputSerializer(StrictSerializer):
    content = serializers.CharField(allow_null=True, allow_blank=True, trim_whitespace=False, max_length=MAX_CONTENT)
    tool_calls = EditedToolCallSerializer(many=True, required=False, max_length=128)


class OverrideInputSerializer(ReasonRequiredInputSerializer):
    output = EditedOutputSerializer(
        required=False, help_text="The answer as it should be: text and tool calls (read it on the job's page)."
    )
    step = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Or: the id of another step whose output to take."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("output" in attrs) == ("step" in attrs):
            raise serializers.ValidationError({"output": "give either an edited `output` or the `step` to take"})
        return attrs
