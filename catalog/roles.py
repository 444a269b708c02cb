"""Team roles: who may do what in a team.

``viewer`` < ``member`` < ``maintainer``; each role includes the rights of the
ones before it. Superusers (curators) pass every check.

* viewer — sees the team's private models.
* member — registers models and versions, fine-tunes, compiles.
* maintainer — promotes and demotes versions, deprecates and archives,
  edits cards, manages members.

Services call ``role_require`` before any write; views and templates may call
``has_role`` to decide what to show, never as the only check.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from catalog.models import Membership, Team
from catalog.models import TeamRole as Role

__all__ = ["Role", "has_role", "role_require", "user_role"]

_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.MAINTAINER: 3}


def user_role(user: Any, team: Team | int) -> Role | None:
    """The user's role in ``team``, or None when not a member (superusers: maintainer)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return Role.MAINTAINER
    team_id = team if isinstance(team, int) else team.pk
    role = Membership.objects.filter(team_id=team_id, user_id=user.pk).values_list("role", flat=True).first()
    return Role(role) if role else None


def has_role(user: Any, team: Team | int, minimum: Role | str) -> bool:
    """Whether ``user`` holds ``minimum`` or a higher role in ``team``."""
    if user is not None and getattr(user, "is_superuser", False) and user.is_authenticated:
        return True
    role = user_role(user, team)
    return role is not None and _RANK[role] >= _RANK[Role(minimum)]


def role_require(user: Any, team: Team, minimum: Role | str, action: str) -> None:
    """Raise PermissionDenied with a sentence naming the role ``action`` needs."""
    if not has_role(user, team, minimum):
        needed = Role(minimum)
        raise PermissionDenied(f"To {action} you must be a {needed.label.lower()} of the team {team.name}.")


def role_rank(role: Role | str) -> int:
    return _RANK[Role(role)]
