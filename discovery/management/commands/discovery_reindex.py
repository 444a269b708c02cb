from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from discovery.services import embeddings_refresh, encoder_resolve


class Command(BaseCommand):
    help = "Encode every model whose search text (or encoder) changed; builds the int8 encoder if needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="re-encode every model")

    def handle(self, *args: Any, **options: Any) -> None:
        info = encoder_resolve(build=True)
        assert info is not None
        self.stdout.write(f"encoder: {info.source} ({info.key})")
        n = embeddings_refresh(build=True, force=options["force"])
        self.stdout.write(self.style.SUCCESS(f"encoded {n} models"))
