from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.services.synth import catalog_synth


class Command(BaseCommand):
    help = "Create N synthetic but realistic catalogue entries (scale tests, benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args: Any, **options: Any) -> None:
        made = catalog_synth(count=options["count"], seed=options["seed"], echo=self.stdout.write)
        self.stdout.write(self.style.SUCCESS(f"created {made} synthetic models"))
