from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from catalog.models import FineTuneJob, ModelVersion, RegisteredModel, Team, VersionStatus
from catalog.selectors.visibility import models_visible


def teams_of(user: Any) -> QuerySet[Team]:
    if user is None or not user.is_authenticated:
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(members=user)


def jobs_visible(*, user: Any) -> QuerySet[FineTuneJob]:
    """Jobs of the user's teams."""
    return FineTuneJob.objects.filter(team__in=teams_of(user)).select_related(
        "team", "base_version__registered_model", "dataset_version__dataset", "result_version__registered_model"
    )


def base_version_resolve(*, user: Any, ref: str) -> ModelVersion | None:
    """``slug`` (its production alias, else its latest ready version) or ``slug@N``."""
    slug, _, number = ref.partition("@")
    model: RegisteredModel | None = models_visible(user=user).filter(slug=slug).first()
    if model is None:
        return None
    if number:
        if not number.isdigit():
            return None
        return model.versions.filter(version=int(number)).first()
    alias = model.aliases.filter(name="production").select_related("version").first()
    if alias is not None:
        return alias.version
    return model.versions.filter(status=VersionStatus.READY).order_by("-version").first()


def finetunable_models(*, user: Any) -> QuerySet[RegisteredModel]:
    from catalog.services.finetune import FINETUNABLE_FAMILIES

    return (
        models_visible(user=user)
        .filter(latest_version__family__in=FINETUNABLE_FAMILIES)
        .select_related("latest_version")
        .order_by("name")
    )


def loss_curve(history: list[list[float]], width: int = 560, height: int = 180, pad: int = 28) -> dict[str, Any]:
    """SVG geometry of a loss curve: polyline points and axis labels."""
    if not history:
        return {"points": "", "width": width, "height": height}
    steps = [float(h[0]) for h in history]
    losses = [float(h[1]) for h in history]
    x0, x1 = min(steps), max(steps)
    y0, y1 = 0.0, max(losses) or 1.0
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    points = " ".join(
        f"{pad + (s - x0) * sx:.1f},{height - pad - (v - y0) * sy:.1f}" for s, v in zip(steps, losses, strict=True)
    )
    return {
        "points": points,
        "width": width,
        "height": height,
        "pad": pad,
        "max_loss": y1,
        "last_loss": losses[-1],
        "last_step": int(x1),
        "bottom": height - pad,
        "right": width - pad,
    }
