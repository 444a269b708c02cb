from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.roles import Role
from catalog.services.teams import membership_set, team_get_or_create, user_get_or_create
from catalog.services.tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Create the user if needed (and add it to --team with --role), then create a new API token "
        "and print its key (shown once: only its hash is stored)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", help="team name; created if it does not exist")
        parser.add_argument(
            "--role", default=Role.MEMBER, choices=[r.value for r in Role], help="role in --team (default: member)"
        )
        parser.add_argument("--name", default="create_api_token", help="a label for the token")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_get_or_create(username=options["username"])
        if options["team"]:
            membership_set(team=team_get_or_create(name=options["team"]), user=user, role=options["role"])
        self.stdout.write(api_token_create(user=user, name=options["name"]))
