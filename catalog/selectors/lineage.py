"""A version's lineage as boxes and arrows, laid out for a server-drawn SVG:
base version → dataset → fine-tune job → this version → its variants."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.models import ModelVersion

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 46, 50, 14, 10


@dataclass
class Box:
    kind: str
    title: str
    subtitle: str
    url: str
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


def version_lineage(*, version: ModelVersion) -> Lineage:
    columns: list[list[Box]] = []
    base = version.base_version
    if base is not None:
        columns.append(
            [
                Box(
                    "base",
                    f"{base.registered_model.name}"[:19],
                    f"v{base.version} (base)",
                    f"/models/{base.registered_model.slug}/?version={base.version}",
                )
            ]
        )
    if version.dataset_version is not None:
        dv = version.dataset_version
        columns.append([Box("dataset", dv.dataset.name[:19], f"{dv.rows} rows · {dv.sha256[:8]}", "")])
    job = getattr(version, "finetune_job", None)
    if job is not None:
        columns.append([Box("job", f"Fine-tune job #{job.pk}", job.status, f"/jobs/{job.pk}/")])
    columns.append([Box("version", version.registered_model.name[:19], f"v{version.version} · {version.status}", "")])
    variants = [v for v in version.variants.all()]
    if variants:
        columns.append([Box("variant", v.name, v.status, "") for v in variants])
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
