from __future__ import annotations

from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "evaluations"
    verbose_name = "Evaluations on a team's data"
    default_auto_field = "django.db.models.BigAutoField"
