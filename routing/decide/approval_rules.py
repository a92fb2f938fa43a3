"""Governance of an accepted result: which tool calls are blocked outright, which approval rules hold it.

Pure: the pipeline passes the facts of the result and turns the decision into approval requests.
- A tool call is *blocked* when its name is not among the tools the job offered (or the explicitly
  allowed ones), or when the policy lists it in `blocked_tools`. Blocked is final; no approver can lift it.
- An approval rule *holds* the result when its conditions hold. Conditions on `tool` and `args.*` are
  read from one tool call at a time: a rule with `tool: issue_refund` and `args.amount: {gt: 100}`
  matches when a single call satisfies both, never one call's name with another call's amount. Such a
  rule does not match a result without tool calls. Every matching rule holds, each with its own
  approvers, group, deadline and default on expiry.
- Rules fail closed. Tool calls are model output, and model output is attacker-controlled (prompt
  injection): a condition that cannot be evaluated — `args.amount` is "5000", an object, a list or
  missing; the arguments are not a JSON object at all — is *unknown*, and an unknown rule holds, with a
  reason that says what could not be evaluated (see `conditions.Atom.undecidable`).
- A result whose tool calls do not match their tool's JSON Schema (`ResultFacts.invalid_calls`, found by
  `routing.decide.tool_arguments`) is not a valid answer; when it is the one accepted, it is held for a human
  under the built-in rule `invalid-tool-arguments`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from routing.decide.policy.document import PolicyDocument
from routing.decide.policy.rules import DEFAULT_EXPIRES_AFTER_S, DEFAULT_GROUP, ApprovalRule
from routing.decide.policy.values import UNKNOWN, Unreadable, show, tool_names
from routing.decide.router import JobFacts

INVALID_ARGUMENTS_RULE = "invalid-tool-arguments"
UNEVALUATED = "held because it cannot be evaluated"


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    args: Mapping[str, Any] | Unreadable = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultFacts:
    job: JobFacts
    tool_calls: tuple[ToolCall | tuple[str, Mapping[str, Any] | str], ...] = ()
    allowed_tools: tuple[str, ...] | None = None  # None: the tools the job offered
    final_confidence: float | None = None
    final_tier: str | None = None
    cost_usd: float | None = None
    invalid_calls: tuple[str, ...] = ()  # why tool calls do not match their tool's schema


NOT_OFFERED = "<not offered>"


@dataclass(frozen=True, slots=True)
class BlockedCall:
    tool_call_index: int
    tool: str  # as the model wrote it: in memory only, never recorded (see `recorded`)
    reason: str
    known: bool = True  # offered by the job or listed by the policy: a name someone other than the model chose

    def recorded(self) -> dict[str, Any]:
        """The call as the ledger keeps it. A name the model made up (prompt injection can make it a card
        number or an e-mail address) is kept only as a digest: the append-only ledger can never erase it."""
        if self.known:
            return {"tool_call_index": self.tool_call_index, "tool": self.tool, "reason": self.reason}
        return {
            "tool_call_index": self.tool_call_index,
            "tool": NOT_OFFERED,
            "tool_sha256": name_digest(self.tool),
            "reason": self.reason,
        }


def name_digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _named(name: str, known: frozenset[str]) -> str:
    """A tool call's name in a reason: quoted when someone other than the model chose it, else a digest."""
    return show(name) if name in known else f"{NOT_OFFERED} (sha256 {name_digest(name)[:16]})"


@dataclass(frozen=True, slots=True)
class Hold:
    rule_id: str
    approvers: int
    group: str
    expires_after_s: int
    on_expiry: str
    reason: str
    tool_call_index: int | None = None


@dataclass(frozen=True, slots=True)
class GovernanceDecision:
    blocked: tuple[BlockedCall, ...]
    holds: tuple[Hold, ...]
    policy_sha256: str

    @property
    def outcome(self) -> str:
        return "blocked" if self.blocked else "hold" if self.holds else "pass"

    def to_record(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "policy_sha256": self.policy_sha256,
            "blocked": [b.recorded() for b in self.blocked],
            "holds": [
                {
                    "rule": hold.rule_id,
                    "approvers": hold.approvers,
                    "group": hold.group,
                    "expires_after_s": hold.expires_after_s,
                    "on_expiry": hold.on_expiry,
                    "reason": hold.reason,
                    "tool_call_index": hold.tool_call_index,
                }
                for hold in self.holds
            ],
        }


@dataclass(frozen=True, slots=True)
class _Context:
    """What approval conditions read (see `conditions._approval_getter`)."""

    job: JobFacts
    call: ToolCall | None
    final_confidence: object
    final_tier: object
    cost_usd: object


def evaluate_approvals(document: PolicyDocument, facts: ResultFacts) -> GovernanceDecision:
    calls = [_tool_call(item) for item in facts.tool_calls]
    allowed = tool_names(facts.allowed_tools if facts.allowed_tools is not None else facts.job.tools)
    known = frozenset(allowed) | frozenset(document.blocked_tools)
    blocked = []
    for index, call in enumerate(calls):
        if call.name not in allowed:
            offered = f"[{', '.join(allowed)}]" if allowed else "none"
            reason = f"tool call #{index} {_named(call.name, known)} is not among the job's allowed tools ({offered})"
            blocked.append(BlockedCall(index, call.name, reason, call.name in known))
        if call.name in document.blocked_tools:
            blocked.append(BlockedCall(index, call.name, f"tool {show(call.name)} is blocked by the policy"))
    holds = [hold for rule in document.approvals if (hold := _hold(rule, facts, calls, known)) is not None]
    if facts.invalid_calls:
        # Not a policy rule: an answer that breaks its tools' own contract is never released unseen.
        reason = "the answer's tool calls do not match their tools' schemas: " + "; ".join(facts.invalid_calls)
        holds.append(Hold(INVALID_ARGUMENTS_RULE, 1, DEFAULT_GROUP, DEFAULT_EXPIRES_AFTER_S, "reject", reason))
    return GovernanceDecision(tuple(blocked), tuple(holds), document.sha256)


def _tool_call(item: object) -> ToolCall:
    """Tool calls arrive as ToolCall or (name, args); args may still be the provider's JSON string.

    Arguments that do not parse, or parse to something other than an object, stay unreadable: read as
    `{}` they would match no rule and release the call unseen."""
    name, args = (item.name, item.args) if isinstance(item, ToolCall) else tuple(item)  # type: ignore[arg-type]
    if isinstance(args, str | bytes):
        try:
            args = json.loads(args)
        except ValueError:
            return ToolCall(str(name), Unreadable("the tool call's arguments are not valid JSON"))
    if not isinstance(args, Mapping | Unreadable):
        args = Unreadable(f"the tool call's arguments are {_json_kind(args)}, not a JSON object")
    return ToolCall(str(name), args)


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "a list"


def _hold(rule: ApprovalRule, facts: ResultFacts, calls: list[ToolCall], known: frozenset[str]) -> Hold | None:
    def context(call: ToolCall | None) -> _Context:
        return _Context(facts.job, call, facts.final_confidence, facts.final_tier, facts.cost_usd)

    condition = rule.condition
    if condition.per_call:
        unknown = None
        for index, call in enumerate(calls):
            truth, reason = condition.judge(context(call))
            if truth is True:
                return _make_hold(rule, f"tool call #{index} {_named(call.name, known)}: {reason}", index)
            if truth is UNKNOWN and unknown is None:
                unknown = _unknown_hold(rule, f"tool call #{index} {_named(call.name, known)}: {reason}", index)
        return unknown
    truth, reason = condition.judge(context(None))
    if truth is UNKNOWN:
        return _unknown_hold(rule, reason, None)
    return _make_hold(rule, reason, None) if truth else None


def _unknown_hold(rule: ApprovalRule, reason: str, index: int | None) -> Hold:
    # A rule's `on_expiry: approve` trusts that its condition was judged; one that could not be judged
    # must never be released by a deadline passing, so its hold rejects on expiry whatever the rule says.
    return replace(_make_hold(rule, f"{reason}: {UNEVALUATED}", index), on_expiry="reject")


def _make_hold(rule: ApprovalRule, reason: str, index: int | None) -> Hold:
    return Hold(rule.id, rule.approvers, rule.group, rule.expires_after_s, rule.on_expiry, reason, index)
