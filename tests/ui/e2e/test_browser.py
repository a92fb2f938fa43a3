"""The UI in a real browser: reviewers, admins and an auditor at work, with screenshots of each page.

Run with `pytest tests/ui/e2e`; screenshots land in test-results/screenshots/.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed")

from playwright.sync_api import expect

from controlplane.roles import Role
from routing.models import Job, JobStatus, PolicyVersion
from tests.factories import UserFactory
from tests.pipeline.setup import governed
from tests.pipeline.test_pipeline import REFUND_TOOL, finished
from tests.ui.e2e.conftest import CHROMIUM, shoot, sign_in, sign_out

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

UNSURE = "[task:classification] [confidence:nano=0.2,mini=0.3,flagship=0.4] Which queue for ticket 4411?"
REFUND = ('[task:general] [confidence:mini=0.9,flagship=0.9] '
          '[call:issue_refund {"amount": 150, "note": "<script>alert(1)</script>"}] refund order 4411')


@pytest.fixture
def setup(model_server, workers, ui_server):
    governed_setup = governed(model_server.base_url)
    workers.start()
    return governed_setup


def no_csp_violations(errors: list[str]) -> None:
    assert not [error for error in errors if "Content Security Policy" in error or "Refused to" in error], errors


def test_a_reviewer_sees_a_held_job_arrive_and_approves_it(page, ui_server, setup, console_errors):
    reviewer = UserFactory(roles=[Role.REVIEWER])
    sign_in(page, ui_server, reviewer)
    shoot(page, "01-dashboard-reviewer")
    page.get_by_role("link", name="Review queue", exact=True).click()
    page.get_by_placeholder("application").fill(setup.application.slug)
    expect(page.locator("#queue-count")).to_contain_text("0 held jobs")

    job = finished(setup.submit(UNSURE))
    assert job.status == JobStatus.AWAITING_APPROVAL
    # The count polls every 10 s and says when the queue changed; no reload by hand.
    expect(page.locator("#queue-count")).to_contain_text("1 held job", timeout=15_000)
    page.get_by_role("link", name=re.compile("the queue changed")).click()
    row = page.locator("#queue-rows tr", has_text=str(job.pk)[:8])
    expect(row).to_contain_text("unsure-after-flagship")
    shoot(page, "02-review-queue")

    row.get_by_role("link", name=str(job.pk)[:8]).click()
    expect(page.locator("h1")).to_contain_text("held for approval")
    expect(page.get_by_text("Why this rule")).to_be_visible()
    shoot(page, "03-job-held")
    page.locator("form[action$='/approve']").get_by_label("Note (optional)").fill("checked the ticket")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("your approval is recorded; the job is completed")
    expect(page.locator("h1")).to_contain_text("completed")
    shoot(page, "04-job-approved")
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    no_csp_violations(console_errors)


def test_another_reviewer_overrides_with_a_reason_and_sees_the_diff(page, ui_server, setup, console_errors):
    job = finished(setup.submit(REFUND, task_type="general", tools=REFUND_TOOL))
    assert job.status == JobStatus.AWAITING_APPROVAL
    sign_in(page, ui_server, UserFactory(roles=[Role.REVIEWER]))
    page.goto(f"{ui_server}/jobs/{job.pk}/")
    # The model's output contains a script tag: it is shown as text and never runs.
    expect(page.locator("pre.output").nth(1)).to_contain_text("<script>alert(1)</script>")
    page.get_by_text("Override the answer").click()
    page.get_by_label("arguments of issue_refund").fill('{"amount": 90, "note": "capped at the policy limit"}')
    page.locator("#override_reason").fill("refunds above 100 need a manager; capped at 90")
    page.get_by_role("button", name="Preview the change").click()
    diff = page.locator("#override-preview .diff")
    expect(diff.locator(".diff-del")).to_contain_text(['"amount": 150'])
    expect(diff.locator(".diff-add")).to_contain_text(['"amount": 90'])
    shoot(page, "05-override-diff")
    page.get_by_role("button", name="Confirm the override").click()
    expect(page.locator(".messages")).to_contain_text("the override is recorded")
    # An override is a decision like an approval: on a two-approver hold it is the first of two.
    expect(page.locator("#h-answer")).to_contain_text("overridden — proposed, awaiting approval")
    expect(page.locator(".approval-count")).to_contain_text("1 of 2 approvals")
    shoot(page, "06-job-overridden")
    job.refresh_from_db()
    assert job.status == JobStatus.AWAITING_APPROVAL
    assert job.result["output"]["tool_calls"][0]["arguments"] == {"amount": 90, "note": "capped at the policy limit"}
    no_csp_violations(console_errors)


def test_two_reviewers_at_once_one_wins_and_the_other_is_told(browser, ui_server, setup):
    job = finished(setup.submit(UNSURE))
    first, second = browser.new_page(), browser.new_page()
    sign_in(first, ui_server, UserFactory(roles=[Role.REVIEWER]))
    sign_in(second, ui_server, UserFactory(roles=[Role.REVIEWER]))
    for page in (first, second):
        page.goto(f"{ui_server}/jobs/{job.pk}/")
    first.get_by_role("button", name="Approve", exact=True).click()
    expect(first.locator(".messages")).to_contain_text("the job is completed")
    second.locator("#reject_reason").fill("wrong queue")
    second.get_by_role("button", name="Reject", exact=True).click()
    expect(second.get_by_role("alert")).to_contain_text("another reviewer acted on this job while you were looking")
    expect(second.locator("h1")).to_contain_text("completed")
    shoot(second, "07-stale-decision")


def test_a_replay_is_shown_side_by_side_with_its_original(page, ui_server, setup, console_errors):
    job = finished(setup.submit(UNSURE))
    sign_in(page, ui_server, UserFactory(roles=[Role.REVIEWER]))
    page.goto(f"{ui_server}/jobs/{job.pk}/")
    page.get_by_label("Replay under").select_option(label=f"{setup.policy.name} v1")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("h1")).to_contain_text("Replay beside its original")
    replay = page.locator("section[aria-label=replay]")
    # The page polls while the replay runs; it is held again, like the original.
    expect(replay.locator("h2")).to_contain_text("held for approval", timeout=30_000)
    expect(page.locator("section[aria-label=original] tbody tr")).to_have_count(3)
    expect(replay.locator("tbody tr")).to_have_count(3)
    shoot(page, "08-replay-side-by-side")
    no_csp_violations(console_errors)


def test_an_admin_lowers_a_threshold_and_a_second_admin_activates_it(page, ui_server, setup, console_errors):
    author, second = UserFactory(roles=[Role.POLICY_ADMIN]), UserFactory(roles=[Role.POLICY_ADMIN])
    name = setup.policy.name
    sign_in(page, ui_server, author)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name=name).click()
    shoot(page, "09-policy-history")
    page.get_by_role("link", name="v1", exact=True).click()
    page.get_by_role("link", name="Change thresholds").click()
    page.get_by_label("cheap-first · nano").fill("0.65")
    page.get_by_label("Comment").fill("nano is better calibrated than we thought")
    shoot(page, "10-thresholds-form")
    page.get_by_role("button", name="Save as a new draft").click()
    expect(page.locator("h1")).to_contain_text(f"{name} v2")
    page.get_by_role("button", name="Submit for activation").click()
    expect(page.locator(".messages")).to_contain_text("v2 is submitted")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".messages")).to_contain_text("four-eyes: the author of a version cannot activate it")
    shoot(page, "11-four-eyes-refused")
    page.get_by_role("link", name="diff").click()
    expect(page.locator(".diff-add")).to_contain_text(["nano: 0.65"])
    shoot(page, "12-policy-diff")

    page.goto(f"{ui_server}/policies/{name}/new")
    editor = page.locator("#id_source")
    editor.fill(editor.input_value().replace("nano: 0.8", "nano: 1.8"))
    expect(page.locator("#check")).to_contain_text("rules[0].escalate_below.nano: 1.8 must be <= 1", timeout=10_000)
    expect(page.locator("#gutter .ln.err")).to_have_count(1)
    shoot(page, "13-policy-editor-error")

    sign_out(page)
    sign_in(page, ui_server, second)
    page.goto(f"{ui_server}/policies/{name}/v2/")
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".messages")).to_contain_text("v2 is active")
    expect(page.locator("h1")).to_contain_text("active")
    shoot(page, "14-policy-activated")
    version = PolicyVersion.objects.get(policy=setup.policy, number=2)
    assert (version.status, version.activated_by, version.parent.number) == ("active", second, 1)
    no_csp_violations(console_errors)


def test_an_auditor_reads_everything_and_changes_nothing(page, ui_server, setup, console_errors):
    job = finished(setup.submit(UNSURE))
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
    page.goto(f"{ui_server}/applications/{setup.application.slug}/")
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
    page.get_by_label("Application").select_option(label=setup.application.name)
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
