"""Submitting and cancelling jobs. Each governed change writes its ledger event in its own transaction
and dispatches to Celery only after commit."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import ledger, payloads
from audit.ledger import Actor
from audit.redaction import redact_value
from routing.decide import tool_arguments
from routing.decide.tiers import TASK_TYPES
from routing.execute import dispatch
from routing.execute.settled import job_settled_on_commit
from routing.models import Application, Job, JobStatus, Policy, PolicyVersion, RunRole
from routing.models.jobs import TERMINAL_STATUSES, JobPurpose
from routing.services.implicit_idempotency import ImplicitWindow, same_call
from routing.services.runs import InvalidRun, run_id_parse, run_join, run_role_parse


class JobError(Exception):
    """A request the caller must change; the message says how."""


class NoActivePolicy(JobError):
    pass


class IdempotencyConflict(JobError):
    """The same idempotency key was used with another request body."""

    def __init__(self, job: Job):
        super().__init__("this Idempotency-Key was already used with a different request body")
        self.job = job


def request_fingerprint(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    # A provider-independent estimate (about four characters a token); the router needs a size before
    # any provider has counted one, and the real count arrives with the first call's usage.
    characters = sum(len(json.dumps(message.get("content", ""), ensure_ascii=False)) for message in messages)
    return max(1, characters // 4)


_ACTIVE_VERSION = """
    SELECT v.*, p.name AS found_policy
      FROM routing_policy p
      LEFT JOIN routing_policyversion v ON v.policy_id = p.id AND v.status = 'active'
     WHERE {where}
"""


def policy_version_for(policy_name: str | None) -> PolicyVersion:
    """The active version of the named policy, else of the default policy. One statement without the
    ORM's query compiler: every submission reads it, and at most one version per policy is active."""
    where, params = ("p.name = %s", [policy_name]) if policy_name else ("p.is_default", [])
    found = next(iter(PolicyVersion.objects.raw(_ACTIVE_VERSION.format(where=where), params)), None)
    if found is None:
        raise NoActivePolicy(f"no policy named {policy_name!r}" if policy_name else "no default policy is configured")
    if found.pk is None:
        raise NoActivePolicy(f"policy {found.found_policy!r} has no active version")
    # The policy's name comes with the row (a job's detail shows it); its other fields load if read.
    name = found.__dict__["found_policy"]  # a column of the raw query, not a field
    found.policy = Policy.from_db(found._state.db, ["id", "name"], [found.policy_id, name])
    return found


def job_submit(
    *,
    application: Application,
    task_type: str,
    messages: list[dict[str, Any]],
    actor: Actor,
    tools: list[dict[str, Any]] | None = None,
    response_format: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    labels: dict[str, Any] | None = None,
    constraints: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    callback_url: str = "",
    idempotency_key: str | None = None,
    implicit_idempotency: ImplicitWindow | None = None,
    policy: str | None = None,
    policy_version: PolicyVersion | None = None,
    replay_of: Job | None = None,
    submitted_by: User | None = None,
    purpose: str = JobPurpose.APPLICATION,
    dispatch: bool = True,
    run_id: str | None = None,
    run_role: str = "",
) -> tuple[Job, bool]:
    """Create a job and dispatch it after commit. Returns (job, created); a repeated idempotency key
    with the same request returns the first job and created=False.

    `dispatch=False` is for a caller that runs the job itself right after this returns (the synchronous
    OpenAI-compatible endpoint): nothing is published, but `dispatched_at` is set as if it had been, so
    if that caller dies before claiming it the beat sweeper sends it to a worker once the dispatch goes
    stale — the same recovery as a lost publish.

    `purpose=JobPurpose.EVALUATION` (a replay) makes a job the application can never read, list or be
    told about (routing.release).

    `implicit_idempotency` (without `idempotency_key`): an identical request repeated within the window
    is the same call — see routing.services.implicit_idempotency.

    `parameters` are the caller's Chat Completions parameters (routing.decide.parameters), sent with
    every call of the job as far as the answering deployment takes them.

    `run_id` (routing.services.runs): the run the job joins (`new` opens one). Its `run_role` is the
    caller's, else inferred: the call that opens a run is its planner, every later call a subagent."""
    if replay_of is not None and replay_of.erased_at is not None:
        raise JobError("this job's content was erased; there is nothing left to replay")
    if task_type not in TASK_TYPES:
        raise JobError(f"unknown task_type {task_type!r}; allowed: {', '.join(TASK_TYPES)}")
    for index, tool in enumerate(tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and "parameters" in function:
            # Tool calls are validated against it: a schema that is not one would hold every answer.
            problem = tool_arguments.schema_problem(function["parameters"])
            if problem:
                raise JobError(f"tools[{index}].function.parameters {problem}")
    request: dict[str, Any] = {"messages": messages}
    if tools:
        request["tools"] = tools
    if response_format:
        request["response_format"] = response_format
    if parameters:
        request["parameters"] = parameters
    fields = {
        "task_type": task_type,
        "request": request,
        "labels": labels or {},
        "constraints": constraints or {},
        "metadata": metadata or {},
        "callback_url": callback_url,
        "policy": policy,
    }
    if run_id:
        # Only when given, so that the fingerprints of calls outside runs stay what they were.
        fields["run"] = {"id": run_id, "role": run_role}
    try:
        run_role_parse(run_role)
        if run_id:
            run_id_parse(run_id)
    except InvalidRun as invalid:
        raise JobError(str(invalid)) from None
    fingerprint = request_fingerprint(fields)
    if idempotency_key:
        existing = Job.objects.filter(application=application, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replayed(existing, fingerprint)
    elif implicit_idempotency is not None:
        existing, idempotency_key = same_call(application, fingerprint, implicit_idempotency)
        if existing is not None:
            return existing, False
    version = policy_version or policy_version_for(policy)
    # Labels and metadata are kept redacted: they are not sent to the model, so nothing needs them raw,
    # and they are copied into the ledger and replays. The fingerprint above stays the raw request's,
    # so that an idempotent retry of the same body still matches.
    labels_kept, _ = redact_value(fields["labels"])
    metadata_kept, _ = redact_value(fields["metadata"])
    try:
        with transaction.atomic():
            run, opened = run_join(application=application, run_id=run_id, actor=actor) if run_id else (None, False)
            job = Job.objects.create(
                application=application,
                task_type=task_type,
                request=request,
                labels=labels_kept,
                constraints=fields["constraints"],
                metadata=metadata_kept,
                callback_url=callback_url,
                idempotency_key=idempotency_key or None,
                request_sha256=fingerprint,
                policy_version=version,
                replay_of=replay_of,
                submitted_by=submitted_by,
                purpose=purpose,
                input_tokens=estimate_tokens(messages),
                dispatched_at=timezone.now(),
                run=run,
                run_role=str(run_role or (RunRole.PLANNER if opened else RunRole.SUBAGENT)) if run else "",
            )
            prompt_digest = payloads.store(
                request, kind="prompt", subject={"job": job.pk, "application": application.pk}
            )
            ledger.append(
                "job.submitted",
                actor=actor,
                subject={"job": job.pk, "application": application.pk, "policy_version": version.pk},
                body={
                    "task_type": task_type,
                    "prompt": prompt_digest,
                    "request_sha256": fingerprint,
                    "labels": job.labels,
                    "constraints": job.constraints,
                    "policy_version_sha256": version.sha256,
                    "replay_of": str(replay_of.pk) if replay_of else None,
                    "purpose": str(purpose),
                    "input_tokens": job.input_tokens,
                    **({"run_id": str(run.pk), "run_role": job.run_role} if run else {}),
                },
            )
            if dispatch:
                dispatch_after_commit(job)
    except IntegrityError:
        # Two requests with one idempotency key raced; the unique constraint let exactly one in.
        if not idempotency_key:
            raise
        return _replayed(Job.objects.get(application=application, idempotency_key=idempotency_key), fingerprint)
    return job, True


def _replayed(existing: Job, fingerprint: str) -> tuple[Job, bool]:
    if existing.request_sha256 != fingerprint:
        raise IdempotencyConflict(existing)
    return existing, False


def dispatch_after_commit(job: Job) -> None:
    dispatch.send_on_commit(dispatch.EXECUTE_JOB, str(job.pk))


def job_cancel(*, job: Job, actor: Actor, reason: str = "") -> bool:
    """Cancel a job that has not finished. Returns False when it already had."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in TERMINAL_STATUSES:
            return False
        previous = locked.status
        locked.status = JobStatus.CANCELLED
        locked.status_reason = reason or "cancelled"
        locked.finished_at = timezone.now()
        locked.version += 1
        locked.save(update_fields=["status", "status_reason", "finished_at", "version"])
        locked.approval_requests.filter(status="pending").update(status="cancelled", resolved_at=locked.finished_at)
        job_settled_on_commit(locked, "job.cancelled")
        ledger.append(
            "job.cancelled",
            actor=actor,
            subject={"job": locked.pk, "application": locked.application_id},
            body={"from_status": previous, "reason": reason},
        )
    return True
