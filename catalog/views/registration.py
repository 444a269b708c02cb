"""Web pages for registration: register a model (upload a folder, see what was
read, confirm), new versions, promotion, lifecycle and the card.

Thin: permission checks happen in the services (``role_require``); these
views turn their errors into messages.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.intake.inspect import IntakeRefused, Proposal, intake_inspect
from catalog.models import Domain, Lifecycle, Modality, ModelVersion, RegisteredModel, ResultKind, Team, Visibility
from catalog.roles import Role, has_role
from catalog.selectors.visibility import model_get_visible
from catalog.services import registration as reg

SESSION_KEY = "registration_uploads"
MAX_PENDING = 5


def _messages_of(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return [f"{k}: {m}" if k != "__all__" else m for k, v in exc.message_dict.items() for m in v]
        return list(exc.messages)
    return [str(exc)]


def _teams_for(user: Any) -> list[Team]:
    teams = Team.objects.all() if user.is_superuser else Team.objects.filter(memberships__user=user)
    return [t for t in teams.order_by("name") if has_role(user, t, Role.MEMBER)]


def _trees() -> dict[str, list[Any]]:
    return {
        "modalities": list(Modality.objects.order_by("path")),
        "results": list(ResultKind.objects.order_by("path")),
        "domains": list(Domain.objects.order_by("path")),
    }


def _target_model(request: HttpRequest, slug: str | None) -> RegisteredModel | None:
    if not slug:
        return None
    model = model_get_visible(user=request.user, slug=slug)
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    return model


@login_required
@require_GET
def register_page(request: HttpRequest) -> HttpResponse:
    target = _target_model(request, request.GET.get("model"))
    return render(
        request,
        "catalog/register.html",
        {
            "teams": _teams_for(request.user),
            "target": target,
            "visibilities": Visibility.choices,
            "max_bytes": settings.MODEL_MAX_BYTES,
            "max_files": settings.MODEL_MAX_FILES,
        },
    )


def _confirm_context(
    request: HttpRequest, token: str, proposal: Proposal, target: RegisteredModel | None
) -> dict[str, Any]:
    return {
        "token": token,
        "proposal": proposal,
        "target": target,
        "teams": _teams_for(request.user),
        "visibilities": Visibility.choices,
        **_trees(),
    }


def _fragment(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """The fragment for the page's script; the whole page for a plain form post."""
    if request.headers.get("X-Requested-With") == "XMLHttpRequest":
        return render(request, template, context, status=status)
    page = {
        "teams": _teams_for(request.user),
        "visibilities": Visibility.choices,
        "max_bytes": settings.MODEL_MAX_BYTES,
        "max_files": settings.MODEL_MAX_FILES,
        **context,
    }
    if template.endswith("register_confirm.html"):
        return render(request, "catalog/register.html", {**page, "confirm_inline": True}, status=status)
    page["problems_inline"] = context.get("problems", [])
    return render(request, "catalog/register.html", page, status=status)


@csrf_exempt  # the CSRF check runs inside, once the upload handler is set (it reads the body)
@login_required
@require_POST
def register_upload(request: HttpRequest) -> HttpResponse:
    """Store the chosen files (hashed as they arrive) and show what was read."""
    from catalog.intake.upload import use_hashing_upload_handler

    use_hashing_upload_handler(request)
    return _register_upload(request)


@csrf_protect
def _register_upload(request: HttpRequest) -> HttpResponse:
    # The target comes from the query string: the size check below must run
    # before anything reads the body.
    target = _target_model(request, request.GET.get("model"))
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.MODEL_MAX_BYTES:
        return _fragment(
            request,
            "catalog/register_refused.html",
            {"problems": [f"The upload is {length} bytes; the limit is {settings.MODEL_MAX_BYTES}."]},
            status=413,
        )
    from catalog.intake.upload import upload_store

    uploads = request.FILES.getlist("files")
    if not uploads:
        return _fragment(
            request, "catalog/register_refused.html", {"problems": ["Choose a folder or files."]}, status=400
        )
    files: dict[str, str] = {}
    try:
        for upload in uploads:
            files[str(upload.name)] = upload_store(upload)
    finally:
        for upload in uploads:  # temporary files not moved into the store
            upload.close()
    if len(files) != len(uploads):
        reg.blobs_discard_unreferenced(set(files.values()))
        return _fragment(
            request, "catalog/register_refused.html", {"problems": ["Two files have the same name."]}, status=400
        )
    try:
        proposal = intake_inspect(files)
    except IntakeRefused as exc:
        reg.blobs_discard_unreferenced(set(files.values()))
        return _fragment(request, "catalog/register_refused.html", {"problems": exc.messages}, status=400)
    token = secrets.token_urlsafe(16)
    pending = dict(request.session.get(SESSION_KEY, {}))
    while len(pending) >= MAX_PENDING:
        pending.pop(next(iter(pending)))
    pending[token] = files
    request.session[SESSION_KEY] = pending
    return _fragment(request, "catalog/register_confirm.html", _confirm_context(request, token, proposal, target))


@login_required
@require_POST
def register_confirm(request: HttpRequest) -> HttpResponse:
    """Create the model (unless adding a version) and the version from the upload."""
    token = request.POST.get("token", "")
    files = request.session.get(SESSION_KEY, {}).get(token)
    if not files:
        messages.error(request, "That upload is no longer pending; choose the files again.")
        return redirect("catalog:register")
    target = _target_model(request, request.POST.get("model"))
    try:
        if target is None:
            team = Team.objects.filter(slug=request.POST.get("team", "")).first()
            if team is None:
                raise ValidationError({"team": "Choose one of your teams."})
            target = reg.model_register(
                user=request.user,
                team=team,
                name=request.POST.get("name", ""),
                visibility=request.POST.get("visibility", Visibility.INTERNAL),
                summary=request.POST.get("summary", ""),
                modality=request.POST.get("modality") or None,
                result=request.POST.get("result") or None,
                domain=request.POST.get("domain") or None,
            )
        version = reg.version_register(
            user=request.user, registered_model=target, files=files, message=request.POST.get("message", "")
        )
    except (ValidationError, PermissionDenied) as exc:
        proposal = intake_inspect(files)
        context = _confirm_context(request, token, proposal, _target_model(request, request.POST.get("model")))
        context["errors"] = _messages_of(exc)
        context["posted"] = request.POST
        return render(request, "catalog/register.html", {**context, "confirm_inline": True}, status=400)
    pending = dict(request.session.get(SESSION_KEY, {}))
    pending.pop(token, None)
    request.session[SESSION_KEY] = pending
    messages.success(request, f"Registered {target.name} v{version.version}.")
    return redirect(f"{target.get_absolute_url()}?version={version.version}")


# --- model page actions (maintainers) -------------------------------------------------------------


def _model_or_404(request: HttpRequest, slug: str) -> RegisteredModel:
    model = model_get_visible(user=request.user, slug=slug)
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    return model


def _version_or_none(model: RegisteredModel, raw: str | None) -> ModelVersion | None:
    if not raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        raise Http404("No such version.") from None
    version = model.versions.filter(version=number).first()
    if version is None:
        raise Http404("No such version.")
    return version


@login_required
@require_POST
def model_alias_view(request: HttpRequest, slug: str) -> HttpResponse:
    model = _model_or_404(request, slug)
    alias = request.POST.get("alias", "")
    version = _version_or_none(model, request.POST.get("version"))
    try:
        if request.POST.get("action") == "remove":
            reg.alias_remove(user=request.user, registered_model=model, name=alias)
            messages.success(request, f"Removed the {alias} alias.")
        elif version is not None:
            reg.alias_set_checked(user=request.user, registered_model=model, name=alias, version=version)
            messages.success(request, f"v{version.version} is now {alias}.")
    except (ValidationError, PermissionDenied) as exc:
        for m in _messages_of(exc):
            messages.error(request, m)
    suffix = f"?version={version.version}" if version else ""
    return redirect(f"{model.get_absolute_url()}{suffix}")


@login_required
@require_POST
def model_lifecycle_view(request: HttpRequest, slug: str) -> HttpResponse:
    model = _model_or_404(request, slug)
    version = _version_or_none(model, request.POST.get("version"))
    state = request.POST.get("state", "")
    try:
        reg.lifecycle_set(
            user=request.user,
            registered_model=model,
            state=state,
            version=version,
            reason=request.POST.get("reason", ""),
        )
        what = f"v{version.version}" if version else model.name
        messages.success(request, f"{what} is now {state}.")
    except (ValidationError, PermissionDenied) as exc:
        for m in _messages_of(exc):
            messages.error(request, m)
    suffix = f"?version={version.version}" if version else ""
    return redirect(f"{model.get_absolute_url()}{suffix}")


def _card_source(model: RegisteredModel) -> str:
    """The card as editable text: front matter rebuilt from the fields, then the body."""
    import yaml

    meta: dict[str, Any] = {}
    if model.license:
        meta["license"] = model.license
    if model.tags:
        meta["tags"] = list(model.tags)
    meta.update({k: v for k, v in model.card_metadata.items() if not k.startswith("_")})
    if not meta:
        return model.card
    return f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n{model.card}"


@login_required
@require_http_methods(["GET", "POST"])
def model_card_edit(request: HttpRequest, slug: str) -> HttpResponse:
    model = _model_or_404(request, slug)
    if not has_role(request.user, model.team, Role.MAINTAINER):
        raise PermissionDenied("Only the team's maintainers edit the card.")
    text = _card_source(model)
    errors: list[str] = []
    if request.method == "POST":
        text = request.POST.get("card", "")
        try:
            reg.model_card_update(user=request.user, registered_model=model, card=text)
        except (ValidationError, PermissionDenied) as exc:
            errors = _messages_of(exc)
        else:
            messages.success(request, "Card saved.")
            return redirect(model.get_absolute_url())
    return render(request, "catalog/card_edit.html", {"model": model, "text": text, "errors": errors})


LIFECYCLE_ACTIONS = [(s, label) for s, label in Lifecycle.choices]


@login_required
@require_POST
def model_delete_view(request: HttpRequest, slug: str) -> HttpResponse:
    model = _model_or_404(request, slug)
    name, team = model.name, model.team
    try:
        reg.model_delete(user=request.user, registered_model=model)
    except (ValidationError, PermissionDenied) as exc:
        for m in _messages_of(exc):
            messages.error(request, m)
        return redirect(model.get_absolute_url())
    messages.success(request, f"Deleted {name}.")
    return redirect(team.get_absolute_url())
