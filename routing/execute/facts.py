"""The seam between the database and the pure routing core: rows in, plain facts out, and back.

The router, the approval rules and the confidence estimators are pure functions (routing.decide.router,
routing.decide.approval_rules, routing.decide.confidence); this module builds their inputs from a Job and the
catalog, and turns their answers into provider requests and records.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from audit import redaction
from routing.decide import tool_arguments
from routing.decide.approval_rules import ResultFacts
from routing.decide.complexity import estimate_complexity
from routing.decide.policy.document import PolicyDocument, policy_from_data
from routing.decide.router import Constraints, DeploymentInfo, JobFacts, Plan, PlanStep, route
from routing.decide.runs import RunFacts
from routing.execute import latency
from routing.execute.budgets import BudgetState, budget_state
from routing.models import Job, ModelDeployment, PolicyVersion


@dataclass(frozen=True)
class Catalog:
    deployments: tuple[ModelDeployment, ...]
    infos: tuple[DeploymentInfo, ...]


@dataclass(frozen=True)
class RouteOutcome:
    plan: Plan | None
    error: str | None
    record: dict[str, Any]
    complexity: float
    budget: BudgetState
    run_refused: bool = False  # a run limit refused the job (routing.execute.runs)


_DOCUMENTS: dict[str, PolicyDocument] = {}
_DOCUMENTS_KEPT = 128


def document_for(version: PolicyVersion) -> PolicyDocument:
    # Versions are immutable and their hash names their content, so a parsed document is cached by the
    # hash alone: a job costs a dict lookup, not a serialisation of the document to build a cache key.
    document = _DOCUMENTS.get(version.sha256)
    if document is None:
        document = policy_from_data(json.loads(json.dumps(version.document)))  # a private copy
        if len(_DOCUMENTS) >= _DOCUMENTS_KEPT:
            _DOCUMENTS.clear()
        _DOCUMENTS[version.sha256] = document
    return document


def deployment_info(deployment: ModelDeployment, p95_ms: float | None = None) -> DeploymentInfo:
    return DeploymentInfo(
        name=deployment.name,
        tier=deployment.tier,
        region=deployment.region,
        capabilities=deployment.capabilities,
        enabled=deployment.enabled,
        p95_latency_ms=p95_ms,
        input_price_per_mtok=float(deployment.price_in_per_mtok),
        output_price_per_mtok=float(deployment.price_out_per_mtok),
    )


CATALOG_TTL_S = 2.0
_catalog_cache: tuple[float, Catalog] | None = None


def catalog_snapshot() -> Catalog:
    """The catalog with observed latencies. Cached for two seconds per process: it changes rarely,
    and reading it for every job would be a query and a Redis round trip on the hot path."""
    global _catalog_cache
    now = time.monotonic()
    if _catalog_cache is not None and now - _catalog_cache[0] < CATALOG_TTL_S:
        return _catalog_cache[1]
    deployments = tuple(ModelDeployment.objects.order_by("tier", "priority", "name"))
    stats = latency.stats_for([deployment.name for deployment in deployments])
    infos = tuple(deployment_info(d, stats[d.name].p95_ms) for d in deployments)
    catalog = Catalog(deployments=deployments, infos=infos)
    _catalog_cache = (now, catalog)
    return catalog


def catalog_forget() -> None:
    global _catalog_cache
    _catalog_cache = None


def detected_kinds(texts: object) -> tuple[str, ...]:
    """The kinds of personal data the configured detectors find in `texts` (a text, or every string of a
    JSON value), lowercased and sorted."""
    return tuple(sorted(label.lower() for label in redaction.detected(texts)))


def personal_data_kinds(job: Job) -> tuple[str, ...]:
    """`detected_kinds` of the job's prompt, computed once per Job instance (routing and governance
    both read it; the detectors are regular expressions over the whole prompt).

    Every string of every message counts, not only contents: earlier assistant turns' tool-call
    arguments and tool results are sent to the model too."""
    kinds = job.__dict__.get("_personal_data_kinds")
    if kinds is None:
        kinds = job.__dict__["_personal_data_kinds"] = detected_kinds(job.request.get("messages") or [])
    return kinds


def job_facts(job: Job, complexity: float, *, budget_hard_limit_reached: bool = False, detect: bool = True) -> JobFacts:
    """`detect=False` when the policy never reads `detected`: the detectors are then not run at all."""
    tools = tuple(tool.get("function", {}).get("name", "") for tool in job.request.get("tools") or [])
    constraints = job.constraints or {}
    # The run as it stood when the job joined it, and what its limits decided (routing.execute.runs).
    admission = job.run_admission
    return JobFacts(
        task_type=job.task_type,
        input_tokens=job.input_tokens,
        complexity=complexity,
        application=job.application.slug,
        labels=job.labels,
        constraints=Constraints(
            latency_budget_ms=constraints.get("latency_budget_ms"),
            cost_cap_usd=constraints.get("cost_cap_usd"),
            min_tier=constraints.get("min_tier"),
            max_tier=constraints.get("max_tier"),
        ),
        metadata=job.metadata,
        tools=tools,
        budget_hard_limit_reached=budget_hard_limit_reached,
        detected=personal_data_kinds(job) if detect else (),
        run=RunFacts(**admission["facts"]) if admission else None,
        run_downgrade=any(limit["action"] == "downgrade" for limit in (admission or {}).get("reached", ())),
    )


def route_job(
    job: Job, document: PolicyDocument, catalog: Catalog, classifier: dict[str, Any] | None = None
) -> RouteOutcome:
    """Route `job`. `classifier` is the complexity classifier's record when the policy asked for one;
    its score, when it gave one, is the complexity the rules see."""
    estimate = estimate_complexity(job.request["messages"], job.request.get("tools") or [], job.constraints)
    complexity = estimate.score
    if classifier is not None and classifier.get("score") is not None:
        complexity = classifier["score"]
    budget = budget_state(job.application)
    facts = job_facts(
        job, complexity, budget_hard_limit_reached=budget.over_hard, detect=document.detects_personal_data
    )
    result = route(facts, document, catalog.infos)
    record = result.to_record()
    record["complexity"] = {
        "score": complexity,
        "method": "classifier" if complexity is not estimate.score else "heuristic",
        "heuristic": estimate.to_record(),
        "classifier": classifier,
    }
    record["budget"] = budget.to_record()
    return RouteOutcome(plan=result.plan, error=result.error, record=record, complexity=complexity, budget=budget)


def provider_request(job: Job, step: PlanStep, plan: Plan, candidates: list[ModelDeployment]) -> dict[str, Any]:
    request: dict[str, Any] = {"messages": job.request["messages"]}
    if job.request.get("tools"):
        request["tools"] = job.request["tools"]
    if job.request.get("response_format"):
        request["response_format"] = job.request["response_format"]
    if step.confidence_method == "logprob" and all(d.supports_logprobs for d in candidates):
        request["logprobs"] = True
    if plan.limits.max_output_tokens:
        request["max_tokens"] = plan.limits.max_output_tokens
    return request


def output_schema(job: Job, plan: Plan) -> Any:
    """The schema the `schema` method checks: the rule's own, else the job's response_format schema."""
    if plan.output_schema is not None:
        return plan.output_schema
    response_format = job.request.get("response_format") or {}
    return (response_format.get("json_schema") or {}).get("schema")


def cost_cap(job: Job) -> Decimal | None:
    cap = (job.constraints or {}).get("cost_cap_usd")
    return Decimal(str(cap)) if cap is not None else None


def caller_parameters(job: Job) -> dict[str, Any]:
    """The parameters the caller set on the job's request (routing.decide.parameters)."""
    return job.request.get("parameters") or {}


def output_of(completion: Any, *, logprobs: bool = False) -> dict[str, Any]:
    """The answer as data: content and tool calls (arguments parsed where they are JSON), and the token
    logprobs when the caller asked for them (they are the answer's text again, so they are released, or
    withheld, with it)."""
    message = completion.choices[0].message
    tool_calls = []
    for call in message.tool_calls or []:
        try:
            arguments: Any = json.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = call.function.arguments
        tool_calls.append({"id": call.id, "name": call.function.name, "arguments": arguments})
    output = {
        "content": message.content,
        "tool_calls": tool_calls,
        "finish_reason": completion.choices[0].finish_reason,
    }
    choice_logprobs = completion.choices[0].logprobs
    if logprobs and choice_logprobs is not None:
        output["logprobs"] = choice_logprobs.model_dump(mode="json", exclude_unset=True)
    return output


def tool_call_problems(job: Job, output: dict) -> list[str]:
    """Why the answer's tool calls break their tools' schemas (empty when they do not)."""
    return tool_arguments.problems(job.request.get("tools") or [], output.get("tool_calls") or [])


def result_facts(
    job: Job, output: dict, tier: str, confidence: float | None, total_cost: Decimal, *, detect: bool = True
) -> ResultFacts:
    complexity = job.complexity if job.complexity is not None else 0.0
    calls = tuple((call["name"], call["arguments"]) for call in output.get("tool_calls") or [])
    return ResultFacts(
        job=job_facts(job, complexity, detect=detect),
        tool_calls=calls,
        final_confidence=confidence,
        final_tier=tier,
        cost_usd=float(total_cost),
        invalid_calls=tuple(tool_call_problems(job, output)),
    )
