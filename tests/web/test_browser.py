"""The site in a real browser: the sign-in page, and an auditor who reads every app's pages (queue, job,
policies, catalog, applications, ledger, exports) and can change nothing; with screenshots of each page.

Run with `pytest -m e2e`; screenshots land in test-results/screenshots/.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed")

from playwright.sync_api import expect

from controlplane.roles import Role
from routing.models import Job, JobStatus
from tests.support.browser import CHROMIUM, UNSURE, no_csp_violations, shoot, sign_in
from tests.support.factories import UserFactory
from tests.support.workers import finished

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def test_an_auditor_reads_everything_and_changes_nothing(page, ui_server, browser_setup, console_errors):
    job = finished(browser_setup.submit(UNSURE))
    auditor = UserFactory(roles=[Role.AUDITOR])
    sign_in(page, ui_server, auditor)
    shoot(page, "15-dashboard-auditor")
    page.get_by_role("link", name="Review queue", exact=True).click()
    expect(page.get_by_role("button", name="Approve selected")).to_have_count(0)
    page.goto(f"{ui_server}/jobs/{job.pk}/")
    expect(page.get_by_text("Your role can read it but not decide it")).to_be_visible()
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Verify this job's chain").click()
    expect(page.locator("#verdict")).to_contain_text("Intact.", timeout=10_000)
    shoot(page, "16-job-verified-auditor")
    for link, heading, shot in (
        ("Policies", "Policies", "17-policies"),
        ("Catalog", "Model catalog", "18-catalog"),
        ("Applications", "Applications", "19-applications"),
        ("Ledger", "Ledger", "20-ledger"),
    ):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.locator("h1")).to_contain_text(heading)
        expect(page.get_by_role("button", name=re.compile("^(Disable|Enable|Revoke|Activate)$"))).to_have_count(0)
        shoot(page, shot)
    page.goto(f"{ui_server}/applications/{browser_setup.application.slug}/")
    expect(page.get_by_role("button", name="Create the key")).to_have_count(0)
    shoot(page, "21-application-auditor")

    # A forged POST with a valid CSRF token is still refused on the server.
    token = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRFToken"]
    forged = page.request.post(f"{ui_server}/jobs/{job.pk}/approve", form={"expected_version": str(job.version)},
                               headers={"X-CSRFToken": token})
    assert forged.status == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.AWAITING_APPROVAL

    page.goto(f"{ui_server}/ledger/?job={job.pk}")
    page.get_by_role("link", name="approval.requested").click()
    expect(page.locator("h1")).to_contain_text("approval.requested")
    shoot(page, "22-ledger-event")
    page.goto(f"{ui_server}/ledger/exports/new")
    page.get_by_label("Application").select_option(label=browser_setup.application.name)
    page.get_by_role("button", name="Start the export").click()
    expect(page.get_by_role("link", name=re.compile("Download arbiter-evidence"))).to_be_visible(timeout=30_000)
    expect(page.locator("progress")).to_have_attribute("value", "100")
    shoot(page, "23-export-done")
    no_csp_violations(console_errors)


def test_the_sign_in_page(page, ui_server, live_db):
    page.goto(f"{ui_server}/review/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/review/"))
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("did not match")
    shoot(page, "00-sign-in")
