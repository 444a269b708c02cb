from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.utils.text import slugify
from rest_framework.authtoken.models import Token

from catalog.models import Team


def team_get_or_create(*, name: str) -> Team:
    team, _ = Team.objects.get_or_create(slug=slugify(name), defaults={"name": name})
    return team


def user_get_or_create(*, username: str) -> Any:
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    return user


def api_token_create(*, username: str, team_name: str | None = None) -> str:
    """Create the user if needed, add it to the team, and return its API token."""
    user = user_get_or_create(username=username)
    if team_name:
        team_get_or_create(name=team_name).members.add(user)
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)
