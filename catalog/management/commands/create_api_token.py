from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.services.teams import api_token_create


class Command(BaseCommand):
    help = "Create the user if needed (and add it to --team), then print its API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", help="team name; created if it does not exist")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(api_token_create(username=options["username"], team_name=options["team"]))
