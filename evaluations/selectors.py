"""Reading evaluations, leaderboards, and the models that could be evaluated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from catalog.models import DatasetVersion, ModelVersion, VersionStatus
from catalog.selectors.jobs import teams_of
from catalog.selectors.visibility import models_visible, visibility_q
from catalog.services.predict import CLASSIFIER_FAMILIES
from evaluations.models import EntryStatus, Evaluation, EvaluationEntry


def evaluations_visible(*, user: Any) -> QuerySet[Evaluation]:
    """Evaluations of the user's teams."""
    return Evaluation.objects.filter(team__in=teams_of(user)).select_related("team", "dataset_version__dataset")


def can_evaluate(*, user: Any) -> bool:
    """Starting an evaluation needs the member role in some team (viewers only look)."""
    from catalog.roles import Role, has_role

    return any(has_role(user, team, Role.MEMBER) for team in teams_of(user))


def datasets_visible(*, user: Any) -> QuerySet[DatasetVersion]:
    """Dataset versions of the user's teams (datasets are never shown outside their team)."""
    return (
        DatasetVersion.objects.filter(dataset__team__in=teams_of(user))
        .select_related("dataset__team", "dataset__domain")
        .order_by("-created_at", "-id")
    )


def candidate_versions(*, user: Any) -> list[ModelVersion]:
    """The latest ready version of every visible text classifier."""
    models = (
        models_visible(user=user)
        .filter(latest_version__family__in=CLASSIFIER_FAMILIES, latest_version__status=VersionStatus.READY)
        .select_related("latest_version__registered_model")
        .order_by("name")
    )
    return [m.latest_version for m in models if m.latest_version is not None]


def versions_pick(*, user: Any, slugs: list[str]) -> tuple[list[ModelVersion], list[str]]:
    """Visible models' latest ready versions, by slug; the slugs not found (or hidden)."""
    found = {v.registered_model.slug: v for v in candidate_versions(user=user) if v.registered_model.slug in slugs}
    return [found[s] for s in slugs if s in found], [s for s in slugs if s not in found]


@dataclass
class Row:
    entry: EvaluationEntry
    rank: int
    bar_width: float  # of the chart's plot area, 0..1


def entries_visible(*, user: Any, evaluation: Evaluation) -> QuerySet[EvaluationEntry]:
    return evaluation.entries.filter(visibility_q(user, "version__registered_model__")).select_related(
        "version__registered_model"
    )


def leaderboard(*, user: Any, dataset_version: DatasetVersion) -> list[Row]:
    """The most recent finished result of each visible model version on the dataset, best macro F1 first."""
    entries = (
        EvaluationEntry.objects.filter(
            evaluation__dataset_version=dataset_version, status=EntryStatus.DONE, macro_f1__isnull=False
        )
        .filter(visibility_q(user, "version__registered_model__"))
        .select_related("version__registered_model", "evaluation")
        .order_by("-evaluation__created_at", "-id")
    )
    latest: dict[int, EvaluationEntry] = {}
    for e in entries:
        latest.setdefault(e.version_id, e)
    ordered = sorted(latest.values(), key=lambda e: (-(e.macro_f1 or 0.0), -(e.macro_precision or 0.0), e.pk))
    return [Row(entry=e, rank=i, bar_width=max(0.0, min(1.0, e.macro_f1 or 0.0))) for i, e in enumerate(ordered, 1)]


def bar_chart(rows: list[Row], width: int = 560, bar: int = 22, gap: int = 8, label_w: int = 200) -> dict[str, Any]:
    """Coordinates of a horizontal bar chart of macro F1 (drawn as SVG server-side)."""
    plot = width - label_w - 60
    bars = []
    for i, row in enumerate(rows):
        y = gap + i * (bar + gap)
        bars.append(
            {
                "y": y,
                "text_y": y + bar * 0.7,
                "w": round(plot * row.bar_width, 1),
                "value_x": label_w + round(plot * row.bar_width, 1) + 6,
                "label": row.entry.version.registered_model.name[:32],
                "value": row.entry.macro_f1,
                "best": i == 0,
            }
        )
    return {"width": width, "height": gap + len(rows) * (bar + gap), "label_w": label_w, "bar": bar, "bars": bars}
