"""A person's own tokens for the review API (routing.services.personal_tokens): minted — shown once —,
listed and revoked by that person only. Another person's token is not found here (404)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.ledger import Actor
from review.forms import PersonalTokenForm
from routing.models import PersonalToken
from routing.services.personal_tokens import TokenRefused, personal_token_create, personal_token_revoke
from web.access import EVERYONE, role_required


def _page(request: HttpRequest, form: PersonalTokenForm | None = None, **extra) -> dict:
    return {
        "tokens": list(PersonalToken.objects.filter(user=request.user)),
        "form": form or PersonalTokenForm(),
        "now": timezone.now(),
        **extra,
    }


@require_GET
@role_required(*EVERYONE)
def token_list(request: HttpRequest) -> HttpResponse:
    return render(request, "review/tokens.html", _page(request))


@require_POST
@role_required(*EVERYONE)
def token_new(request: HttpRequest) -> HttpResponse:
    """The plaintext is in this response only: rendered, not redirected, and never cached."""
    form = PersonalTokenForm(request.POST)
    if not form.is_valid():
        return render(request, "review/tokens.html", _page(request, form), status=400)
    try:
        token, plaintext = personal_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=timezone.now() + timedelta(days=form.cleaned_data["days"]),
        )
    except TokenRefused as refused:
        form.add_error(None, str(refused))
        return render(request, "review/tokens.html", _page(request, form), status=400)
    response = render(request, "review/tokens.html", _page(request, new_token=token, plaintext=plaintext))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(*EVERYONE)
def token_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    token = PersonalToken.objects.filter(user=request.user, prefix=prefix).first()
    if token is None:
        raise Http404("no such token of yours")
    personal_token_revoke(token=token, actor=Actor.user(request.user.pk))
    messages.success(request, f"token arbp_{prefix}_… is revoked; requests with it are refused from now on.")
    return redirect("review-tokens")
