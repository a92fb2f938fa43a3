from routing.models.applications import ApiKey, Application
from routing.models.approvals import ApprovalDecision, ApprovalRequest
from routing.models.catalog import ModelDeployment
from routing.models.evaluations import (
    Evaluation,
    EvaluationKind,
    HistoryReplayMode,
    HistoryReplayRun,
    HistoryReplayStatus,
)
from routing.models.grants import ApprovalGrant
from routing.models.jobs import Job, JobPurpose, JobStatus, Step, StepOutcome
from routing.models.policies import Policy, PolicyVersion, PolicyVersionStatus
from routing.models.responses import StoredResponse
from routing.models.runs import Run, RunRole
from routing.models.tokens import PersonalToken
from routing.models.webhooks import WebhookDelivery, WebhookOutbox

__all__ = [
    "ApiKey",
    "Application",
    "ApprovalDecision",
    "ApprovalGrant",
    "ApprovalRequest",
    "Evaluation",
    "EvaluationKind",
    "HistoryReplayMode",
    "HistoryReplayRun",
    "HistoryReplayStatus",
    "Job",
    "JobPurpose",
    "JobStatus",
    "ModelDeployment",
    "PersonalToken",
    "Policy",
    "PolicyVersion",
    "PolicyVersionStatus",
    "Run",
    "RunRole",
    "Step",
    "StepOutcome",
    "StoredResponse",
    "WebhookDelivery",
    "WebhookOutbox",
]
