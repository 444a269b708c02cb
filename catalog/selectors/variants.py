"""``variant_resolve``: from (model, alias or version, constraints) to one served variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalog.models import ModelVersion, RegisteredModel, Variant, VariantStatus, VersionStatus


@dataclass
class Resolution:
    version: ModelVersion | None
    variant: Variant | None
    excluded: list[dict[str, str]] = field(default_factory=list)
    reason: str = ""


def version_pick(
    *, model: RegisteredModel, alias: str = "", version: int | None = None
) -> tuple[ModelVersion | None, str]:
    if version is not None:
        v = model.versions.filter(version=version).first()
        return v, "" if v else f"{model.slug} has no version {version}"
    if alias:
        a = model.aliases.filter(name=alias).select_related("version").first()
        return (a.version, "") if a else (None, f"{model.slug} has no alias {alias!r}")
    a = model.aliases.filter(name="production").select_related("version").first()
    if a:
        return a.version, ""
    # The latest ready version that is not deprecated or archived (those resolve by number only).
    v = model.versions.filter(status=VersionStatus.READY, lifecycle="active").order_by("-version").first()
    return v, "" if v else f"{model.slug} has no ready, active version"


def variant_resolve(
    *,
    model: RegisteredModel,
    alias: str = "",
    version: int | None = None,
    runtime: str = "",
    precision: str = "",
    hardware: str = "",
    max_p95_ms: float | None = None,
    format: str = "",
) -> Resolution:
    """The fastest served variant meeting every bound, or why none does.

    Fastest: the lowest geometric mean of the recorded p50 at batch 1 and
    batch 32 (``runners.compile.speed_score``, figures measured interleaved in
    one compile); a variant without both figures ranks after those with them,
    by its batch-1 p95."""
    from runners.compile import speed_score

    picked, why = version_pick(model=model, alias=alias, version=version)
    if picked is None:
        return Resolution(None, None, reason=why)
    excluded: list[dict[str, str]] = []
    candidates = []
    wanted: dict[str, Any] = {"runtime": runtime, "precision": precision, "hardware": hardware, "format": format}
    for v in picked.variants.order_by("latency_p95_ms", "name"):
        if v.status != VariantStatus.SERVED:
            excluded.append(
                {
                    "variant": v.name,
                    "constraint": "status",
                    "reason": f"{v.get_status_display().lower()}{': ' + v.status_reason if v.status_reason else ''}",
                }
            )
            continue
        mismatch = next(((k, getattr(v, k)) for k, want in wanted.items() if want and getattr(v, k) != want), None)
        if mismatch:
            excluded.append(
                {
                    "variant": v.name,
                    "constraint": mismatch[0],
                    "reason": f"{mismatch[0]} is {mismatch[1]}, not {wanted[mismatch[0]]}",
                }
            )
            continue
        if max_p95_ms is not None and (v.latency_p95_ms is None or v.latency_p95_ms > max_p95_ms):
            excluded.append(
                {
                    "variant": v.name,
                    "constraint": "max_p95_ms",
                    "reason": f"p95 {v.latency_p95_ms:.2f} ms > {max_p95_ms} ms"
                    if v.latency_p95_ms
                    else "no latency measured",
                }
            )
            continue
        candidates.append(v)
    if not candidates:
        reason = f"no served variant of {model.slug} v{picked.version} meets the constraints"
        if not picked.variants.exists():
            reason = f"{model.slug} v{picked.version} has no compiled variant yet"
        return Resolution(picked, None, excluded, reason)

    def rank(v: Variant) -> tuple[bool, float, str]:
        score = speed_score(v.latency if isinstance(v.latency, dict) else None)
        if score is not None:
            return False, score, v.name
        return True, v.latency_p95_ms if v.latency_p95_ms is not None else float("inf"), v.name

    return Resolution(picked, min(candidates, key=rank), excluded)


def latency_chart(variants: list[Variant], width: int = 520, bar: int = 11) -> dict[str, Any]:
    """Horizontal bars, one pair (batch 1, batch 32 p50) per measured variant."""
    rows = [v for v in variants if v.latency]
    if not rows:
        return {}
    label_w, pad = 150, 6
    peak = max(float(s.get("p50_ms", 0)) for v in rows for s in v.latency.values()) or 1.0
    scale = (width - label_w - 70) / peak
    out = []
    y = pad
    for v in rows:
        b1 = v.latency.get("1", {}).get("p50_ms")
        b32 = v.latency.get("32", {}).get("p50_ms")
        out.append(
            {
                "name": v.name,
                "status": v.status,
                "y": y,
                "text_y": y + bar + 3,
                "b1": b1,
                "b32": b32,
                "w1": max(1.0, (b1 or 0) * scale),
                "w32": max(1.0, (b32 or 0) * scale),
                "y32": y + bar + 2,
            }
        )
        y += 2 * bar + 12
    return {"rows": out, "width": width, "height": y + pad, "x0": label_w, "bar": bar}


def hardware_caption(variants: list[Variant]) -> str:
    """The machine the latencies were measured on, from the recorded fingerprint
    of the first measured variant: "Intel(R) Xeon(R) … · 8 cores · avx512f ·
    onnxruntime 1.20.1". Empty when no variant recorded one."""
    fp = next((v.hardware_fingerprint for v in variants if v.latency and v.hardware_fingerprint), None)
    if not fp:
        return ""
    parts = [str(fp.get("cpu") or fp.get("machine") or "unknown CPU")]
    if fp.get("cores"):
        parts.append(f"{fp['cores']} cores")
    if fp.get("isa"):
        parts.append(", ".join(fp["isa"]))
    if fp.get("gpu"):
        parts.append(str(fp["gpu"]))
    if fp.get("onnxruntime"):
        parts.append(f"onnxruntime {fp['onnxruntime']}")
    return " · ".join(parts)


def pull_command_args(*, model: RegisteredModel, version: ModelVersion) -> Variant | None:
    """The variant the page's "Pull it" command names: the one ``variant_resolve``
    serves for this version with no constraint (never a rejected one)."""
    return variant_resolve(model=model, version=version.version).variant
