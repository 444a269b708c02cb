"""The audit log: one append-only row per consequential write."""

from __future__ import annotations

from typing import Any

from catalog.models import AuditEvent, ModelVersion, RegisteredModel, Team


def audit_record(
    *,
    actor: Any,
    action: str,
    subject: str,
    team: Team | None = None,
    registered_model: RegisteredModel | None = None,
    version: ModelVersion | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    if registered_model is None and version is not None:
        registered_model = version.registered_model
    if team is None and registered_model is not None:
        team = registered_model.team
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "",
        action=action,
        team=team,
        registered_model=registered_model,
        version=version,
        subject=subject[:300],
        detail=detail or {},
    )
