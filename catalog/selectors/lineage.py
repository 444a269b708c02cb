"""A version's lineage as boxes and arrows, laid out for a server-drawn SVG:
base version → dataset → fine-tune job → this version → its variants.

What lineage may show across visibility (README, "Lineage across visibility"):
a base model is named and linked only for viewers who can see it (others read
"Private model"); a dataset's name and sha256 only for members of the team that
uploaded it (datasets are team property; others read "Training data" and the
row count); a fine-tune job is linked only for its team (job pages are team-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalog.models import ModelVersion
from catalog.selectors.visibility import models_visible

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 46, 50, 14, 10
TITLE_CHARS = 22  # what fits a box at 12.5px


@dataclass
class Box:
    kind: str
    title: str
    subtitle: str
    url: str
    status: str = ""
    full_title: str = ""  # the untruncated title, shown as the box's tooltip
    x: int = 0
    y: int = 0
    w: int = BOX_W
    h: int = BOX_H


@dataclass
class Lineage:
    boxes: list[Box] = field(default_factory=list)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)
    width: int = 0
    height: int = 0


@dataclass
class LineageRefs:
    """A version's upstream, as far as one viewer may see it."""

    base_title: str = ""
    base_subtitle: str = ""
    base_url: str = ""
    dataset_title: str = ""
    dataset_subtitle: str = ""
    dataset_visible: bool = False
    job_url: str = ""


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """Cut at a word boundary and mark the cut: "Support ticket router for…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" -_,.;:·") + "…"


def _team_ids(user: Any) -> set[int] | None:
    """The viewer's team ids; None for a superuser (every team)."""
    if user is None or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return None
    return set(user.teams.values_list("id", flat=True))


def lineage_refs(*, user: Any, versions: list[ModelVersion]) -> dict[int, LineageRefs]:
    """Upstream labels and links of ``versions`` for ``user`` (keyed by version pk)."""
    teams = _team_ids(user)
    base_model_ids = {v.base_version.registered_model_id for v in versions if v.base_version is not None}
    visible = set(models_visible(user=user).filter(pk__in=base_model_ids).values_list("pk", flat=True))
    refs: dict[int, LineageRefs] = {}
    for v in versions:
        ref = LineageRefs()
        base = v.base_version
        if base is not None:
            if base.registered_model_id in visible:
                ref.base_title = base.registered_model.name
                ref.base_subtitle = f"v{base.version}"
                ref.base_url = f"{base.registered_model.get_absolute_url()}?version={base.version}"
            else:
                ref.base_title = "Private model"
                ref.base_subtitle = "not visible to you"
        dv = v.dataset_version
        if dv is not None:
            if teams is None or dv.dataset.team_id in teams:
                ref.dataset_title = dv.dataset.name
                ref.dataset_subtitle = f"{dv.rows} rows · {dv.sha256[:8]}"
                ref.dataset_visible = True
            else:
                ref.dataset_title = "Training data"
                ref.dataset_subtitle = f"{dv.rows} rows · team only"
        job = getattr(v, "finetune_job", None)
        if job is not None and (teams is None or job.team_id in teams):
            ref.job_url = f"/jobs/{job.pk}/"
        refs[v.pk] = ref
    return refs


def version_lineage(*, version: ModelVersion, user: Any = None) -> Lineage:
    ref = lineage_refs(user=user, versions=[version])[version.pk]
    columns: list[list[Box]] = []
    if version.base_version is not None:
        columns.append([_box("base", ref.base_title, f"{ref.base_subtitle} (base)", ref.base_url)])
    if version.dataset_version is not None:
        columns.append([_box("dataset", ref.dataset_title, ref.dataset_subtitle, "")])
    job = getattr(version, "finetune_job", None)
    if job is not None:
        title = f"Fine-tune job #{job.pk}" if ref.job_url else "Fine-tune job"
        columns.append([_box("job", title, job.status, ref.job_url)])
    columns.append([_box("version", version.registered_model.name, f"v{version.version} · {version.status}", "")])
    variants = list(version.variants.all())
    if variants:
        columns.append([_box("variant", v.name, v.get_status_display().lower(), "", status=v.status) for v in variants])
    return _layout(columns)


def _box(kind: str, title: str, subtitle: str, url: str, status: str = "") -> Box:
    return Box(kind, shorten(title), subtitle, url, status=status, full_title=title)


def _layout(columns: list[list[Box]]) -> Lineage:
    lineage = Lineage()
    tallest = max(len(c) for c in columns)
    lineage.height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y
    for i, column in enumerate(columns):
        x = PAD + i * (BOX_W + GAP_X)
        top = (lineage.height - (len(column) * BOX_H + (len(column) - 1) * GAP_Y)) // 2
        for j, box in enumerate(column):
            box.x, box.y = x, top + j * (BOX_H + GAP_Y)
            lineage.boxes.append(box)
    for left, right in zip(columns, columns[1:], strict=False):
        for a in left:
            for b in right:
                lineage.edges.append((a.x + a.w, a.y + a.h // 2, b.x - 4, b.y + b.h // 2))
    lineage.width = PAD * 2 + len(columns) * BOX_W + (len(columns) - 1) * GAP_X
    return lineage


def version_weights(*, version: ModelVersion) -> list[dict[str, Any]]:
    """The version's own weight files (``*.safetensors``), each marked when it
    is byte-identical to the base version's (a frozen encoder under a new head)."""
    base_hashes = {f["sha256"] for f in (version.base_version.files if version.base_version else [])}
    weights = [f for f in version.files if str(f.get("name", "")).endswith(".safetensors")]
    # The file that is new in this version first: that is what makes it this model.
    weights.sort(key=lambda f: (f["sha256"] in base_hashes, f["name"]))
    return [{**f, "from_base": f["sha256"] in base_hashes} for f in weights]


def lineage_summary(*, version: ModelVersion, user: Any) -> dict[str, Any]:
    """The API's ``lineage`` field under the same rule as the page: a base the
    viewer cannot see is ``{"model": null, "version": null, "private": true}``;
    a dataset of another team is ``{"id": null, "sha256": null, "rows": N}``."""
    ref = lineage_refs(user=user, versions=[version])[version.pk]
    base, dv = version.base_version, version.dataset_version
    base_out: dict[str, Any] | None = None
    if base is not None:
        base_out = (
            {"model": base.registered_model.slug, "version": base.version, "private": False}
            if ref.base_url
            else {"model": None, "version": None, "private": True}
        )
    dataset_out: dict[str, Any] | None = None
    if dv is not None:
        shown = ref.dataset_visible
        dataset_out = {"id": dv.pk if shown else None, "sha256": dv.sha256 if shown else None, "rows": dv.rows}
    return {"base": base_out, "dataset_version": dataset_out}
