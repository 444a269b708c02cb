"""Teams, members and their roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.text import slugify

from catalog.models import AuditAction, Membership, Team
from catalog.roles import Role, role_require
from catalog.services.audit import audit_record


def team_get_or_create(*, name: str) -> Team:
    team, _ = Team.objects.get_or_create(slug=slugify(name), defaults={"name": name})
    return team


def user_get_or_create(*, username: str) -> Any:
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    return user


def membership_set(*, team: Team, user: Any, role: Role | str = Role.MEMBER) -> Membership:
    """Add ``user`` to ``team`` with ``role`` (or change its role); no permission check
    (for commands, seeds and the services below)."""
    membership, _ = Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role(role)})
    return membership


def _maintainers_left(team: Team, *, excluding_user_id: int) -> int:
    return Membership.objects.filter(team=team, role=Role.MAINTAINER).exclude(user_id=excluding_user_id).count()


@transaction.atomic
def team_member_set(*, actor: Any, team: Team, username: str, role: Role | str) -> Membership:
    """Add a member or change a member's role (maintainers only).

    A team keeps at least one maintainer once it has one: the last maintainer
    cannot step down to a lower role.
    """
    role_require(actor, team, Role.MAINTAINER, "manage members")
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError({"role": f"Unknown role {role!r}; use viewer, member or maintainer."}) from None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": f"No user named {username!r}."})
    existing = Membership.objects.select_for_update().filter(team=team, user=user).first()
    if (
        existing is not None
        and existing.role == Role.MAINTAINER
        and role != Role.MAINTAINER
        and not _maintainers_left(team, excluding_user_id=user.pk)
    ):
        raise ValidationError({"role": f"{username} is the last maintainer of {team.name}; name another first."})
    membership = membership_set(team=team, user=user, role=role)
    audit_record(
        actor=actor,
        action=AuditAction.MEMBER_ROLE_CHANGED if existing else AuditAction.MEMBER_ADDED,
        team=team,
        subject=f"{username} in {team.name}",
        detail={"role": role.value, "previous_role": existing.role if existing else None},
    )
    return membership


@transaction.atomic
def team_member_remove(*, actor: Any, team: Team, username: str) -> None:
    """Remove a member (maintainers only; any member may leave on their own)."""
    user = get_user_model().objects.filter(username=username).first()
    membership = Membership.objects.select_for_update().filter(team=team, user=user).first() if user else None
    if user is None or membership is None:
        raise ValidationError({"username": f"{username} is not a member of {team.name}."})
    if not (actor is not None and actor.pk == user.pk):
        role_require(actor, team, Role.MAINTAINER, "manage members")
    if membership.role == Role.MAINTAINER and not _maintainers_left(team, excluding_user_id=user.pk):
        raise PermissionDenied(f"{username} is the last maintainer of {team.name}; name another first.")
    membership.delete()
    audit_record(
        actor=actor,
        action=AuditAction.MEMBER_REMOVED,
        team=team,
        subject=f"{username} in {team.name}",
        detail={"role": membership.role},
    )
