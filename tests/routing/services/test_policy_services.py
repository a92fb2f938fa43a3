"""Policy versions: validated before they are saved, immutable in the database, activated by four eyes."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import DatabaseError, transaction

from audit.ledger import Actor
from audit.selectors import events_list
from routing.decide.policy.errors import InvalidPolicy
from routing.models import PolicyVersion
from routing.services.policies import (
    FourEyesRefused,
    PolicyActionError,
    policy_create,
    policy_version_activate,
    policy_version_bootstrap,
    policy_version_create,
    policy_version_submit,
)
from tests.support.factories import DeploymentFactory, UserFactory, unique

pytestmark = pytest.mark.django_db
SOURCE = (Path(__file__).resolve().parents[3] / "routing" / "demo" / "default-policy.yaml").read_text()


@pytest.fixture
def catalog():
    for tier in ("nano", "mini", "flagship"):
        DeploymentFactory(tier=tier)
        DeploymentFactory(tier=tier, region="eu")


@pytest.fixture
def policy():
    return policy_create(name=unique("policy"), actor=Actor.system("test"))


def test_it_refuses_an_invalid_document_with_the_line_and_field(catalog, policy):
    source = SOURCE.replace(
        "escalate_below: {nano: 0.80, mini: 0.70}", "escalate_below: {nano: 1.7, mini: 0.70}"
    )
    with pytest.raises(InvalidPolicy) as raised:
        policy_version_create(policy=policy, source=source, author=UserFactory())
    error = raised.value.errors[0]
    assert error.path == "rules[0].escalate_below.nano"
    assert error.line == SOURCE.splitlines().index("    escalate_below: {nano: 0.80, mini: 0.70}") + 1
    assert not PolicyVersion.objects.filter(policy=policy).exists()


def test_the_author_cannot_activate_their_own_version(catalog, policy):
    author, other = UserFactory(), UserFactory()
    version = policy_version_create(policy=policy, source=SOURCE, author=author, comment="first")
    policy_version_submit(version=version, user=author)
    with pytest.raises(PolicyActionError, match="four-eyes"):
        policy_version_activate(version=version, user=author)
    active = policy_version_activate(version=version, user=other)
    assert active.status == "active" and active.activated_by == other
    types = list(events_list(policy_version=version.pk).values_list("event_type", flat=True))
    assert types == ["policy_version.created", "policy_version.submitted", "policy_version.activated"]


def _submitted(policy, source: str, author, **fields) -> PolicyVersion:
    return policy_version_submit(
        version=policy_version_create(policy=policy, source=source, author=author, **fields), user=author
    )


def test_a_draft_never_submitted_cannot_be_activated(catalog, policy):
    version = policy_version_create(policy=policy, source=SOURCE, author=UserFactory())
    with pytest.raises(PolicyActionError, match="never submitted: submit it first"):
        policy_version_activate(version=version, user=UserFactory())
    version.refresh_from_db()
    assert version.status == "draft"


def test_the_submitter_cannot_activate_what_they_submitted(catalog, policy):
    submitter = UserFactory()
    version = policy_version_create(policy=policy, source=SOURCE, author=None, comment="calibrated")
    policy_version_submit(version=version, user=submitter)
    with pytest.raises(FourEyesRefused, match="the submitter of a version cannot activate it"):
        policy_version_activate(version=version, user=submitter)
    with pytest.raises(FourEyesRefused, match="a person's act"):
        policy_version_activate(version=version, user=None)
    assert policy_version_activate(version=version, user=UserFactory()).status == "active"


def test_a_submission_by_no_active_person_counts_for_nothing(catalog, policy):
    # Before keys had owners, a key submitted as the inactive principal `app:<slug>`.
    principal = UserFactory(username=unique("app:"), is_active=False)
    version = policy_version_create(policy=policy, source=SOURCE, author=principal)
    policy_version_submit(version=version, user=principal)
    admin, other = UserFactory(), UserFactory()
    with pytest.raises(PolicyActionError, match="not submitted by an active person"):
        policy_version_activate(version=version, user=admin)
    policy_version_submit(version=version, user=admin)  # a person takes it on: now four-eyes applies to them
    with pytest.raises(FourEyesRefused, match="submitter"):
        policy_version_activate(version=version, user=admin)
    assert policy_version_activate(version=version, user=other).activated_by == other


def test_bootstrap_activates_only_a_policy_that_was_never_active(catalog, policy):
    first = policy_version_bootstrap(
        version=policy_version_create(policy=policy, source=SOURCE, author=None), actor=Actor.system("seed")
    )
    assert first.status == "active" and first.activated_by is None
    second = policy_version_create(policy=policy, source=SOURCE + "\n# v2\n", author=None, parent=first)
    with pytest.raises(FourEyesRefused, match="has been active before"):
        policy_version_bootstrap(version=second, actor=Actor.system("seed"))
    second.refresh_from_db()
    assert second.status == "draft"


def test_activating_a_new_version_retires_the_old_one(catalog, policy):
    author, other = UserFactory(), UserFactory()
    first = policy_version_activate(version=_submitted(policy, SOURCE, author), user=other)
    second = _submitted(policy, SOURCE + "\n# v2\n", author, parent=first)
    policy_version_activate(version=second, user=other)
    first.refresh_from_db()
    assert (first.status, second.number) == ("retired", 2)


def test_the_database_refuses_to_change_a_versions_content(catalog, policy):
    version = policy_version_create(policy=policy, source=SOURCE, author=UserFactory())
    with pytest.raises(DatabaseError, match="Cannot update"), transaction.atomic():
        PolicyVersion.objects.filter(pk=version.pk).update(source="rules: []")
    with pytest.raises(DatabaseError, match="Cannot delete"), transaction.atomic():
        PolicyVersion.objects.filter(pk=version.pk).delete()
