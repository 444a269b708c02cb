"""The model page's registration panel: lifecycle, card, licence and tags,
maintainer controls (promote, demote, deprecate, edit the card) and the audit log."""

from __future__ import annotations

from typing import Any

from django import template

from catalog.intake.card import card_render
from catalog.models import AuditEvent, Lifecycle, RegisteredModel
from catalog.roles import Role, has_role

register = template.Library()


@register.inclusion_tag("catalog/_model_registration.html", takes_context=True)
def registration_panel(context: template.Context, model: RegisteredModel, current: Any = None) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "model": model,
        "current": current,
        "card_html": card_render(model.card) if model.card else "",
        "can_maintain": bool(user is not None and has_role(user, model.team, Role.MAINTAINER)),
        "can_register": bool(user is not None and has_role(user, model.team, Role.MEMBER)),
        "events": list(AuditEvent.objects.filter(registered_model=model).order_by("-created_at", "-id")[:20]),
        "lifecycles": Lifecycle.choices,
        "aliases": {a.name: a.version.version for a in model.aliases.all()},
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }


@register.inclusion_tag("catalog/_lifecycle_badge.html")
def lifecycle_badge(obj: Any) -> dict[str, Any]:
    return {"state": getattr(obj, "lifecycle", "active"), "reason": getattr(obj, "lifecycle_reason", "")}
