"""Any write that can change a search result marks the catalogue as changed."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from catalog.models import (
    Alias,
    CatalogState,
    Domain,
    Metric,
    Modality,
    ModelVersion,
    RegisteredModel,
    ResultKind,
    Team,
    Variant,
)


def catalog_changed() -> str:
    """Give the catalogue a new generation token (bulk writers call this)."""
    from catalog.selectors.live_state import token_written

    token = uuid.uuid4().hex
    token_written(token)  # this process asks the database until the token is announced
    if not CatalogState.objects.filter(pk=1).update(token=token):
        CatalogState.objects.update_or_create(pk=1, defaults={"token": token})
    return token


@receiver([post_save, post_delete], sender=RegisteredModel)
@receiver([post_save, post_delete], sender=ModelVersion)
@receiver([post_save, post_delete], sender=Variant)
@receiver([post_save, post_delete], sender=Metric)
@receiver([post_save, post_delete], sender=Alias)
@receiver([post_save, post_delete], sender=Team)
@receiver([post_save, post_delete], sender=Modality)
@receiver([post_save, post_delete], sender=ResultKind)
@receiver([post_save, post_delete], sender=Domain)
def _on_catalog_write(sender: Any, **kwargs: Any) -> None:
    catalog_changed()
