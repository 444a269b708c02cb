"""Deploy checks of our own (``manage.py check --deploy``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, deploy=True)
def secret_key_from_environment(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if getattr(settings, "SECRET_KEY_GENERATED", False):
        return [
            Warning(
                "DJANGO_SECRET_KEY is not set: the key generated into var/secret_key is used.",
                hint="Set DJANGO_SECRET_KEY (the same value on every web and worker host).",
                id="security.W900",
            )
        ]
    return []
