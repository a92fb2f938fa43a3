"""Policy admins in a real browser: a threshold lowered as a new draft, four-eyes activation, the editor's
errors at their line; with screenshots of each page.

Run with `pytest -m e2e`; screenshots land in test-results/screenshots/.
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="pytest-playwright is not installed")

from playwright.sync_api import expect

from controlplane.roles import Role
from routing.models import PolicyVersion
from tests.support.browser import CHROMIUM, no_csp_violations, shoot, sign_in, sign_out
from tests.support.factories import UserFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def test_an_admin_lowers_a_threshold_and_a_second_admin_activates_it(page, ui_server, browser_setup, console_errors):
    author, second = UserFactory(roles=[Role.POLICY_ADMIN]), UserFactory(roles=[Role.POLICY_ADMIN])
    name = browser_setup.policy.name
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
    version = PolicyVersion.objects.get(policy=browser_setup.policy, number=2)
    assert (version.status, version.activated_by, version.parent.number) == ("active", second, 1)
    no_csp_violations(console_errors)
