"""Issue 12, item 9: an erasure — by job, by application, or by a data subject's identifier; from the
command line, the admin API or the page — removes every copy of the person's data (a `pg_dump` of the
database no longer holds their e-mail address), and the ledger still verifies."""

from __future__ import annotations

import io
import json
import subprocess
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from audit import payloads
from audit.ledger import Actor
from audit.models import LedgerEvent, LedgerSeal, PayloadReference
from audit.sealer import seal_pending
from controlplane.roles import Role
from review.services import approval_override, job_replay
from routing.models import ApprovalDecision, Job, JobStatus
from routing.models.applications import PLATFORM_ADMIN
from routing.services.erasure import erasure_apply, erasure_select
from routing.services.jobs import JobError
from tests.security.personal_data import Customer, held_refund
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.governed import Governed, governed
from tests.support.personas import client_with
from tests.support.workers import database_url_for_workers, finished

ERASURES = "/api/v1/admin/erasures"


def pg_dump() -> str:
    """The whole test database as `pg_dump --data-only` writes it (what a backup would hold)."""
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", f"--dbname={database_url_for_workers()}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return dump.stdout.lower()


def erased_job_events(job: Job) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(subject_job=str(job.pk), event_type="job.erased"))


def assert_blanked(job: Job) -> None:
    job.refresh_from_db()
    assert job.erased_at is not None
    assert job.request["erased"] is True and job.request["messages"] == []
    assert job.labels == {} and job.metadata == {}
    assert job.result is None or job.result["erased"] is True
    assert all(step.output is None or step.output.get("erased") for step in job.steps.all())
    for reference in PayloadReference.objects.filter(subject_job=str(job.pk)):
        assert payloads.load(reference.payload_id) is None
    [event] = erased_job_events(job)
    assert "content" not in json.dumps(event.body)


# --- by data subject, end to end, from the command line -------------------------------------------------


@pytest.mark.slow
def test_erasing_a_data_subject_leaves_their_email_nowhere_in_a_database_dump(
    model_server, workers, settings, tmp_path
):
    # Checkpoints of this test's own: the shared default file may describe another state of the test database.
    settings.ARBITER_CHECKPOINT_FILE = tmp_path / "checkpoints.jsonl"
    reviewer = UserFactory(roles=[Role.REVIEWER])
    customer = Customer.new()
    setup = governed(model_server.base_url)
    other_tenant = Governed(application=ApplicationFactory(), policy=setup.policy, deployments=setup.deployments)
    workers.start()
    refund = held_refund(setup, customer)
    edit = {"content": None, "tool_calls": [{"id": "e", "name": "issue_refund", "arguments": customer.arguments(99)}]}
    approval_override(job=refund, user=reviewer, reason=f"agreed with {customer.email}", output=edit)
    question = finished(
        setup.submit(f"[task:classification] [confidence:nano=0.95] Where is the parcel of {customer.email.upper()}?")
    )
    replay = finished(job_replay(job=question, user=reviewer))
    elsewhere = finished(other_tenant.submit(f"[task:classification] [confidence:nano=0.95] {customer.email} here"))
    unrelated = finished(setup.submit("[task:classification] [confidence:nano=0.95] Where is my parcel?"))
    assert customer.email in pg_dump(), "the raw e-mail must be in the database first, or the test proves nothing"
    first_seq = LedgerSeal.objects.filter(event__subject_job=str(refund.pk)).order_by("seq").first().seq

    out = io.StringIO()
    call_command("erase", "--subject", customer.email, "--reason", "data_subject_request", "--dry-run", stdout=out)
    assert "would erase 4 job(s)" in out.getvalue() and str(replay.pk) in out.getvalue()
    assert Job.objects.get(pk=question.pk).erased_at is None  # a dry run changes nothing
    reference = f"DSR-7 from {customer.email}"
    call_command(
        "erase",
        "--subject",
        customer.email.upper(),
        "--reason",
        "data_subject_request",
        "--reference",
        reference,
        stdout=io.StringIO(),
    )

    assert customer.email not in pg_dump()
    for job in (refund, question, replay, elsewhere):
        assert_blanked(job)
        [event] = erased_job_events(job)
        assert event.body["reason"] == "data_subject_request"
        # Free text stays out of the ledger: the reference is in the payload store, where erasure reaches it.
        assert "reference" not in event.body
        assert payloads.load(event.body["reference_sha256"]) == "DSR-7 from [ERASED]"
    decision = ApprovalDecision.objects.get(request__job=refund, kind="override")
    assert decision.override["erased"] is True and decision.reason == "agreed with [ERASED]"
    unrelated.refresh_from_db()
    assert unrelated.erased_at is None and "Where is my parcel?" in unrelated.request["messages"][0]["content"]
    # Digests and the record stay, and the chain over everything written since still verifies.
    assert Job.objects.get(pk=refund.pk).total_tokens > 0
    seal_pending()
    call_command("ledger_verify", "--since", str(first_seq), "--workers", "1", stdout=io.StringIO())


# --- by job and by application: the command and the service ---------------------------------------------


@pytest.fixture
def reviewer(db):
    return UserFactory(roles=[Role.REVIEWER])


def test_erasing_a_job_erases_its_replays_and_leaves_other_jobs(governed_setup, reviewer):
    customer = Customer.new()
    original = governed_setup.submit(f"refund for {customer.email}")
    replay = job_replay(job=original, user=reviewer)
    other = governed_setup.submit(f"refund for {customer.email} again")

    call_command("erase", "--job", str(original.pk), "--reason", "submitted_in_error", stdout=io.StringIO())

    assert_blanked(original)
    assert_blanked(replay)
    assert Job.objects.get(pk=other.pk).erased_at is None
    # An unfinished job is cancelled first, so that no worker writes an answer into it afterwards.
    assert Job.objects.get(pk=original.pk).status == JobStatus.CANCELLED


def test_an_erased_job_cannot_be_replayed(governed_setup, reviewer):
    job = governed_setup.submit("anything")
    erasure_apply(selection=erasure_select(job=job), actor=Actor.system("test"), reason="retention")
    with pytest.raises(JobError, match="erased"):
        job_replay(job=Job.objects.get(pk=job.pk), user=reviewer)
    with pytest.raises(CommandError, match="already erased"):
        call_command("erase", "--job", str(job.pk), "--reason", "retention")


def test_the_reference_stays_out_of_the_ledger_where_a_later_erasure_reaches_it(governed_setup):
    """Issue 16: the reason is a code; the free-text reference goes to the payload store, never the ledger."""
    number = f"CUST-{uuid.uuid4().hex[:8]}"
    job = governed_setup.submit("please close my account")
    call_command(
        "erase", "--job", str(job.pk), "--reason", "data_subject_request", "--reference", f"ticket {number}",
        stdout=io.StringIO(),
    )  # fmt: skip
    [event] = erased_job_events(job)
    assert event.body["reason"] == "data_subject_request"
    assert payloads.load(event.body["reference_sha256"]) == f"ticket {number}"
    assert not LedgerEvent.objects.filter(canonical__contains=number).exists()

    # The customer number is personal data too: an erasure that searches for it erases the reference.
    out = io.StringIO()
    call_command("erase", "--subject", number, "--reason", "data_subject_request", stdout=out)
    assert "erased 0 job(s) and 1 stored content(s)" in out.getvalue()
    assert payloads.load(event.body["reference_sha256"]) is None
    assert not LedgerEvent.objects.filter(canonical__contains=number).exists()


def test_the_command_refuses_what_it_cannot_do(governed_setup):
    with pytest.raises(CommandError, match="exactly one job"):
        call_command("erase", "--reason", "retention")
    with pytest.raises(CommandError, match="not a job id"):
        call_command("erase", "--job", "42", "--reason", "retention")
    with pytest.raises(CommandError, match="at least 5 characters"):
        call_command("erase", "--subject", "jo", "--reason", "retention")
    with pytest.raises(CommandError, match="no application"):
        call_command("erase", "--application", "nobody-here", "--reason", "retention")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("erase", "--application", governed_setup.application.slug, "--reason", "because")


# --- the admin API -----------------------------------------------------------------------------------


def test_the_api_previews_then_erases_an_applications_jobs(governed_setup, admin):
    customer = Customer.new()
    jobs = [governed_setup.submit(f"refund {customer.email} #{n}") for n in range(2)]
    body = {"application": governed_setup.application.slug, "reason": "retention", "dry_run": True}

    preview = admin.client.post(ERASURES, body, format="json")
    assert preview.status_code == 200, preview.content
    assert preview.json()["dry_run"] is True and preview.json()["payloads_erased"] is None
    assert sorted(preview.json()["jobs"]) == sorted(str(job.pk) for job in jobs)
    assert not Job.objects.filter(pk__in=[job.pk for job in jobs], erased_at__isnull=False).exists()

    done = admin.client.post(ERASURES, {**body, "dry_run": False}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["payloads_erased"] >= 2
    for job in jobs:
        assert_blanked(job)


def test_the_api_searches_every_application_for_a_data_subject(governed_setup, admin, outsider):
    customer = Customer.new()
    mine = governed_setup.submit(f"I am {customer.email}")
    theirs = outsider.setup.submit(f"{customer.email.upper()} writes")
    response = admin.client.post(ERASURES, {"subject": customer.email, "reason": "data_subject_request"}, format="json")
    assert response.status_code == 200, response.content
    assert sorted(response.json()["jobs"]) == sorted([str(mine.pk), str(theirs.pk)])
    assert_blanked(mine)
    assert_blanked(theirs)


def test_the_application_reads_an_erased_job_as_erased(owner, admin):
    customer = Customer.new()
    submitted = owner.submit(f"refund for {customer.email}", metadata={"contact": customer.email})
    assert submitted.status_code == 201, submitted.content
    job_id = submitted.json()["id"]
    erased = admin.client.post(ERASURES, {"job": job_id, "reason": "data_subject_request"}, format="json")
    assert erased.status_code == 200, erased.content

    read = owner.client.get(f"/api/v1/jobs/{job_id}")
    assert read.status_code == 200
    assert customer.email not in read.content.decode()
    assert read.json()["status"] == "cancelled"  # it had not run yet: erasure stopped it first


def test_the_api_needs_the_admin_scope(governed_setup, owner):
    job = governed_setup.submit("my data")
    body = {"job": str(job.pk), "reason": "retention"}
    assert client_with(None).post(ERASURES, body, format="json").status_code == 401
    refused = owner.client.post(ERASURES, body, format="json")
    assert refused.status_code == 403 and PLATFORM_ADMIN in refused.json()["detail"]
    assert Job.objects.get(pk=job.pk).erased_at is None


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"reason": "retention"}, 400, "exactly one job"),
        ({"subject": "jo", "reason": "retention"}, 400, "subject"),
        ({"subject": "jane@example.com", "reason": "because"}, 400, '\\"because\\" is not an erasure reason; one of'),
        ({"job": "00000000-0000-0000-0000-000000000000", "reason": "retention"}, 404, "no job"),
        ({"application": "nobody-here", "reason": "retention"}, 404, "no application"),
        ({"job": "not-a-uuid", "reason": "retention"}, 400, "job"),
        ({"subject": "jane@example.com", "reason": "retention", "everything": True}, 400, "everything"),
    ],
)
def test_the_api_says_what_is_wrong_with_a_bad_request(admin, body, status, says):
    response = admin.client.post(ERASURES, body, format="json")
    assert response.status_code == status, response.content
    assert says in json.dumps(response.json())


def test_the_api_refuses_other_methods(admin):
    assert admin.client.get(ERASURES).status_code == 405


# --- the page ----------------------------------------------------------------------------------------


def _form(customer: Customer, **extra) -> dict:
    return {"subject": customer.email, "reason": "data_subject_request", "reference": "DSR-9", **extra}


@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_the_page_previews_then_erases_with_a_reason(governed_setup, as_user, persona):
    customer = Customer.new()
    job = governed_setup.submit(f"please help, {customer.email}")
    client = as_user(persona)
    assert client.get(reverse("erasure")).status_code == 200

    preview = client.post(reverse("erasure-preview"), _form(customer), HTTP_HX_REQUEST="true")
    assert preview.status_code == 200
    assert str(job.pk) in preview.content.decode() and "Would erase 1 job" in preview.content.decode()
    assert Job.objects.get(pk=job.pk).erased_at is None

    done = client.post(reverse("erasure-confirm"), _form(customer, expected_jobs="1"))
    assert done.status_code == 200 and "Erased 1 job" in done.content.decode()
    assert_blanked(job)
    # Auditors (and reviewers) read job pages; policy admins do not.
    page = as_user("auditor").get(reverse("job", args=[job.pk])).content.decode()
    assert "Content erased" in page and "data_subject_request" in page and "DSR-9" in page
    assert customer.email not in page


def test_the_page_erases_nothing_when_the_selection_changed_since_the_preview(governed_setup, as_user):
    customer = Customer.new()
    job = governed_setup.submit(f"hello from {customer.email}")
    response = as_user("auditor").post(reverse("erasure-confirm"), _form(customer, expected_jobs="0"))
    assert response.status_code == 409 and "changed since the preview" in response.content.decode()
    assert Job.objects.get(pk=job.pk).erased_at is None


def test_the_page_says_what_is_wrong_with_a_bad_form(as_user):
    response = as_user("auditor").post(reverse("erasure-preview"), {"reason": "retention"})
    assert response.status_code == 400 and "Name a job, an application" in response.content.decode()
    short = as_user("auditor").post(reverse("erasure-preview"), {"subject": "jo", "reason": "retention"})
    assert short.status_code == 400


@pytest.mark.parametrize("persona", ["reviewer", "outsider"])
def test_the_page_is_for_auditors_and_policy_admins_only(governed_setup, as_user, persona):
    customer = Customer.new()
    job = governed_setup.submit(f"hello from {customer.email}")
    client = as_user(persona)
    assert client.get(reverse("erasure")).status_code == 403
    assert client.post(reverse("erasure-confirm"), _form(customer, expected_jobs="1")).status_code == 403
    assert Job.objects.get(pk=job.pk).erased_at is None


def test_the_page_sends_anonymous_visitors_to_sign_in(db):
    response = Client().get(reverse("erasure"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_the_page_refuses_wrong_methods_and_missing_csrf(governed_setup, as_user, people):
    client = as_user("auditor")
    assert client.get(reverse("erasure-preview")).status_code == 405
    assert client.get(reverse("erasure-confirm")).status_code == 405
    assert client.post(reverse("erasure")).status_code == 405
    customer = Customer.new()
    job = governed_setup.submit(f"hello from {customer.email}")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(people["auditor"])
    assert strict.post(reverse("erasure-confirm"), _form(customer, expected_jobs="1")).status_code == 403
    assert Job.objects.get(pk=job.pk).erased_at is None


def test_erasure_blanks_the_callback_url_the_idempotency_key_and_the_delivery_urls(governed_setup):
    """A callback URL or an idempotency key that names the customer stayed in Job.callback_url,
    Job.idempotency_key and WebhookDelivery.url after erasure, and a search for the subject did not even
    find the job."""
    from routing.models.webhooks import WebhookDelivery
    from routing.services.jobs import job_submit

    customer = Customer.new()
    url = f"https://hooks.example.com:8443/arbiter?customer={customer.email}"

    def submit(**fields):
        job, _ = job_submit(
            application=governed_setup.application,
            task_type="classification",
            messages=[{"role": "user", "content": "hello"}],
            actor=Actor.application(governed_setup.application.pk),
            policy=governed_setup.policy.name,
            dispatch=False,
            **fields,
        )
        return job

    by_url = submit(callback_url=url)
    by_key = submit(idempotency_key=f"refund-{customer.email}")
    by_delivery = submit()
    WebhookDelivery.objects.create(job=by_delivery, event="job.completed", url=url, attempt=1)
    submit(idempotency_key="refund-someone-else")  # not found by the search

    found = erasure_select(identifier=customer.email)
    assert set(found.job_ids) == {str(by_url.pk), str(by_key.pk), str(by_delivery.pk)}
    erasure_apply(selection=found, actor=Actor.system("test"), reason="data_subject_request")

    for job in Job.objects.filter(pk__in=found.job_ids):
        assert (job.callback_url, job.idempotency_key) == ("", None)
    assert WebhookDelivery.objects.get(job=by_delivery).url == "https://hooks.example.com:8443"
    # The key is free again: the unique constraint holds nothing of the erased job's.
    again = submit(idempotency_key=f"refund-{customer.email}")
    assert again.pk != by_key.pk
