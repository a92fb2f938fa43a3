"""Issue 12, item 5: activation needs a submitted version and a second person. One admin cannot write a
version through their key and activate it themselves — not in the UI, not over the API, not as the
submitter of a version someone (or something) else wrote."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import LedgerEvent
from routing.models import ApiKey, PolicyVersion
from routing.services.policies import policy_version_create, policy_version_submit
from tests.support.governed import POLICY
from tests.support.personas import client_with, key_for

pytestmark = pytest.mark.django_db
STRICTER = POLICY.replace("{mini: 0.75}", "{mini: 0.8}", 1)


@pytest.fixture
def admin_key(governed_setup, people):
    """The admin persona's own platform key: it acts for them."""
    return client_with(key_for(governed_setup.application, "platform:admin", owner=people["admin"]))


def _versions_url(setup) -> str:
    return f"/api/v1/admin/policies/{setup.policy.name}/versions"


def _status(setup, number: int) -> str:
    return PolicyVersion.objects.get(policy=setup.policy, number=number).status


def _activate_in_ui(client, setup, number: int):
    return client.post(
        reverse("policy-version-activate", kwargs={"name": setup.policy.name, "number": number}), follow=True
    )


def test_an_admin_cannot_activate_what_their_key_wrote_in_the_ui_or_over_the_api(governed_setup, admin_key, as_user):
    created = admin_key.post(_versions_url(governed_setup), {"source": STRICTER, "parent": 1}, format="json")
    assert created.status_code == 201, created.json()
    number = created.json()["number"]

    unsubmitted = admin_key.post(f"{_versions_url(governed_setup)}/{number}/activate", format="json")
    assert unsubmitted.status_code == 409
    assert "never submitted: submit it first" in unsubmitted.json()["detail"]
    in_the_ui = _activate_in_ui(as_user("admin2"), governed_setup, number).content.decode()
    assert "never submitted: submit it first" in in_the_ui
    assert _status(governed_setup, number) == "draft"

    assert admin_key.post(f"{_versions_url(governed_setup)}/{number}/submit", format="json").status_code == 200
    over_the_api = admin_key.post(f"{_versions_url(governed_setup)}/{number}/activate", format="json")
    assert over_the_api.status_code == 403
    assert over_the_api.json()["code"] == "four_eyes"
    assert "the author of a version cannot activate it" in over_the_api.json()["detail"]
    in_the_ui = _activate_in_ui(as_user("admin"), governed_setup, number).content.decode()
    assert f"the author of a version cannot activate it (you wrote v{number})" in in_the_ui
    assert _status(governed_setup, number) == "pending"
    assert _status(governed_setup, 1) == "active"


def test_a_second_admin_activates_a_submitted_version_over_the_api(governed_setup, admin_key, people):
    number = admin_key.post(_versions_url(governed_setup), {"source": STRICTER}, format="json").json()["number"]
    admin_key.post(f"{_versions_url(governed_setup)}/{number}/submit", format="json")
    second = client_with(key_for(governed_setup.application, "platform:admin", owner=people["admin2"]))

    response = second.post(f"{_versions_url(governed_setup)}/{number}/activate", format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["activated_by"]) == ("active", people["admin2"].username)
    assert _status(governed_setup, 1) == "retired"
    event = LedgerEvent.objects.filter(event_type="policy_version.activated").order_by("-id").first()
    assert (event.actor_kind, event.actor_id) == ("user", str(people["admin2"].pk))
    assert event.body["via_key"] == ApiKey.objects.get(created_by=people["admin2"]).prefix


def test_a_second_admin_activates_a_submitted_version_in_the_ui(governed_setup, admin_key, as_user):
    number = admin_key.post(_versions_url(governed_setup), {"source": STRICTER}, format="json").json()["number"]
    admin_key.post(f"{_versions_url(governed_setup)}/{number}/submit", format="json")
    assert f"v{number} is active" in _activate_in_ui(as_user("admin2"), governed_setup, number).content.decode()
    assert _status(governed_setup, number) == "active"


def test_the_submitter_of_a_version_nobody_wrote_cannot_activate_it(governed_setup, people, as_user):
    # A calibration run writes drafts with no human author: submitting one does not make it yours to activate.
    draft = policy_version_create(policy=governed_setup.policy, source=STRICTER, author=None, comment="calibrated")
    policy_version_submit(version=draft, user=people["admin"])
    page = _activate_in_ui(as_user("admin"), governed_setup, draft.number).content.decode()
    assert f"the submitter of a version cannot activate it (you submitted v{draft.number})" in page
    assert _status(governed_setup, draft.number) == "pending"
    activated = _activate_in_ui(as_user("admin2"), governed_setup, draft.number).content.decode()
    assert f"v{draft.number} is active" in activated


def test_four_eyes_cannot_be_switched_off(governed_setup, admin_key, as_user):
    policy = next(p for p in admin_key.get("/api/v1/admin/policies").json() if p["name"] == governed_setup.policy.name)
    assert "four_eyes" not in policy  # no per-policy switch that one admin could turn off
    page = as_user("admin").get(reverse("policy", kwargs={"name": governed_setup.policy.name})).content.decode()
    assert "activated once submitted, by an admin who neither wrote nor submitted it" in page
