"""Policies: list, version history, a version, the YAML editor, a diff, thresholds, submit, activate."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from routing import selectors
from routing.decide.policy.errors import InvalidPolicy, PolicyError
from routing.decide.thresholds import ThresholdRewriteError, thresholds_of, thresholds_rewritten
from routing.models import Policy, PolicyVersion
from routing.services.policies import (
    PolicyActionError,
    policy_document_check,
    policy_version_activate,
    policy_version_create,
    policy_version_submit,
)
from routing.ui.changes import document_changes
from routing.ui.forms import PolicySourceForm, ThresholdsForm
from web.access import POLICY_ADMINS, POLICY_READERS, can, role_required
from web.diffs import unified


def _policy(name: str) -> Policy:
    policy = selectors.policy_get(name=name)
    if policy is None:
        raise Http404("no such policy")
    return policy


def version_or_404(name: str, number: int) -> PolicyVersion:
    version = selectors.policy_version_get(policy=_policy(name), number=number)
    if version is None:
        raise Http404("no such version")
    return version


@require_GET
@role_required(*POLICY_READERS)
def policy_list(request: HttpRequest) -> HttpResponse:
    policies = list(selectors.policy_list())
    for policy in policies:
        policy.pending_count = sum(1 for version in policy.versions.all() if version.status == "pending")
    return render(request, "policies/list.html", {"policies": policies})


@require_GET
@role_required(*POLICY_READERS)
def policy_detail(request: HttpRequest, name: str) -> HttpResponse:
    policy = _policy(name)
    versions = list(selectors.policy_version_list(policy=policy))
    return render(request, "policies/policy.html", {"policy": policy, "versions": versions,
                                                    "can_edit": can(request.user, *POLICY_ADMINS)})


@require_GET
@role_required(*POLICY_READERS)
def policy_version(request: HttpRequest, name: str, number: int) -> HttpResponse:
    version = version_or_404(name, number)
    return render(request, "policies/version.html", version_context(request, version))


def version_context(request: HttpRequest, version: PolicyVersion, *, replay_form: object = None) -> dict:
    """The version page: the document and what may be done with it. The evaluations about it are
    evaluation's part of the page ({% version_evaluations %}), which shows `replay_form` when given."""
    can_edit = can(request.user, *POLICY_ADMINS)
    return {
        "version": version,
        "policy": version.policy,
        "lines": version.source.splitlines(),
        "can_edit": can_edit,
        "is_author": version.author_id == request.user.pk,
        "is_submitter": version.submitted_by_id == request.user.pk,
        "replay_form": replay_form,
    }


def _annotated(source: str, errors: list[PolicyError]) -> dict:
    """The errors grouped by source line, each with the line's text, for showing them where they are."""
    lines = source.splitlines()
    at_line: dict[int, list[PolicyError]] = {}
    general = []
    for error in errors:
        if error.line and 1 <= error.line <= len(lines):
            at_line.setdefault(error.line, []).append(error)
        else:
            general.append(error)
    return {
        "errors": errors,
        "general_errors": general,
        "line_errors": [(line, lines[line - 1], at_line[line]) for line in sorted(at_line)],
        "error_lines": set(at_line),
        "line_count": max(len(lines), 1),
    }


@require_http_methods(["GET", "POST"])
@role_required(*POLICY_ADMINS)
def policy_version_new(request: HttpRequest, name: str) -> HttpResponse:
    """The YAML editor. Saving creates a new draft version whose parent is the version it started from."""
    policy = _policy(name)
    versions = selectors.policy_version_list(policy=policy)
    parent_number = request.POST.get("parent") or request.GET.get("from")
    parent = versions.filter(number=parent_number).first() if str(parent_number or "").isdigit() else None
    parent = parent or versions.filter(status="active").first() or versions.first()
    form = PolicySourceForm(
        request.POST if request.method == "POST" else None, initial={"source": parent.source if parent else ""}
    )
    context = {"policy": policy, "parent": parent, "form": form, **_annotated("", [])}
    if request.method == "POST" and form.is_valid():
        source = form.cleaned_data["source"]
        try:
            version = policy_version_create(
                policy=policy, source=source, author=request.user, comment=form.cleaned_data["comment"], parent=parent
            )
        except InvalidPolicy as invalid:
            context.update(_annotated(source, list(invalid.errors)))
            return render(request, "policies/edit.html", context, status=400)
        messages.success(
            request, f"draft v{version.number} saved. Submit it for activation; another admin activates it."
        )
        return redirect("policy-version", policy.name, version.number)
    source = form["source"].value() or ""
    context["line_count"] = max(len(source.splitlines()), 1)
    return render(request, "policies/edit.html", context, status=400 if form.errors else 200)


@require_POST
@role_required(*POLICY_ADMINS)
def policy_check(request: HttpRequest, name: str) -> HttpResponse:
    """Validate the editor's text without saving anything (the editor calls it as you type)."""
    _policy(name)
    source = request.POST.get("source", "")
    errors: list[PolicyError] = []
    document = None
    try:
        document = policy_document_check(source)
    except InvalidPolicy as invalid:
        errors = list(invalid.errors)
    context = {"document": document, "checked": True, **_annotated(source, errors)}
    return render(request, "policies/edit.html#check", context)


@require_GET
@role_required(*POLICY_READERS)
def policy_diff(request: HttpRequest, name: str) -> HttpResponse:
    policy = _policy(name)
    versions = list(selectors.policy_version_list(policy=policy))
    by_number = {str(version.number): version for version in versions}
    after = by_number.get(request.GET.get("to", "")) or (versions[0] if versions else None)
    default_before = next((v for v in versions if after and v.pk == after.parent_id), None)
    before = (
        by_number.get(request.GET.get("from", "")) or default_before or (versions[1] if len(versions) > 1 else after)
    )
    lines, changes = [], []
    if before and after:
        lines = unified(before.source, after.source, before_name=f"v{before.number}", after_name=f"v{after.number}")
        changes = document_changes(before.document, after.document)
    return render(request, "policies/diff.html", {"policy": policy, "versions": versions, "before": before,
                                                  "after": after, "lines": lines, "changes": changes})


@require_http_methods(["GET", "POST"])
@role_required(*POLICY_ADMINS)
def policy_thresholds(request: HttpRequest, name: str, number: int) -> HttpResponse:
    version = version_or_404(name, number)
    form = ThresholdsForm(request.POST if request.method == "POST" else None, thresholds=thresholds_of(version.source))
    if request.method == "POST" and form.is_valid():
        try:
            source = thresholds_rewritten(
                version.source,
                form.changes(),
                note=f"# Thresholds changed from {version.policy.name} v{version.number} in the web UI.",
            )
            draft = policy_version_create(
                policy=version.policy,
                source=source,
                author=request.user,
                comment=form.version_comment(),
                parent=version,
            )
        except (InvalidPolicy, ThresholdRewriteError) as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"draft v{draft.number} has the new thresholds. Submit it for "
                                      "activation; another admin activates it.")
            return redirect("policy-version", version.policy.name, draft.number)
    return render(request, "policies/thresholds.html", {"version": version, "policy": version.policy, "form": form},
                  status=400 if form.errors else 200)


@require_POST
@role_required(*POLICY_ADMINS)
def policy_version_submit_view(request: HttpRequest, name: str, number: int) -> HttpResponse:
    version = version_or_404(name, number)
    try:
        policy_version_submit(version=version, user=request.user)
    except PolicyActionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"v{number} is submitted; another admin can now activate it.")
    return redirect("policy-version", name, number)


@require_POST
@role_required(*POLICY_ADMINS)
def policy_version_activate_view(request: HttpRequest, name: str, number: int) -> HttpResponse:
    version = version_or_404(name, number)
    try:
        policy_version_activate(version=version, user=request.user)
    except PolicyActionError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"v{number} is active: new jobs run under it.")
    return redirect("policy-version", name, number)
