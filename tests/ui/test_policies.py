"""Policies in the UI: the editor with errors at their line, versions with parents, diffs, thresholds
as a form, submission and four-eyes activation."""

from __future__ import annotations

import pytest
from django.urls import reverse

from routing.decide.policy.document import load_policy
from routing.models import PolicyVersion
from tests.pipeline.setup import POLICY
from tests.ui.builders import active_policy


@pytest.fixture
def version(people):
    return active_policy(author=people["admin"])


def url(name, version, **extra):
    return reverse(name, kwargs={"name": version.policy.name, **extra})


def test_the_list_and_history_show_versions_and_who_did_what(as_user, version):
    listing = as_user("auditor").get(reverse("policies")).content.decode()
    assert version.policy.name in listing
    history = as_user("auditor").get(url("policy", version)).content.decode()
    assert "v1" in history and "first" in history and version.sha256[:12] in history


def test_a_version_page_numbers_its_lines(as_user, version):
    page = as_user("reviewer").get(url("policy-version", version, number=1)).content.decode()
    assert '<li id="L3"><code>  - id: cheap-first</code></li>' in page
    assert "Change thresholds" not in page  # a reviewer reads, an admin edits


def test_the_editor_starts_from_the_active_version(as_user, version):
    page = as_user("admin").get(url("policy-version-new", version)).content.decode()
    assert "cheap-first" in page and 'name="parent" value="1"' in page


def test_saving_a_valid_document_creates_a_draft_whose_parent_is_the_version_it_came_from(as_user, version):
    source = POLICY.replace("{nano: 0.80, mini: 0.70}", "{nano: 0.85, mini: 0.70}")
    response = as_user("admin2").post(url("policy-version-new", version),
                                      {"source": source, "comment": "stricter nano", "parent": "1"})
    draft = PolicyVersion.objects.get(policy=version.policy, number=2)
    assert response.status_code == 302 and response["Location"] == url("policy-version", version, number=2)
    assert (draft.status, draft.parent, draft.comment) == ("draft", version, "stricter nano")


def test_validation_errors_are_shown_at_their_line(as_user, version):
    source = POLICY.replace("{nano: 0.80, mini: 0.70}", "{nano: 1.5, mini: 0.70}")
    line = source.splitlines().index("    escalate_below: {nano: 1.5, mini: 0.70}") + 1
    response = as_user("admin").post(url("policy-version-new", version), {"source": source, "parent": "1"})
    assert response.status_code == 400
    page = response.content.decode()
    assert f'<a href="#id_source" class="line-ref" data-line="{line}">line {line}</a>' in page
    assert "rules[0].escalate_below.nano" in page
    assert f'<span class="ln err" data-line="{line}">{line}</span>' in page  # the gutter marks the line
    assert not PolicyVersion.objects.filter(policy=version.policy, number=2).exists()


def test_the_live_check_returns_the_errors_and_the_marked_gutter(as_user, version):
    broken = "rules:\n  - id: x\n    cascade: [mini, nano]\n"
    response = as_user("admin").post(url("policy-check", version), {"source": broken}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200 and "<html" not in page
    assert "the cascade must climb strictly" in page and 'hx-swap-oob="true"' in page
    valid = as_user("admin").post(url("policy-check", version), {"source": POLICY}).content.decode()
    assert "✓ Valid" in valid


def test_a_diff_between_two_versions(as_user, version):
    as_user("admin").post(url("policy-version-new", version), {
        "source": POLICY.replace("{mini: 0.75}", "{mini: 0.65}", 1), "parent": "1", "comment": "eu looser"})
    page = as_user("auditor").get(url("policy-diff", version), {"from": 1, "to": 2}).content.decode()
    assert "v1 → v2" in page
    assert '<div class="diff-line diff-del" role="row"><span class="diff-sign" aria-hidden="true">\u2212</span>' in page
    assert "escalate_below: {mini: 0.65}" in page


def test_the_thresholds_form_lists_every_rule_and_tier(as_user, version):
    page = as_user("admin").get(url("policy-thresholds", version, number=1)).content.decode()
    for name in ("t-0-nano", "t-0-mini", "t-1-mini", "t-2-mini"):
        assert f'name="{name}"' in page
    assert 'value="0.8"' in page


def thresholds_post(version, **changes):
    fields = {"t-0-nano": "0.8", "t-0-mini": "0.7", "t-1-mini": "0.75", "t-2-mini": "0.75", "comment": ""}
    return {**fields, **changes}


def test_lowering_a_threshold_writes_a_new_draft_version(as_user, version):
    response = as_user("admin").post(url("policy-thresholds", version, number=1),
                                     thresholds_post(version, **{"t-0-nano": "0.6"}))
    draft = PolicyVersion.objects.get(policy=version.policy, number=2)
    assert response.status_code == 302
    assert draft.parent == version and draft.status == "draft"
    assert load_policy(draft.source).rules[0].escalate_below == {"nano": 0.6, "mini": 0.7}
    assert draft.comment == "thresholds: cheap-first.nano=0.6"
    assert load_policy(draft.source).rules[1:] == load_policy(version.source).rules[1:]


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", ""])
def test_a_threshold_outside_zero_to_one_is_refused(as_user, version, value):
    response = as_user("admin").post(url("policy-thresholds", version, number=1),
                                     thresholds_post(version, **{"t-0-nano": value}))
    assert response.status_code == 400
    assert not PolicyVersion.objects.filter(policy=version.policy, number=2).exists()


def test_saving_unchanged_thresholds_says_nothing_changed(as_user, version):
    response = as_user("admin").post(url("policy-thresholds", version, number=1), thresholds_post(version))
    assert response.status_code == 400 and "No threshold changed." in response.content.decode()


def test_submit_then_four_eyes_activation(as_user, version):
    as_user("admin").post(url("policy-thresholds", version, number=1), thresholds_post(version, **{"t-0-nano": "0.6"}))
    author = as_user("admin")
    submitted = author.post(url("policy-version-submit", version, number=2), follow=True)
    assert "v2 is submitted" in submitted.content.decode()
    refused = author.post(url("policy-version-activate", version, number=2), follow=True)
    assert "four-eyes: the author of a version cannot activate it (you wrote v2)" in refused.content.decode()
    assert PolicyVersion.objects.get(policy=version.policy, number=2).status == "pending"
    activated = as_user("admin2").post(url("policy-version-activate", version, number=2), follow=True)
    assert "v2 is active" in activated.content.decode()
    assert PolicyVersion.objects.get(policy=version.policy, number=2).status == "active"
    assert PolicyVersion.objects.get(policy=version.policy, number=1).status == "retired"


def test_submitting_twice_is_refused_with_the_reason(as_user, version):
    response = as_user("admin").post(url("policy-version-submit", version, number=1), follow=True)
    assert "only a draft can be submitted; this version is active" in response.content.decode()


def test_unknown_policies_and_versions_are_404(as_user, version):
    assert as_user("admin").get(url("policy-version", version, number=99)).status_code == 404
    assert as_user("admin").get(reverse("policy", kwargs={"name": "nope"})).status_code == 404


def test_rewritten_thresholds_keep_the_documents_shape(people):
    """Only the changed value's line differs from the source the version came from."""
    import difflib

    from routing.decide.thresholds import thresholds_rewritten

    version = active_policy()
    note = f"# Thresholds changed from {version.policy.name} v{version.number} in the web UI."
    source = thresholds_rewritten(version.source, {(0, "nano"): 0.65}, note=note)
    changed = [line for line in difflib.ndiff(version.source.strip().splitlines(), source.splitlines())
               if line.startswith(("+", "-"))]
    assert changed == [
        "+ # Thresholds changed from " + f"{version.policy.name} v1 in the web UI.",
        "-     escalate_below: {nano: 0.80, mini: 0.70}",
        "+     escalate_below: {nano: 0.65, mini: 0.7}",
    ]


def test_the_diff_page_lists_what_changed_by_path(as_user, version):
    as_user("admin").post(url("policy-thresholds", version, number=1), thresholds_post(version, **{"t-0-nano": "0.6"}))
    page = as_user("auditor").get(url("policy-diff", version), {"from": 1, "to": 2}).content.decode()
    row = page.split('<td class="mono">rules[cheap-first].escalate_below.nano</td>')[1].split("</tr>")[0]
    assert "<td>changed</td>" in row and ">0.8<" in row and ">0.6<" in row
    assert page.count('<td class="mono">rules[') == 1  # nothing else changed in meaning


def test_document_changes_match_rules_by_id():
    from routing.ui.changes import document_changes

    before = {"rules": [{"id": "a", "cascade": ["nano", "mini"]}, {"id": "b"}], "blocked_tools": ["x"]}
    after = {"rules": [{"id": "b"}, {"id": "a", "cascade": ["mini"]}, {"id": "c"}], "blocked_tools": ["x"]}
    found = [(c.path, c.kind) for c in document_changes(before, after)]
    assert found == [("rules (order)", "changed"), ("rules[a].cascade", "changed"), ("rules[c]", "added")]
