"""Input and output serializers of the jobs API. Validation only; nothing here writes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from routing.api.serializers.common import (
    LabelsField,
    MessageSerializer,
    MetadataField,
    ModelParametersSerializer,
    ResponseFormatSerializer,
    StrictSerializer,
    ToolSerializer,
    checked_tool_choice,
    choice_field,
)
from routing.api.serializers.grants import GrantOutputSerializer
from routing.decide.parameters import caller_parameters
from routing.decide.tiers import TASK_TYPES, TIER_NAMES, tier_rank
from routing.execute.webhooks import UnsafeCallbackUrl, callback_url_check
from routing.models import Job, JobStatus, RunRole
from routing.release import (
    WITHHELD_BY_STATUS,
    WITHHELD_EVALUATION,
    is_released,
    released_approval_reasons,
    released_result,
    released_status_reason,
    released_step_error,
    result_withheld,
)
from routing.services.approvals import approval_progress, counted_approvers, progress_satisfied
from routing.services.grants import grant_as_given
from routing.services.runs import InvalidRun, run_id_parse

STATUSES = tuple(JobStatus.values)


class ConstraintsSerializer(StrictSerializer):
    latency_budget_ms = serializers.IntegerField(required=False, min_value=1, max_value=3_600_000)
    cost_cap_usd = serializers.FloatField(required=False, min_value=0, max_value=1_000_000)
    min_tier = choice_field(TIER_NAMES, "tier", required=False)
    max_tier = choice_field(TIER_NAMES, "tier", required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_tier"), attrs.get("max_tier")
        if low and high and tier_rank(low) > tier_rank(high):
            raise serializers.ValidationError({"min_tier": f"min_tier {low} is above max_tier {high}"})
        return attrs


class JobSubmitInputSerializer(StrictSerializer):
    task_type = choice_field(TASK_TYPES, "task type")
    messages = MessageSerializer(many=True, allow_empty=False, max_length=500)
    tools = ToolSerializer(many=True, required=False, max_length=128)
    response_format = ResponseFormatSerializer(required=False)
    labels = LabelsField(required=False)
    constraints = ConstraintsSerializer(required=False)
    callback_url = serializers.URLField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Where the signed webhook goes when the job completes, is rejected, blocked or held. "
        "Private, loopback and link-local addresses are refused (see WEBHOOKS.md).",
    )
    metadata = MetadataField(
        required=False, help_text="Your own data (max 64 KiB), kept and returned with personal data redacted."
    )
    policy = serializers.SlugField(
        required=False, max_length=80, help_text="The policy to route under; the default policy when omitted."
    )
    run_id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="The agent run this job joins: `new` opens a run; a UUID joins this application's run of that id, "
        "or opens one with it. The run's limits (the policy's `runs:`) apply to the job.",
    )
    run_role = choice_field(
        tuple(RunRole.values),
        "run role",
        required=False,
        help_text="The job's role in its run; when omitted, the call that opens a run is its planner, later "
        "ones subagents.",
    )
    parameters = ModelParametersSerializer(
        required=False,
        help_text="Model parameters, named and checked as on chat completions (`tool_choice`, `temperature`, "
        "`max_completion_tokens`, `reasoning_effort`, ...): sent, on every step of the cascade, to the deployment "
        "that answers as far as its catalog entry takes them; the released result's `ignored_parameters` names "
        "those it did not take. A forced tool call is governed like any other.",
    )

    def validate_run_id(self, value: str) -> str:
        try:
            run_id_parse(value)
        except InvalidRun as invalid:
            raise serializers.ValidationError(str(invalid)) from None
        return value

    def validate_callback_url(self, value: str) -> str:
        if value:
            try:
                callback_url_check(value)
            except UnsafeCallbackUrl as refused:
                raise serializers.ValidationError(str(refused)) from None
        return value

    def validate_tools(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = [tool["function"]["name"] for tool in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise serializers.ValidationError(f"tool names must be unique; repeated: {', '.join(duplicates)}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        parameters = caller_parameters(attrs.pop("parameters", None) or {})
        if parameters.get("tool_choice") is not None:
            try:
                parameters["tool_choice"] = checked_tool_choice(parameters["tool_choice"], attrs.get("tools"))
            except serializers.ValidationError as error:
                raise serializers.ValidationError({"parameters": error.detail}) from None
        if parameters:
            attrs["parameters"] = parameters
        return attrs


class JobListFilterSerializer(StrictSerializer):
    status = choice_field(STATUSES, "status", required=False)
    task_type = choice_field(TASK_TYPES, "task type", required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)
    cursor = serializers.CharField(required=False, max_length=1000)


class StepOutputSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    attempt = serializers.IntegerField()
    tier = serializers.CharField()
    deployment = serializers.CharField(source="deployment.name", allow_null=True, default=None)
    model = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=8)
    latency_ms = serializers.IntegerField()
    confidence = serializers.FloatField(allow_null=True)
    confidence_method = serializers.CharField(help_text="How the confidence was measured (logprob, verifier…).")
    threshold = serializers.FloatField(allow_null=True, help_text="Below it the step escalates; null on the last.")
    outcome = serializers.CharField(help_text="accepted, escalated or failed")
    error = serializers.SerializerMethodField(
        help_text="Why the step escalated or failed; withheld until the job's answer is released."
    )
    created_at = serializers.DateTimeField()

    def get_error(self, step) -> str:
        return released_step_error(step.job, step)


class RequirementProgressSerializer(serializers.Serializer):
    rule = serializers.CharField(help_text="The approval rule (empty for a request from before rules had ids).")
    group = serializers.CharField(help_text="The role whose members may approve for it.")
    approvers = serializers.IntegerField(help_text="Distinct approvers it needs.")
    approvals = serializers.IntegerField(help_text="Approvals from its group that count now.")


class ApprovalOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    rule_ids = serializers.ListField(child=serializers.CharField())
    reasons = serializers.SerializerMethodField(
        help_text="The rules that hold the answer; never the values of the answer that matched them."
    )
    required_approvers = serializers.IntegerField(help_text="The most approvers any one requirement needs.")
    approvals = serializers.SerializerMethodField(
        help_text="Distinct people whose approval counts now (active, in a requirement's group, not the submitter)."
    )
    requirements = serializers.SerializerMethodField(
        help_text="Per rule holding the answer: its group, the approvers it needs and the approvals that count."
    )
    satisfied = serializers.SerializerMethodField(help_text="Whether every requirement has its approvals.")
    expires_at = serializers.DateTimeField()
    on_expiry = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)

    def get_approvals(self, request) -> int:
        return len(counted_approvers(request.job, request))

    @extend_schema_field(RequirementProgressSerializer(many=True))
    def get_requirements(self, request) -> list[dict[str, Any]]:
        return approval_progress(request.job, request)

    def get_satisfied(self, request) -> bool:
        return progress_satisfied(approval_progress(request.job, request))

    def get_reasons(self, request) -> list[str]:
        return released_approval_reasons(request.rule_ids)


class PolicyRefSerializer(serializers.Serializer):
    name = serializers.CharField(source="policy.name")
    version = serializers.IntegerField(source="number")
    sha256 = serializers.CharField()


class RouteOutputSerializer(serializers.Serializer):
    rule_id = serializers.CharField(allow_null=True, help_text="The rule that governed the job.")
    error = serializers.CharField(allow_null=True, help_text="Why no route could be made, if none was.")
    plan = serializers.JSONField(allow_null=True, help_text="The cascade: tiers, deployments, thresholds.")
    explanation = serializers.JSONField(help_text="Why earlier rules did not match; tiers and deployments removed.")


class LedgerRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The event's id (`x-arbiter-decision-id` is one of these).")
    seq = serializers.IntegerField(allow_null=True, help_text="Its place in the hash chain; null until sealed.")
    event_type = serializers.CharField()


@extend_schema_field(OpenApiTypes.OBJECT)
class AnyObjectField(serializers.JSONField):
    pass


WITHHELD_CODES = (*dict.fromkeys(WITHHELD_BY_STATUS.values()), WITHHELD_EVALUATION)


class JobOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    status_reason = serializers.SerializerMethodField(help_text="Why the job is in its status (no answer values).")
    task_type = serializers.CharField()
    labels = AnyObjectField()
    constraints = AnyObjectField()
    metadata = AnyObjectField()
    callback_url = serializers.CharField()
    idempotency_key = serializers.CharField(allow_null=True)
    policy = PolicyRefSerializer(source="policy_version")
    route = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField(
        help_text="The accepted (or reviewer-set) output and its tier, once released: null until the job is "
        "completed, and for ever when it is blocked, rejected, expired, cancelled or failed."
    )
    result_withheld = serializers.SerializerMethodField(
        help_text="Why `result` is null: " + ", ".join(WITHHELD_CODES) + "; null once released."
    )
    final_tier = serializers.CharField()
    final_confidence = serializers.FloatField(allow_null=True)
    escalations = serializers.IntegerField()
    total_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=8)
    total_tokens = serializers.IntegerField()
    steps = StepOutputSerializer(many=True)
    approval = serializers.SerializerMethodField()
    grants = serializers.SerializerMethodField(
        help_text="Once released after people approved (or overrode and confirmed) a held answer: one signed "
        "approval grant per tool call of the answer. Empty otherwise."
    )
    ledger_events = serializers.SerializerMethodField()
    replay_of = serializers.UUIDField(source="replay_of_id", allow_null=True)
    run_id = serializers.UUIDField(allow_null=True, help_text="The agent run the job belongs to, if any.")
    run_role = serializers.CharField(help_text="Its role in the run (planner, subagent); empty outside runs.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_status_reason(self, job: Job) -> str:
        return released_status_reason(job)

    @extend_schema_field(AnyObjectField(allow_null=True))
    def get_result(self, job: Job) -> dict[str, Any] | None:
        return released_result(job)

    @extend_schema_field(serializers.ChoiceField(choices=WITHHELD_CODES, allow_null=True))
    def get_result_withheld(self, job: Job) -> str | None:
        return result_withheld(job)

    @extend_schema_field(RouteOutputSerializer(allow_null=True))
    def get_route(self, job: Job) -> dict[str, Any] | None:
        if not job.route:
            return None
        plan = job.route.get("plan")
        return {
            "rule_id": (plan or {}).get("rule_id"),
            "error": job.route.get("error"),
            "plan": plan,
            "explanation": job.route.get("explanation") or {},
        }

    @extend_schema_field(ApprovalOutputSerializer(allow_null=True))
    def get_approval(self, job: Job) -> dict[str, Any] | None:
        requests = list(job.approval_requests.all())
        return ApprovalOutputSerializer(requests[-1]).data if requests else None

    @extend_schema_field(GrantOutputSerializer(many=True))
    def get_grants(self, job: Job) -> list[dict[str, Any]]:
        if not is_released(job):
            return []
        grants = [
            grant_as_given(message=grant.message, signature=grant.signature, redeemed_at=grant.redeemed_at)
            for grant in sorted(job.approval_grants.all(), key=lambda grant: grant.tool_call_index)
        ]
        return GrantOutputSerializer(grants, many=True).data

    @extend_schema_field(LedgerRefSerializer(many=True))
    def get_ledger_events(self, job: Job) -> list[dict[str, Any]]:
        return self.context.get("ledger_events", [])


class JobCancelInputSerializer(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class ActorSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="user, application, worker or system")
    id = serializers.CharField()


class LedgerEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField(allow_null=True, help_text="Its place in the hash chain; null until sealed.")
    event_type = serializers.CharField()
    created_at = serializers.DateTimeField()
    actor = ActorSerializer()
    subject = AnyObjectField()
    body = AnyObjectField(help_text="What happened; prompts and outputs appear as payload digests.")
    hash = serializers.CharField(allow_null=True, help_text="The chain hash (hex) once sealed.")


class JobSummaryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    status_reason = serializers.SerializerMethodField(help_text="Why the job is in its status (no answer values).")
    task_type = serializers.CharField()
    labels = AnyObjectField()
    metadata = AnyObjectField()
    policy = PolicyRefSerializer(source="policy_version")
    final_tier = serializers.CharField()
    final_confidence = serializers.FloatField(allow_null=True)
    escalations = serializers.IntegerField()
    total_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=8)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_status_reason(self, job: Job) -> str:
        return released_status_reason(job)


class JobPageOutputSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="URL of the next (older) page, or null.")
    previous = serializers.CharField(allow_null=True)
    results = JobSummaryOutputSerializer(many=True)
