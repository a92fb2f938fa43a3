"""The invariant that is the product, tested as an invariant.

A model's answer that the policy holds or blocks never reaches the application, by any path, until
the decision the policy requires has been taken by the distinct eligible people it requires; nobody
decides their own job; every state change writes its ledger event; the chain verifies.

A hypothesis state machine drives random sequences of what applications, reviewers and admins do —
submit (jobs API, chat completions and the Responses API, streamed or not), retry a call as an SDK
does, continue a response from a previous one or delete one, approve, reject, override, escalate, replay under the
active version or a draft, cancel, let a deadline pass, edit the policy — by random personas, one of
whom is the person who minted the application's key (and so submitted its jobs) and is a reviewer and
an admin too. After every step it reads every job as the application would (job detail, list, events,
the webhook body it would be sent, and each response through `GET /v1/responses/{id}`) and checks the
invariant against the approval decisions in the database. Jobs run in this process against the real
local model server, through the same code a worker runs (claim, route, call, score, escalate, govern),
so a sequence of steps takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass

import pytest
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from audit.ledger import Actor
from audit.models import LedgerEvent
from audit.verify import verify_events_for
from controlplane.roles import Role, has_role
from review.services import (
    ReviewError,
    approval_approve,
    approval_escalate,
    approval_override,
    approval_reject,
    approvals_expire_due,
    job_replay,
)
from routing.execute.run import job_run
from routing.execute.webhooks import webhook_payload
from routing.models import ApprovalDecision, Job, JobPurpose, JobStatus, StoredResponse
from routing.models.approvals import ApprovalStatus
from routing.services.keys import api_key_create
from routing.services.policies import (
    PolicyActionError,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)
from tests.support.factories import UserFactory
from tests.support.governed import POLICY, governed
from tests.support.personas import client_with

pytestmark = pytest.mark.slow

# Marks of the model's held answer that appear nowhere else (ids and digests are hex, so a bare figure
# could turn up in one by chance): if the application can read either before the decision, the held
# answer leaked — as a value, or grouped as in a rule's explanation ("args.amount is 5,017, > 100").
SECRET_AMOUNT = 5017
SECRET_MEMO = "ZEPHYRQUOKKA"
LEAKS = (SECRET_MEMO, f"{SECRET_AMOUNT:,}")

REFUND_TOOL = [
    {
        "type": "function",
        "function": {
            "name": "issue_refund",
            # No type on `amount`, so that a string number reaches the approval rule itself.
            "parameters": {"type": "object", "properties": {"memo": {"type": "string"}}},
        },
    }
]


def _answer(confidence: str, call: str = "", args: dict | None = None, text: str = "") -> str:
    directive = f" [call:{call} {json.dumps(args)}]" if call else ""
    return f"[task:general] [confidence:{confidence}]{directive} {text}".strip()


SURE, UNSURE = "nano=0.95,mini=0.95,flagship=0.95", "nano=0.2,mini=0.3,flagship=0.4"
ANSWERS = {
    # held by refunds-over-100 (two approvers)
    "big_refund": _answer(SURE, "issue_refund", {"amount": SECRET_AMOUNT, "memo": SECRET_MEMO}),
    # a number in a string: a rule that cannot evaluate it must hold, never pass
    "string_refund": _answer(SURE, "issue_refund", {"amount": str(SECRET_AMOUNT), "memo": SECRET_MEMO}),
    # arguments that break the tool's own schema at every tier: held when nothing valid remains
    "schema_violation": _answer(SURE, "issue_refund", {"amount": SECRET_AMOUNT, "memo": [SECRET_MEMO]}),
    # a tool the job never offered: blocked outright
    "blocked_call": _answer(SURE, "delete_database", {"rows": SECRET_AMOUNT, "memo": SECRET_MEMO}),
    # unsure after the flagship: held for one reviewer
    "unsure": _answer(UNSURE, text=f"the answer is {SECRET_MEMO}"),
    # passes every rule: the application reads it at once
    "small_refund": _answer(SURE, "issue_refund", {"amount": 7}),
}
RESPONSES_REFUND_TOOL = [{"type": "function", **REFUND_TOOL[0]["function"]}]
# A draft without a single approval rule: replaying a held job under it must still release nothing.
NO_APPROVALS = POLICY.split("approvals:")[0]
STRICTER = POLICY.replace("approvers: 2", "approvers: 3")

PICK = st.integers(min_value=0, max_value=999)  # which of the jobs an action is taken on
# Who acts on a held job: reviewers more often than the others, so that sequences reach a second distinct
# approval (a release) as well as every refusal (the submitter, an admin or an auditor deciding).
DECIDERS = st.sampled_from(("reviewer1", "reviewer2", "reviewer3") * 3 + ("owner", "admin1", "auditor"))
PERSONAS = ("owner", "reviewer1", "reviewer2", "reviewer3", "admin1", "admin2", "auditor")


@dataclass
class World:
    """What a sequence of steps shares: the set-up, the people, the application's key and client."""

    setup: object
    people: dict
    key: str
    client: object


class GovernanceMachine(RuleBasedStateMachine):
    base_url = ""  # the local model server's, set by the test

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[str] = []
        self.responses: list[str] = []  # the jobs made through the Responses API
        self.calls: list[tuple[str, dict]] = []  # the OpenAI-shaped requests sent, for an SDK's retries
        # Per job: (status, version) and its number of ledger events when last looked at.
        self.ledgered: dict[str, tuple[tuple[str, int], int]] = {}

    @initialize()
    def set_up(self) -> None:
        setup = governed(self.base_url)
        people = {
            "owner": UserFactory(roles=[Role.REVIEWER, Role.POLICY_ADMIN]),
            "reviewer1": UserFactory(roles=[Role.REVIEWER]),
            "reviewer2": UserFactory(roles=[Role.REVIEWER]),
            "reviewer3": UserFactory(roles=[Role.REVIEWER]),
            "admin1": UserFactory(roles=[Role.POLICY_ADMIN]),
            "admin2": UserFactory(roles=[Role.POLICY_ADMIN]),
            "auditor": UserFactory(roles=[Role.AUDITOR]),
        }
        _, key = api_key_create(
            application=setup.application,
            scopes=["jobs:read", "jobs:write"],
            actor=Actor.user(people["owner"].pk),
            created_by=people["owner"],
        )
        self.world = World(setup=setup, people=people, key=key, client=client_with(key))

    # ------------------------------------------------------------------ what the application does

    @rule(answer=st.sampled_from(sorted(ANSWERS)))
    def submit_over_the_jobs_api(self, answer: str) -> None:
        response = self.world.client.post(
            "/api/v1/jobs",
            {
                "task_type": "general",
                "messages": [{"role": "user", "content": ANSWERS[answer]}],
                "tools": REFUND_TOOL,
                "policy": self.world.setup.policy.name,
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        job_id = response.json()["id"]
        self.jobs.append(job_id)
        run(job_id)

    @rule(answer=st.sampled_from(sorted(ANSWERS)), stream=st.booleans())
    def submit_over_the_openai_endpoint(self, answer: str, stream: bool) -> None:
        self._call_openai(
            "/v1/chat/completions",
            {
                "model": f"arbiter/{self.world.setup.policy.name}",
                "messages": [{"role": "user", "content": ANSWERS[answer]}],
                "tools": REFUND_TOOL,
                "stream": stream,
            },
        )

    @rule(answer=st.sampled_from(sorted(ANSWERS)), stream=st.booleans())
    def submit_over_the_responses_api(self, answer: str, stream: bool) -> None:
        self._call_openai(
            "/v1/responses",
            {
                "model": f"arbiter/{self.world.setup.policy.name}",
                "input": ANSWERS[answer],
                "tools": RESPONSES_REFUND_TOOL,
                "stream": stream,
            },
        )

    @precondition(lambda self: self.calls)
    @rule(pick=PICK)
    def an_sdk_retries_a_call(self, pick: int) -> None:
        """The same request again, as an SDK's automatic retry sends it (no idempotency key): the implicit
        key finds the first try's job, whose answer is still released only by the decision."""
        path, body = self.calls[pick % len(self.calls)]
        self._call_openai(path, body, record=False)

    @precondition(lambda self: self.responses)
    @rule(pick=PICK, answer=st.sampled_from(sorted(ANSWERS)))
    def continue_a_response(self, pick: int, answer: str) -> None:
        """`previous_response_id` puts the previous answer in front of the model: an answer not released
        must not travel that way either, nor make a job."""
        stored = self._stored(pick)
        if stored is None:
            return
        previous = stored.job
        before = Job.objects.count()
        body = {
            "model": f"arbiter/{self.world.setup.policy.name}",
            "previous_response_id": f"resp_{previous.pk.hex}",
            "input": ANSWERS[answer],
            "tools": RESPONSES_REFUND_TOOL,
        }
        if _released(previous):
            self._call_openai("/v1/responses", body)
            return
        response = self.world.client.post("/v1/responses", body, format="json")
        assert response.status_code >= 400, "a conversation continued from an answer nobody released"
        assert not any(leak in _body(response) for leak in LEAKS), _body(response)
        assert Job.objects.count() == before, "continuing an unreleased answer made a job"

    @precondition(lambda self: self.responses)
    @rule(pick=PICK)
    def delete_a_response(self, pick: int) -> None:
        """The application's handle goes; the job, its answer and its ledger stay (held ones stay held)."""
        stored = self._stored(pick)
        if stored is None:
            return
        response = self.world.client.delete(f"/v1/responses/resp_{stored.job_id.hex}")
        assert response.status_code == 200, response.content
        assert response.json() == {"id": f"resp_{stored.job_id.hex}", "object": "response", "deleted": True}

    def _stored(self, pick: int) -> StoredResponse | None:
        """One of the responses the application has not deleted (`pick` is drawn whatever the database holds,
        so a replayed example draws the same data)."""
        stored = list(
            StoredResponse.objects.filter(job__in=self.responses, deleted_at=None)
            .select_related("job")
            .order_by("created_at")
        )
        return stored[pick % len(stored)] if stored else None

    def _call_openai(self, path: str, body: dict, *, record: bool = True) -> None:
        response = self.world.client.post(path, body, format="json")
        content = _body(response)
        job_id = response.headers.get("x-arbiter-job-id")
        assert job_id, (response.status_code, content)
        if record:
            self.calls.append((path, body))
        if job_id not in self.jobs:
            self.jobs.append(job_id)
            if path == "/v1/responses":
                self.responses.append(job_id)
        if response.status_code == 200:
            assert _released(Job.objects.get(pk=job_id)), f"{path} answered with an unreleased output"
        else:
            # Held, blocked, or (a retry) rejected or cancelled since: the answer says so and carries
            # nothing of the model's output, and no stream was started.
            assert 400 <= response.status_code < 500, content
            assert response.headers["Content-Type"].startswith("application/json"), response.headers
            assert not any(leak in content for leak in LEAKS), content

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        job_id = self.jobs[pick % len(self.jobs)]
        self.world.client.post(f"/api/v1/jobs/{job_id}/cancel", {"reason": "changed my mind"}, format="json")

    # ------------------------------------------------------------------ what reviewers do

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK, person=DECIDERS, decision=st.sampled_from(["approve"] * 4 + ["reject"]))
    def decide(self, pick, person: str, decision: str) -> None:
        job = self._held(pick)
        if job is None:
            return
        user = self.world.people[person]
        try:
            if decision == "approve":
                approval_approve(job=job, user=user, reason="looked at it")
            else:
                approval_reject(job=job, user=user, reason="not like this")
        except ReviewError:
            pass

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK, person=DECIDERS, amount=st.sampled_from([7, 250, SECRET_AMOUNT * 1000]))
    def override(self, pick, person: str, amount: int) -> None:
        job = self._held(pick)
        if job is None:
            return
        # The shape a result's output is stored in: the reviewer edits the held tool call's amount.
        edited = {
            "content": "Calling issue_refund.",
            "tool_calls": [{"id": "call_edit", "name": "issue_refund", "arguments": {"amount": amount}}],
        }
        with contextlib.suppress(ReviewError):
            approval_override(job=job, user=self.world.people[person], reason="edited the amount", output=edited)

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK, person=st.sampled_from(PERSONAS))
    def escalate(self, pick, person: str) -> None:
        job = self._held(pick)
        if job is None:
            return
        try:
            approval_escalate(job=job, user=self.world.people[person], reason="ask a bigger model")
        except ReviewError:
            return
        run(str(job.pk))

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK, person=st.sampled_from(PERSONAS), under=st.sampled_from(["same", "draft"]))
    def replay(self, pick: int, person: str, under: str) -> None:
        original = Job.objects.get(pk=self.jobs[pick % len(self.jobs)])
        version = None
        if under == "draft":
            version = policy_version_create(
                policy=self.world.setup.policy,
                source=NO_APPROVALS,
                author=self.world.people["admin1"],
                comment="no approval rules",
            )
        try:
            replayed = job_replay(job=original, user=self.world.people[person], policy_version=version)
        except ReviewError:
            return
        self.jobs.append(str(replayed.pk))
        run(str(replayed.pk))

    @precondition(lambda self: self.jobs)
    @rule(pick=PICK)
    def a_deadline_passes(self, pick: int) -> None:
        job = self._held(pick)
        if job is None:
            return
        job.approval_requests.filter(status=ApprovalStatus.PENDING).update(expires_at=timezone.now())
        approvals_expire_due()

    # ------------------------------------------------------------------ what admins do

    @rule(author=st.sampled_from(PERSONAS), activator=st.sampled_from(PERSONAS), strict=st.booleans())
    def edit_the_policy(self, author: str, activator: str, strict: bool) -> None:
        people = self.world.people
        if not has_role(people[author], Role.POLICY_ADMIN):
            return
        version = policy_version_create(
            policy=self.world.setup.policy,
            source=STRICTER if strict else POLICY,
            author=people[author],
            comment="an edit",
        )
        with pytest.raises(PolicyActionError):
            policy_version_activate(version=version, user=people[author])  # never alone
        policy_version_submit(version=version, user=people[author])
        try:
            policy_version_activate(version=version, user=people[activator])
        except PolicyActionError:
            assert activator == author or not has_role(people[activator], Role.POLICY_ADMIN)

    # ------------------------------------------------------------------ the invariant

    @invariant()
    def no_held_or_blocked_answer_reaches_the_application(self) -> None:
        for job_id in self.jobs:
            job = Job.objects.get(pk=job_id)
            detail = self.world.client.get(f"/api/v1/jobs/{job_id}")
            events = self.world.client.get(f"/api/v1/jobs/{job_id}/events")
            if job.purpose == JobPurpose.EVALUATION:
                assert detail.status_code == 404, "a replay is an evaluation, never the application's answer"
                assert events.status_code == 404
                continue
            assert detail.status_code == 200 and events.status_code == 200
            released = _released(job)
            output = (detail.json().get("result") or {}).get("output")
            if not released:
                assert output is None, f"{job.status} job {job_id} shows its output before the decision"
                bodies = {
                    "job detail": detail.content.decode(),
                    "events": events.content.decode(),
                    "webhook": json.dumps(_webhook(job)),
                }
                for path, body in bodies.items():
                    assert not any(leak in body for leak in LEAKS), f"{job.status} job {job_id}: {path} leaks {body}"

    @invariant()
    def a_held_or_blocked_response_reads_back_without_its_output(self) -> None:
        for stored in StoredResponse.objects.filter(job__in=self.responses).select_related("job"):
            job, job_id = stored.job, stored.job_id
            response = self.world.client.get(f"/v1/responses/resp_{job.pk.hex}")
            if stored.deleted_at is not None:
                assert response.status_code == 404, response.content
                continue
            assert response.status_code == 200, response.content
            read = response.json()
            if _released(job):
                assert read["status"] == "completed" and read["output"], read
            else:
                assert read["output"] == [] and read["usage"] is None, f"{job.status} response {job_id}: {read}"
                assert not any(leak in response.content.decode() for leak in LEAKS), response.content

    @invariant()
    def the_application_lists_only_its_own_answers(self) -> None:
        if not self.jobs:
            return
        listed = self.world.client.get("/api/v1/jobs?page_size=200").json()
        rows = listed["results"] if isinstance(listed, dict) else listed
        evaluations = set(
            Job.objects.filter(pk__in=self.jobs, purpose=JobPurpose.EVALUATION).values_list("pk", flat=True)
        )
        for row in rows:
            assert uuid.UUID(row["id"]) not in evaluations
            if row.get("result") and row["result"].get("output") is not None:
                assert _released(Job.objects.get(pk=row["id"]))

    @invariant()
    def nobody_decides_their_own_job(self) -> None:
        assert not ApprovalDecision.objects.filter(
            request__job__in=self.jobs, actor=F("request__job__submitted_by")
        ).exists()

    @invariant()
    def every_job_submitted_with_the_key_is_the_owners(self) -> None:
        owner = self.world.people["owner"]
        assert not Job.objects.filter(pk__in=self.jobs, replay_of__isnull=True).exclude(submitted_by=owner).exists()

    @invariant()
    def every_state_change_has_its_ledger_event_and_the_chain_verifies(self) -> None:
        for job_id in self.jobs:
            job = Job.objects.get(pk=job_id)
            seen = self.ledgered.get(job_id)
            count = LedgerEvent.objects.filter(subject_job=job_id).count()
            if seen is not None and (job.status, job.version) != seen[0]:
                assert count > seen[1], f"job {job_id} moved {seen[0]} -> {job.status} without a ledger event"
            self.ledgered[job_id] = ((job.status, job.version), count)
            report = verify_events_for(job_id=job_id)
            assert not report.problems, report.problems

    def _held(self, pick: int) -> Job | None:
        # `pick` is drawn whatever the database holds, so a replayed example draws the same data.
        held = list(Job.objects.filter(pk__in=self.jobs, status=JobStatus.AWAITING_APPROVAL).order_by("created_at"))
        # Mostly the newest held jobs, so that decisions accumulate on one job rather than scatter.
        return held[-1 - pick % min(len(held), 2)] if held else None


def _released(job: Job) -> bool:
    """Whether the policy allows the application to read this job's answer now, from the database's own
    record of decisions: completed, and the last approval request (if it was ever held) decided by at
    least the required number of distinct eligible people other than the submitter — or lapsed where
    the policy itself says that lapsing approves."""
    if job.purpose != JobPurpose.APPLICATION or job.status != JobStatus.COMPLETED:
        return False
    requests = list(job.approval_requests.order_by("created_at", "id"))
    if not requests:
        return True
    last = requests[-1]
    if last.status == ApprovalStatus.EXPIRED:
        return last.on_expiry == "approve"
    if last.status != ApprovalStatus.APPROVED:
        return False
    # Every rule's own requirement, each by its own group: a group with no role makes nobody eligible.
    requirements = last.requirements
    deciders = {
        decision.actor
        for decision in last.decisions.filter(kind__in=["approve", "override"]).select_related("actor")
        if decision.actor_id != job.submitted_by_id
    }
    return bool(requirements) and all(
        item["group"] in {role.value for role in Role}
        and sum(1 for person in deciders if has_role(person, Role(item["group"]))) >= item["approvers"]
        for item in requirements
    )


def _body(response) -> str:
    """What the application received, a stream read to its end."""
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def _webhook(job: Job) -> dict:
    event = {
        JobStatus.AWAITING_APPROVAL: "job.approval_required",
        JobStatus.BLOCKED: "job.blocked",
    }.get(job.status, f"job.{job.status}")
    return webhook_payload(job, event)


def run(job_id: str) -> None:
    """Run a queued job here, as a worker would (claim, route, call, score, escalate, govern)."""
    job_run(job_id=job_id, worker=f"invariant-test:{uuid.uuid4().hex[:6]}")


def test_no_sequence_of_actions_releases_what_the_policy_holds(model_server, live_db):
    machine = type("Machine", (GovernanceMachine,), {"base_url": model_server.base_url}).TestCase
    machine.settings = settings(
        max_examples=15,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    machine().runTest()
