"""A compile whose worker died is started again by the next worker's check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from catalog.models import Variant, VariantStatus
from catalog.services import compile as compile_service

pytestmark = pytest.mark.django_db


def _pending(version: Any, name: str, age_s: int) -> Variant:
    variant = Variant.objects.create(
        version=version, name=name, format="onnx", precision="fp32", runtime="onnxruntime", hardware="cpu"
    )
    Variant.objects.filter(pk=variant.pk).update(created_at=timezone.now() - timedelta(seconds=age_s))
    return variant


def test_stale_pending_variants_queue_their_compile_once(make_model: Any, settings: Any, monkeypatch: Any) -> None:
    settings.COMPILE_STALE_AFTER_S = 60
    queued: list[int] = []
    monkeypatch.setattr(compile_service, "compile_enqueue", lambda *, version_id: queued.append(version_id))
    killed = make_model("Killed mid-compile").latest_version
    running = make_model("Still compiling").latest_version
    _pending(killed, "onnx-fp32", age_s=600)
    _pending(killed, "onnx-int8", age_s=600)
    _pending(running, "onnx-fp32", age_s=5)  # a compile under way is left alone
    assert compile_service.compile_requeue_stale() == [killed.pk]
    assert queued == [killed.pk]
    # Claimed: a second worker's check right after does not queue it again.
    assert compile_service.compile_requeue_stale() == []
    assert queued == [killed.pk]


def test_a_compile_that_cannot_run_marks_its_variants_failed(tiny_encoder: Any, monkeypatch: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the weights are unreadable")

    monkeypatch.setattr(compile_service, "artifact_materialize", broken)
    with pytest.raises(RuntimeError):
        compile_service.version_compile(version_id=tiny_encoder.pk)
    statuses = set(Variant.objects.filter(version=tiny_encoder).values_list("status", flat=True))
    assert statuses == {VariantStatus.FAILED}  # never left pending, so never re-queued for ever
    assert "unreadable" in Variant.objects.filter(version=tiny_encoder).first().status_reason
