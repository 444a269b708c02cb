from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from catalog.models import ImmutableVersionError, Modality, VersionStatus
from catalog.services.registry import alias_set, model_version_create

pytestmark = pytest.mark.django_db


def test_moving_a_node_re_roots_its_subtree(taxonomy: None) -> None:
    photo = Modality.objects.get(path="image/photo")
    photo.parent = Modality.objects.get(path="multimodal")
    photo.save()
    assert Modality.objects.get(slug="rgb").path == "multimodal/photo/rgb"
    assert not Modality.objects.filter(path__startswith="image/photo").exists()
    assert Modality.objects.get(slug="rgb").label == "Multimodal › Photo › RGB"


def test_a_ready_version_is_immutable(make_model: Any) -> None:
    version = make_model("Frozen").latest_version
    version.hyperparameters = {"epochs": 99}
    with pytest.raises(ImmutableVersionError):
        version.save()
    version.refresh_from_db()
    version.description = "Notes can still change."
    version.save()


def test_version_numbers_increase(make_model: Any) -> None:
    model = make_model("Numbered")
    v1 = model.latest_version
    v2 = model_version_create(registered_model=model, family="mlp-classifier", files=v1.files)
    assert (v1.version, v2.version) == (1, 2)
    assert v2.status == VersionStatus.PENDING


def test_production_alias_needs_a_ready_version(make_model: Any) -> None:
    model = make_model("Gated")
    pending = model_version_create(registered_model=model, family="mlp-classifier", files=model.latest_version.files)
    with pytest.raises(ValidationError):
        alias_set(registered_model=model, name="production", version=pending)
    alias_set(registered_model=model, name="staging", version=pending)
    assert alias_set(registered_model=model, name="production", version=model.latest_version).version.version == 1
