from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_cache_tables(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    # The failure counters live in a database cache table (shared by every web
    # process); ``migrate`` creates it, so no separate ``createcachetable`` step.
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class SecurityConfig(AppConfig):
    name = "modellibrary.security"
    label = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from modellibrary.security import checks  # noqa: F401  (registers the deploy checks)

        post_migrate.connect(_create_cache_tables, sender=self, dispatch_uid="security-cache-tables")
