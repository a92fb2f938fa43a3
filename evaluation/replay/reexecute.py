"""Full re-execution of past jobs under a draft policy version, within a cost cap.

Each past job's stored input (`Job.request`: messages, tools, response format) is sent again as a worker
would send it under the draft: the router decides with the draft and the current catalog (with its live
latency figures, as a worker routing now would), each plan step calls the real deployments through the
workers' own retry loop and adapter (`routing.execute.calls.call_tier` → `routing.execute.providers.chat`),
the answer is scored by `routing.execute.scoring.score_step` and kept or escalated by the live cascade walk
(`routing.decide.cascade`: `PlanStep.accepts` and the job's own cost cap, as in a worker), and the draft's
approval rules are evaluated on the accepted answer as a worker's governance evaluates them. Where a worker
would fail the job (its last tier unavailable) the replay reports "draft: <tier> unavailable".
Nothing is written about the job: no job, step, payload or shadow call is created and the original is
only read. The only record is the run's `Evaluation` row and its `evaluation.recorded` ledger event,
which carries what the replay spent.

The cap is never exceeded: before every call the worst case of that call is reserved — input tokens
bounded by the UTF-8 size of the request as sent (a byte-level tokenizer makes at most one token per byte,
and the JSON framing outweighs any chat template's per-message tokens) or the original's recorded prompt
tokens if larger, times the dearest input price among the step's deployments; output tokens bounded by
the request's `max_tokens` (the draft's `limits.max_output_tokens`) or else the deployment's context
window, times the dearest output price. A judge (`verifier`) or second sample (`agreement`) call is
bounded the same way once the request it will send is known. When the reservation does not fit what is
left, the run stops there: that job and every later one are reported as not run (`not_run_cost_cap`).
Failed attempts inside the retry loop are assumed unbilled (providers do not bill errors); a request that
timed out on our side but completed at the provider is the one spend no client can see.

The spend is the replay's, not the application's: it is not charged to the application's monthly budget
(no job carries it); it is on the `evaluation.recorded` event. That event and the row are written when the
run ends, or when it breaks off with an error (with what was spent until then); a process killed mid-run
leaves its calls unrecorded. Replay calls go through the shared circuit breakers and feed the deployments'
latency figures, as any call to them does.

A job whose input was erased (its prompt payload erased by a data-protection request or by retention, or
its messages empty) is reported "unknown: input erased" and never sent: an erased prompt is not replayed
from any other copy, and never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from audit.models import PayloadReference
from evaluation.replay.routing_only import (
    JobReplay,
    ReexecutedStep,
    answer_differs,
    draft_holds,
    history_report,
    original_of,
    progress_every,
)
from routing.decide import cascade
from routing.decide.confidence import verifier_prompt
from routing.decide.policy.document import PolicyDocument, policy_from_data
from routing.decide.router import Plan, PlanStep, route
from routing.execute import facts
from routing.execute.calls import CallResult, TierUnavailable, call_tier
from routing.execute.scoring import score_step
from routing.models import Job, ModelDeployment, PolicyVersion

INPUT_ERASED = "unknown: input erased"
NOT_RUN = "not run: cost cap reached"


class CapReached(Exception):
    """The next call's worst case does not fit what is left of the cap."""


@dataclass
class Spend:
    cap: Decimal
    spent: Decimal = Decimal(0)
    calls: int = 0
    failed_attempts: int = 0
    estimate_exceeded: int = 0  # calls that cost more than their reserved worst case: should stay 0
    stopped: bool = False

    def reserve(self, worst_case: Decimal) -> None:
        if self.spent + worst_case > self.cap:
            self.stopped = True
            raise CapReached

    def pay(self, calls: Sequence[CallResult], worst_case: Decimal) -> Decimal:
        cost = sum((call_cost(call) for call in calls), Decimal(0))
        self.spent += cost
        self.calls += len(calls)
        self.failed_attempts += sum(1 for call in calls for attempt in call.attempts if attempt.outcome != "ok")
        self.estimate_exceeded += cost > worst_case
        return cost


def call_cost(call: CallResult) -> Decimal:
    usage = call.response.completion.usage
    if usage is None:
        return Decimal(0)
    return call.deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens)


def input_token_bound(request: dict[str, Any], recorded_prompt_tokens: int = 0) -> int:
    sent = {key: value for key, value in request.items() if key not in ("max_tokens", "logprobs")}
    return max(len(json.dumps(sent, ensure_ascii=False).encode("utf-8")), recorded_prompt_tokens)


def worst_case_usd(
    deployments: Sequence[ModelDeployment], request: dict[str, Any], recorded_prompt_tokens: int = 0
) -> Decimal:
    """The most one call with `request` can cost on whichever of `deployments` answers it."""
    prompt = input_token_bound(request, recorded_prompt_tokens)
    limit = request.get("max_tokens")
    return max(
        (d.cost_usd(prompt, limit if limit is not None else d.context_window) for d in deployments),
        default=Decimal(0),
    )


def erased_inputs(jobs: Sequence[Job]) -> set[str]:
    """Ids of the jobs whose prompt payload was erased, or whose stored request carries no message text."""
    ids = [str(job.pk) for job in jobs]
    erased = set(
        PayloadReference.objects.filter(subject_job__in=ids, kind="prompt", payload__erased_at__isnull=False)
        .values_list("subject_job", flat=True)
        .distinct()
    )
    for job in jobs:
        messages = (job.request or {}).get("messages") or []
        if not any(message.get("content") or message.get("tool_calls") for message in messages):
            erased.add(str(job.pk))
    return erased


def _extra_worst_case(
    method: str | None,
    plan: Plan,
    call: CallResult,
    request: dict[str, Any],
    deployments: dict[str, ModelDeployment],
    job: Job,
) -> Decimal:
    """The worst case of the extra call a scoring method makes (none for single-call methods)."""
    if method == "agreement":
        return worst_case_usd([call.deployment], {**request, "seed": 1})
    if method == "verifier" and plan.verifier is not None:
        answer = call.response.completion.choices[0].message.content
        judge_request = {"messages": verifier_prompt(job.request["messages"], answer)}
        judges = [deployments[name] for name in plan.verifier.deployments if name in deployments]
        return worst_case_usd(judges, judge_request)
    return Decimal(0)


def _scoring_worst_case(
    plan: Plan, step: PlanStep, call: CallResult, request: dict, deployments: dict, job: Job
) -> Decimal:
    methods = {step.confidence_method, step.confidence_fallback} - {None}
    return sum((_extra_worst_case(method, plan, call, request, deployments, job) for method in methods), Decimal(0))


def reexecute_job(
    job: Job, document: PolicyDocument, catalog: facts.Catalog, spend: Spend, original: JobReplay
) -> JobReplay:
    """The draft's answer to the job, from real calls; raises CapReached when the next call would not fit.

    The cascade is the live one (routing.decide.cascade, with the job's own cost cap); only its answers
    differ in where they go: kept in memory, never recorded about the job."""
    downgraded = bool(((job.route or {}).get("plan") or {}).get("downgraded"))
    job_facts = facts.job_facts(job, job.complexity or 0.0, budget_hard_limit_reached=downgraded)
    result = route(job_facts, document, catalog.infos)
    if result.plan is None:
        return replace(original, unknown=f"unroutable: {result.error}")
    plan = result.plan
    deployments = {deployment.name: deployment for deployment in catalog.deployments}
    recorded_prompt = max((step.prompt_tokens for step in original.original_steps), default=0)

    def answer_for_step(index: int, plan_step: PlanStep) -> cascade.Answered | cascade.Unavailable:
        candidates = [deployments[name] for name in plan_step.deployments if name in deployments]
        request = facts.provider_request(job, plan_step, plan, candidates)
        worst = worst_case_usd(candidates, request, recorded_prompt)
        spend.reserve(worst)  # the replay's own cap, not the job's: raises CapReached before the call
        try:
            call = call_tier(plan_step.tier, candidates, request, facts.caller_parameters(job))
        except TierUnavailable as unavailable:
            spend.failed_attempts += len(unavailable.attempts)
            return cascade.Unavailable(str(unavailable))
        step_cost = spend.pay([call], worst)
        scoring_worst = _scoring_worst_case(plan, plan_step, call, request, deployments, job)
        if scoring_worst:
            spend.reserve(scoring_worst)
        output = facts.output_of(call.response.completion)
        score, scoring_calls = score_step(
            job=job,
            plan=plan,
            step=plan_step,
            call=call,
            request=request,
            deployments=deployments,
            schema=facts.output_schema(job, plan),
            output=output,
        )
        step_cost += spend.pay(scoring_calls, scoring_worst)
        answer = ReexecutedStep(
            plan_step.tier, call.deployment.name, score.score, score.method, step_cost, output, accepted=False
        )
        return cascade.Answered(score.score, step_cost, answer)

    walk = cascade.cascade_walk(plan.steps, answer_for_step, cost_cap_usd=facts.cost_cap(job))
    if walk.stop == cascade.Stop.UNAVAILABLE:
        # Where a worker would fail the job, the replay has no answer to compare.
        return replace(original, unknown=f"draft: {walk.visits[-1].step.tier} unavailable")
    walked = [replace(visit.result.answer, accepted=visit.accepted) for visit in walk.answered]
    final = walked[-1]
    holds = draft_holds(job, document, final.output, final.tier, final.confidence, walk.total_cost)
    return replace(
        original,
        draft_tier=final.tier,
        draft_cost=float(walk.total_cost),
        draft_steps=tuple(walked),
        draft_holds=holds,
        draft_stop=walk.stop,
        answer_differs=answer_differs(original, final),
    )


class ReexecutionAborted(Exception):
    """The run broke off; `report` is what was done and spent up to then, for the record."""

    def __init__(self, report: dict[str, Any], error: BaseException):
        super().__init__(f"full replay aborted after spending ${report['spent_usd']}: {error}")
        self.report = report


def reexecute_history(
    *,
    version: PolicyVersion,
    jobs: Sequence[Job],
    cost_cap_usd: Decimal,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    document = policy_from_data(version.document)
    # The catalog as it is now, not the process's cached copy of up to two seconds ago.
    facts.catalog_forget()
    catalog = facts.catalog_snapshot()
    erased = erased_inputs(jobs)
    spend = Spend(cost_cap_usd)
    total, every = len(jobs), progress_every(len(jobs))
    replays: list[JobReplay] = []
    if progress:
        progress(0, total)
    try:
        for done, job in enumerate(jobs, start=1):
            original = original_of(job)
            if spend.stopped:
                replays.append(replace(original, unknown=NOT_RUN))
            elif str(job.pk) in erased:
                replays.append(replace(original, unknown=INPUT_ERASED))
            else:
                try:
                    replays.append(reexecute_job(job, document, catalog, spend, original))
                except CapReached:
                    replays.append(replace(original, unknown=NOT_RUN))
            if progress and (done % every == 0 or done == total):
                progress(done, total)
    except Exception as error:
        # Money may have been spent: the caller records what was done before passing the error on.
        aborted = [replace(original_of(job), unknown="not run: replay aborted") for job in jobs[len(replays) :]]
        report = _full_report(version, replays + aborted, spend)
        report["aborted"] = str(error)[:500]
        raise ReexecutionAborted(report, error) from error
    return _full_report(version, replays, spend)


def _full_report(version: PolicyVersion, replays: Sequence[JobReplay], spend: Spend) -> dict[str, Any]:
    report = history_report(version, replays, mode="full")
    not_run = sum(1 for replay in replays if replay.unknown == NOT_RUN)
    executed = sum(
        1 for replay in replays if replay.unknown is None or (replay.unknown or "").startswith("draft:")
    )
    report.update(
        {
            "cost_cap_usd": round(float(spend.cap), 8),
            "spent_usd": round(float(spend.spent), 8),
            "executed": executed,
            "not_run_cost_cap": not_run,
            "stopped_at_cap": spend.stopped,
            "input_erased": sum(1 for replay in replays if replay.unknown == INPUT_ERASED),
            "calls": {
                "paid": spend.calls,
                "failed_attempts": spend.failed_attempts,
                "over_worst_case": spend.estimate_exceeded,
            },
        }
    )
    return report
