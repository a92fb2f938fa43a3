"""A job's place in its run: the run's limits (a policy's `runs:` section) judged when the job is first
routed, inside the claim's transaction and under a row lock on the run, so that two calls racing at a
limit cannot both pass it: the second reads the counters the first wrote.

What was decided is kept on the job (`run_admission`): the run as it stood (the facts rules read as
`run.*`), the limits reached with their actions, and whether the job counts as a flagship call. A later
attempt of the same job keeps that decision; it is neither counted again nor judged again.

- downgrade: the router drops the flagship tier from the job's cascade (routing.decide.runs);
- hold: the job runs, and its answer is held for a person like an approval rule's hold (governance);
- refuse: the job is rejected before any call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from audit import ledger
from routing.decide import runs as run_limits
from routing.decide.policy.document import PolicyDocument
from routing.decide.policy.rules import DEFAULT_GROUP
from routing.decide.router import Plan
from routing.execute.facts import RouteOutcome
from routing.models import Job, JobStatus, Run, Step

RUN_LIMIT_RULE = "run_limit"


def run_locked(job: Job) -> Run | None:
    """The job's run, locked until the caller's transaction ends; None when the job is in no run or was
    already admitted (an earlier attempt's decision stands)."""
    if job.run_id is None or job.run_admission is not None:
        return None
    # FOR NO KEY UPDATE: calls of the run are judged one at a time, while new jobs can still be inserted
    # into it (their foreign key takes only a key-share lock on the run).
    return Run.objects.select_for_update(no_key=True).get(pk=job.run_id)


def run_admit_route(
    job: Job, run: Run, document: PolicyDocument, route_for: Callable[[], RouteOutcome]
) -> RouteOutcome:
    """Route the job as its run's limits allow (`route_for` routes it as `job.run_admission` says). Sets
    `job.run_admission`; nothing is written until `run_admission_record`."""
    cost = Step.objects.filter(job__run_id=run.pk).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    run.cost_usd = cost
    run.flagship_calls = _flagship_calls(run)
    facts = run_limits.RunFacts(run.calls, run.flagship_calls, float(cost), job.run_role)
    job.run_admission = {"facts": asdict(facts), "reached": [], "flagship": False}
    route = route_for()
    reached = run_limits.limits_reached(document.runs, facts, wants_flagship=_has_flagship(route.plan))
    job.run_admission["reached"] = [limit.to_record() for limit in reached]
    actions = run_limits.actions(reached)
    if "refuse" in actions:
        refusal = "; ".join(limit.reason() for limit in reached if limit.action == "refuse")
        route.record["run"] = job.run_admission
        return replace(route, plan=None, error=refusal, run_refused=True)
    if "downgrade" in actions:
        route = route_for()
    job.run_admission["flagship"] = _has_flagship(route.plan)
    route.record["run"] = job.run_admission
    return route


def run_admission_record(job: Job, run: Run, *, actor: ledger.Actor, attempt: int) -> None:
    """Inside the claim's transaction, still holding the run's lock: count the job in its run, keep the
    decision on the job, and log each limit reached."""
    admission = job.run_admission
    assert admission is not None
    Run.objects.filter(pk=run.pk).update(
        calls=run.calls + 1,
        flagship_calls=run.flagship_calls + int(admission["flagship"]),
        cost_usd=run.cost_usd,
    )
    Job.objects.filter(pk=job.pk).update(run_admission=admission)
    subject = {"job": job.pk, "application": job.application_id}
    body = {"run_id": str(run.pk), "attempt": attempt, "role": job.run_role}
    ledger.append_many(
        [ledger.Entry("run.limit_reached", actor, subject, {**limit, **body}) for limit in admission["reached"]]
    )


def run_holds(job: Job) -> list[dict[str, Any]]:
    """The holds a run's limits put on the job's answer, shaped as an approval rule's (governance)."""
    reached = (job.run_admission or {}).get("reached", ())
    return [
        {
            "rule": f"{RUN_LIMIT_RULE}:{limit['limit']}",
            "approvers": 1,
            "group": DEFAULT_GROUP,
            "expires_after_s": 24 * 3600,
            "on_expiry": "reject",
            "reason": run_limits.LimitReached(**limit).reason(),
            "tool_call_index": None,
        }
        for limit in reached
        if limit["action"] == "hold"
    ]


def _flagship_calls(run: Run) -> int:
    """The run's flagship calls: its finished calls that used the flagship, and its calls still in flight
    whose plan can reach it (reserved until they finish, so calls racing the limit cannot overrun it). A call
    whose cheaper tier answered gives its reservation back: a subagent's nano answer is not a flagship call."""
    in_flight = Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    return (
        Job.objects.filter(run_id=run.pk, run_admission__flagship=True)
        .filter(in_flight | Q(steps__tier="flagship"))
        .distinct()
        .count()
    )


def _has_flagship(plan: Plan | None) -> bool:
    return plan is not None and any(step.tier == "flagship" for step in plan.steps)
