"""The review queue: what is held, filtered, paged by keyset, counted, and decided in bulk."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse

from routing.models import ApprovalDecision, JobStatus
from tests.support.builders import active_policy, held_job
from tests.support.factories import ApplicationFactory


@pytest.fixture
def version(people):
    return active_policy()


def shown_jobs(response) -> list[str]:
    return re.findall(r'name="jobs" form="bulk" value="([0-9a-f-]{36}):\d+"', response.content.decode())


def test_it_lists_held_jobs_oldest_first_with_their_rule_and_approvals(as_user, version):
    application = ApplicationFactory()
    young = held_job(version=version, application=application, age=timedelta(minutes=2))
    old = held_job(version=version, application=application, age=timedelta(hours=3), rule="refunds-over-100",
                   required=2)
    response = as_user("reviewer").get(reverse("queue"), {"application": application.slug})
    assert response.status_code == 200
    assert shown_jobs(response) == [str(old.pk), str(young.pk)]
    page = response.content.decode()
    assert "refunds-over-100" in page
    assert "0 of 2" in page
    assert "3 h" in page


def test_it_leaves_out_jobs_that_are_no_longer_held(as_user, version):
    done = held_job(version=version)
    done.approval_requests.update(status="approved")
    done.__class__.objects.filter(pk=done.pk).update(status=JobStatus.COMPLETED)
    assert str(done.pk) not in shown_jobs(as_user("reviewer").get(reverse("queue")))


@pytest.mark.parametrize(
    ("query", "matching"),
    [
        ({"task_type": "extraction"}, "extraction"),
        ({"tier": "mini"}, "mini"),
        ({"rule": "personal-data"}, "pii"),
        ({"age": "1h"}, "old"),
        ({"min_confidence": "0.6", "max_confidence": "0.8"}, "confident"),
    ],
)
def test_it_filters_by_task_tier_rule_application_age_and_confidence(as_user, version, query, matching):
    jobs = {
        "plain": held_job(version=version),
        "extraction": held_job(version=version, task_type="extraction"),
        "mini": held_job(version=version, tier="mini"),
        "pii": held_job(version=version, rule="personal-data"),
        "old": held_job(version=version, age=timedelta(hours=2)),
        "confident": held_job(version=version, confidence=0.7),
    }
    response = as_user("reviewer").get(reverse("queue"), query)
    assert set(shown_jobs(response)) & {str(job.pk) for job in jobs.values()} == {str(jobs[matching].pk)}


def test_it_filters_by_application(as_user, version):
    application = ApplicationFactory()
    mine = held_job(version=version, application=application)
    held_job(version=version)
    response = as_user("reviewer").get(reverse("queue"), {"application": application.slug})
    assert shown_jobs(response) == [str(mine.pk)]


def test_it_pages_by_keyset_without_repeating_or_skipping(as_user, version, settings):
    settings.ARBITER_UI_PAGE_SIZE = 5
    application = ApplicationFactory()
    jobs = [held_job(version=version, application=application, age=timedelta(minutes=60 - i)) for i in range(12)]
    client = as_user("reviewer")
    seen, url, params = [], reverse("queue"), {"application": application.slug}
    for _ in range(5):
        response = client.get(url, params, HTTP_HX_REQUEST="true" if seen else None)
        seen += shown_jobs(response)
        cursor = re.search(r'after=([A-Za-z0-9_-]+)"', response.content.decode())
        if cursor is None:
            break
        params = {"application": application.slug, "after": cursor.group(1)}
    assert seen == [str(job.pk) for job in jobs]


def test_a_load_more_request_from_htmx_gets_only_rows(as_user, version, settings):
    settings.ARBITER_UI_PAGE_SIZE = 5
    for _ in range(7):
        held_job(version=version)
    first = as_user("reviewer").get(reverse("queue"))
    cursor = re.search(r'after=([A-Za-z0-9_-]+)"', first.content.decode()).group(1)
    more = as_user("reviewer").get(reverse("queue"), {"after": cursor}, HTTP_HX_REQUEST="true")
    assert more.status_code == 200
    assert b"<html" not in more.content and b"<tr>" in more.content


def test_a_malformed_cursor_starts_from_the_beginning(as_user, version):
    job = held_job(version=version)
    response = as_user("reviewer").get(reverse("queue"), {"after": "not-a-cursor!!"})
    assert response.status_code == 200
    assert str(job.pk) in shown_jobs(response)


def test_the_count_partial_updates_itself_and_says_when_the_queue_changed(as_user, version):
    application = ApplicationFactory()
    held_job(version=version, application=application)
    client = as_user("reviewer")
    page = client.get(reverse("queue"), {"application": application.slug}).content.decode()
    assert 'hx-trigger="every 10s"' in page
    poll = re.search(r'hx-get="(/review/count\?[^"]+)"', page).group(1).replace("&amp;", "&")
    held_job(version=version, application=application)
    response = client.get(poll, HTTP_HX_REQUEST="true")
    text = response.content.decode()
    assert response.status_code == 200 and "<html" not in text
    assert "<strong class=\"num\">2</strong> held jobs" in text
    assert "the queue changed (1 → 2)" in text


def test_an_auditor_reads_the_queue_but_gets_no_decision_controls(as_user, version):
    held_job(version=version)
    page = as_user("auditor").get(reverse("queue")).content.decode()
    assert "Approve selected" not in page and 'name="jobs"' not in page


def test_bulk_approval_decides_each_job_through_the_service_and_reports_failures(as_user, people, version):
    ok = held_job(version=version)
    two = held_job(version=version, required=2)
    stale = held_job(version=version)
    own = held_job(version=version, submitted_by=people["reviewer"])
    response = as_user("reviewer").post(reverse("queue-bulk"), {
        "decision": "approve",
        "reason": "checked in bulk",
        "jobs": [f"{ok.pk}:1", f"{two.pk}:1", f"{stale.pk}:0", f"{own.pk}:1"],
    })
    assert response.status_code == 200
    page = response.content.decode()
    assert "4 jobs, 2 not done" in page
    assert "another reviewer acted on this job" in page
    assert "you submitted this job" in page
    ok.refresh_from_db(), two.refresh_from_db(), stale.refresh_from_db()
    assert ok.status == JobStatus.COMPLETED
    assert two.status == JobStatus.AWAITING_APPROVAL  # one approval of two
    assert stale.status == JobStatus.AWAITING_APPROVAL
    assert ApprovalDecision.objects.filter(request__job=ok, reason="checked in bulk").exists()


def test_bulk_rejection_needs_a_reason(as_user, version):
    job = held_job(version=version)
    response = as_user("reviewer").post(reverse("queue-bulk"), {"decision": "reject", "jobs": [f"{job.pk}:1"]})
    assert response.status_code == 400
    assert b"A rejection needs a reason" in response.content
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL


def test_bulk_rejection_with_a_reason_rejects_and_tells_htmx_to_refresh_the_queue(as_user, version):
    jobs = [held_job(version=version) for _ in range(2)]
    response = as_user("reviewer").post(
        reverse("queue-bulk"),
        {"decision": "reject", "reason": "duplicate tickets", "jobs": [f"{job.pk}:1" for job in jobs]},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"queue-changed": {}}
    assert {job.__class__.objects.get(pk=job.pk).status for job in jobs} == {JobStatus.REJECTED}


def test_bulk_with_nothing_selected_or_a_forged_value_is_a_clear_400(as_user):
    client = as_user("reviewer")
    assert client.post(reverse("queue-bulk"), {"decision": "approve"}).status_code == 400
    response = client.post(reverse("queue-bulk"), {"decision": "approve", "jobs": ["'; drop table"]})
    assert response.status_code == 400
    assert client.post(reverse("queue-bulk"), {"decision": "delete", "jobs": []}).status_code == 400


def test_a_page_costs_the_same_number_of_queries_however_many_rows_it_shows(as_user, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    application = ApplicationFactory()
    client = as_user("reviewer")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(reverse("queue"), {"application": application.slug})
        return len(captured)

    held_job(version=version, application=application)
    one = queries()
    for _ in range(6):
        held_job(version=version, application=application)
    assert queries() == one
