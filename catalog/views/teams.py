"""Team page (members and roles; maintainers manage them) and the profile
page (a user's own API tokens, shown once at creation)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import AuditEvent, Membership, Team
from catalog.roles import Role, has_role
from catalog.selectors.visibility import models_visible
from catalog.services.teams import team_member_remove, team_member_set
from catalog.services.tokens import api_token_create, api_token_revoke, api_tokens_of
from catalog.views.registration import _messages_of


@login_required
@require_GET
def team_detail(request: HttpRequest, slug: str) -> HttpResponse:
    team = Team.objects.filter(slug=slug).first()
    if team is None or not has_role(request.user, team, Role.VIEWER):
        raise Http404("No team with that slug that you belong to.")
    return render(
        request,
        "catalog/team_detail.html",
        {
            "team": team,
            "memberships": Membership.objects.filter(team=team).select_related("user").order_by("user__username"),
            "can_manage": has_role(request.user, team, Role.MAINTAINER),
            "roles": Role.choices,
            "models": models_visible(user=request.user).filter(team=team).order_by("name")[:200],
            "events": AuditEvent.objects.filter(team=team).order_by("-created_at")[:30],
        },
    )


@login_required
@require_POST
def team_member_view(request: HttpRequest, slug: str) -> HttpResponse:
    team = Team.objects.filter(slug=slug).first()
    if team is None or not has_role(request.user, team, Role.VIEWER):
        raise Http404("No team with that slug that you belong to.")
    username = request.POST.get("username", "").strip()
    try:
        if request.POST.get("action") == "remove":
            team_member_remove(actor=request.user, team=team, username=username)
            messages.success(request, f"Removed {username}.")
        else:
            team_member_set(actor=request.user, team=team, username=username, role=request.POST.get("role", ""))
            messages.success(request, f"{username} is now {request.POST.get('role')}.")
    except (ValidationError, PermissionDenied) as exc:
        for m in _messages_of(exc):
            messages.error(request, m)
    if not has_role(request.user, team, Role.VIEWER):
        return redirect("catalog:profile")
    return redirect(team.get_absolute_url())


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    new_key = None
    errors: list[str] = []
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            try:
                api_token_revoke(user=request.user, token_id=int(request.POST.get("token", "0") or 0))
                messages.success(request, "Token revoked.")
            except (PermissionDenied, ValueError):
                messages.error(request, "No such token of yours.")
            return redirect("catalog:profile")
        try:
            # Rendered in this response only (never redirected, never stored).
            new_key = api_token_create(user=request.user, name=request.POST.get("name", ""))
        except ValidationError as exc:
            errors = _messages_of(exc)
    response = render(
        request,
        "catalog/profile.html",
        {
            "tokens": api_tokens_of(user=request.user),
            "new_key": new_key,
            "errors": errors,
            "memberships": Membership.objects.filter(user_id=int(request.user.pk or 0))
            .select_related("team")
            .order_by("team__name"),
        },
    )
    if new_key:
        response["Cache-Control"] = "no-store"
    return response
