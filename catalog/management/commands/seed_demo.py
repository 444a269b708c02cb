from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from catalog.services.demo import demo_seed


class Command(BaseCommand):
    help = "Load the taxonomy trees and register the demo catalogue (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        demo_seed(echo=self.stdout.write)
