"""The ledger browser: events filtered and paged, one event with its seal, the chain's status, a job's
chain verified from its page, and an evidence pack exported with progress and downloaded."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from audit import sealer
from audit.models import LedgerEvent
from controlplane.roles import Role
from tests.support.builders import active_policy, held_job
from tests.support.factories import ApplicationFactory, UserFactory
from tests.support.workers import wait_for


@pytest.fixture
def version(people):
    return active_policy()


def test_it_lists_events_newest_first_and_filters_them(as_user, version):
    job = held_job(version=version)
    client = as_user("auditor")
    page = client.get(reverse("ledger"), {"job": str(job.pk)}).content.decode()
    types = re.findall(r'/ledger/events/\d+/">([a-z_.]+)</a>', page)
    assert types == ["approval.requested", "job.escalated", "job.submitted"]
    only = client.get(reverse("ledger"), {"job": str(job.pk), "event_type": "job.escalated"}).content.decode()
    assert re.findall(r'/ledger/events/\d+/">([a-z_.]+)</a>', only) == ["job.escalated"]
    assert "Chain status" in page and "Export an evidence pack" in page


def test_it_pages_events_by_keyset(as_user, version, settings):
    settings.ARBITER_UI_PAGE_SIZE = 5
    jobs = [held_job(version=version) for _ in range(2)]
    application = jobs[0].application
    client = as_user("reviewer")
    first = client.get(reverse("ledger"), {"application": application.pk}).content.decode()
    assert "Export an evidence pack" not in first  # a reviewer reads; only an auditor exports
    ids = re.findall(r"/ledger/events/(\d+)/", first)
    assert len(ids) == 3
    first_all = client.get(reverse("ledger")).content.decode()
    cursor = re.search(r'after=([A-Za-z0-9_-]+)"', first_all).group(1)
    more = client.get(reverse("ledger"), {"after": cursor}, HTTP_HX_REQUEST="true").content.decode()
    page_one, page_two = re.findall(r"/ledger/events/(\d+)/", first_all), re.findall(r"/ledger/events/(\d+)/", more)
    assert len(page_one) == 5 and page_two and not set(page_one) & set(page_two)
    assert max(map(int, page_two)) < min(map(int, page_one)) or "<html" not in more


def test_a_bad_filter_is_reported_not_a_500(as_user):
    response = as_user("auditor").get(reverse("ledger"), {"job": "not-a-uuid", "since": "yesterday"})
    assert response.status_code == 200 and "Enter a valid UUID" in response.content.decode()


def test_one_event_shows_its_canonical_text(as_user, version):
    job = held_job(version=version)
    event = LedgerEvent.objects.filter(subject_job=str(job.pk), event_type="job.escalated").get()
    page = as_user("auditor").get(reverse("ledger-event", kwargs={"event_id": event.pk})).content.decode()
    assert "Not sealed yet" in page
    assert "&quot;from_tier&quot;:&quot;nano&quot;" in page  # the canonical JSON, escaped
    assert str(job.pk) in page


def test_an_export_needs_a_window_or_an_application(as_user):
    response = as_user("auditor").post(reverse("ledger-export-new"), {})
    assert response.status_code == 400 and "Choose a window or an application" in response.content.decode()
    backwards = as_user("auditor").post(reverse("ledger-export-new"), {"since": "2025-02-01", "until": "2025-01-01"})
    assert backwards.status_code == 400 and "The window ends before it starts." in backwards.content.decode()


def test_an_unknown_or_malformed_export_is_404(as_user):
    assert as_user("auditor").get(reverse("ledger-export", kwargs={"export_id": "f" * 32})).status_code == 404
    assert as_user("auditor").get(reverse("ledger-export", kwargs={"export_id": "not-an-export-id"})).status_code == 404


@pytest.mark.slow
def test_verifying_a_jobs_chain_from_its_page(live_db):
    with transaction.atomic():
        job = held_job(version=active_policy())
    sealer.seal_pending(wait=True)
    client = Client()
    client.force_login(UserFactory(roles=[Role.AUDITOR]))
    response = client.post(reverse("job-verify", kwargs={"job_id": job.pk}), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200 and "<html" not in page
    assert "Intact." in page and "3 sealed events" in page


@pytest.mark.slow
def test_an_auditor_exports_an_applications_evidence_with_progress_and_downloads_it(live_db):
    application = ApplicationFactory()
    with transaction.atomic():
        held_job(version=active_policy(), application=application)
    sealer.seal_pending(wait=True)
    client = Client()
    client.force_login(UserFactory(roles=[Role.AUDITOR]))
    started = client.post(reverse("ledger-export-new"), {"application": application.pk})
    assert started.status_code == 302
    progress_url = started["Location"]
    first = client.get(progress_url).content.decode()
    assert "<progress" in first

    def finished():
        text = client.get(progress_url, HTTP_HX_REQUEST="true").content.decode()
        return ("Download" in text or "Failed" in text) and text

    text = wait_for(finished, timeout=30, message="the export to finish")
    assert "100% · 3 of 3 events" in text
    download = re.search(r'href="(/ledger/exports/[0-9a-f]{32}/download)"', text).group(1)
    response = client.get(download)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["counts"]["events"] == 3 and manifest["filters"]["application"] == str(application.pk)
    assert len(archive.read("events.jsonl").splitlines()) == 3


def test_people_among_the_actors_are_named(as_user, people, version):
    job = held_job(version=version)
    as_user("reviewer").post(reverse("job-approve", kwargs={"job_id": job.pk}), {"expected_version": 1})
    page = as_user("auditor").get(reverse("ledger"), {"job": str(job.pk)}).content.decode()
    assert f"user <strong>{people['reviewer'].username}</strong>" in page
    assert f"application <span class=\"mono\">{job.application_id}</span>" in page
