from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from catalog.models import RegisteredModel, Visibility


def visibility_q(user: Any, prefix: str = "") -> Q:
    """What ``user`` may see: internal models, plus its own teams' private ones.

    Anonymous users see internal models only; superusers (curators) see all.
    """
    internal = Q(**{f"{prefix}visibility": Visibility.INTERNAL})
    if user is None or not user.is_authenticated:
        return internal
    if user.is_superuser:
        return Q()
    team_ids = list(user.teams.values_list("id", flat=True))
    if not team_ids:
        return internal
    return internal | Q(**{f"{prefix}team_id__in": team_ids})


def models_visible(*, user: Any) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(visibility_q(user))


def model_get_visible(*, user: Any, slug: str) -> RegisteredModel | None:
    return (
        models_visible(user=user)
        .select_related("team", "modality", "result_kind", "domain", "latest_version")
        .filter(slug=slug)
        .first()
    )


def user_can_edit(*, user: Any, model: RegisteredModel) -> bool:
    """Members (and maintainers) of the model's team; viewers only look."""
    from catalog.roles import Role, has_role

    return has_role(user, model.team_id, Role.MEMBER)
