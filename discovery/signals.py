"""A model whose text may have changed gets its embedding refreshed after commit.

Bulk writers send no signals: ``catalog_synth`` stores template vectors itself,
and ``manage.py discovery_reindex`` catches anything else."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from catalog.models import Domain, Modality, RegisteredModel, ResultKind

log = logging.getLogger(__name__)


def embeddings_schedule(model_ids: list[int]) -> None:
    """Refresh these models' vectors once the current transaction commits."""
    if model_ids:
        transaction.on_commit(lambda: _dispatch(model_ids))


def _dispatch(model_ids: list[int]) -> None:
    from discovery.services import embeddings_refresh, encoder_resolve

    try:
        if getattr(settings, "DISCOVERY_EMBED_SYNC", False):
            embeddings_refresh(model_ids=model_ids)
        elif encoder_resolve(build=False) is not None:
            # Encoding is cheap once a session is loaded, but loading one is not:
            # the worker does it. Nothing to queue before any encoder exists.
            from discovery.tasks import embeddings_refresh_run

            embeddings_refresh_run.delay(model_ids)
    except Exception:  # a catalogue write never fails because of its search vector
        log.exception("could not schedule embeddings for %s", model_ids[:10])


@receiver(post_save, sender=RegisteredModel)
def _on_model_saved(sender: Any, instance: RegisteredModel, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        embeddings_schedule([instance.pk])


@receiver(post_save, sender=Modality)
@receiver(post_save, sender=ResultKind)
@receiver(post_save, sender=Domain)
def _on_node_saved(sender: Any, instance: Any, created: bool = False, raw: bool = False, **kwargs: Any) -> None:
    if raw or created:
        return
    field = {Modality: "modality", ResultKind: "result_kind", Domain: "domain"}[sender]
    subtree = sender.subtree_q(instance.path, prefix=f"{field}__")
    ids = list(RegisteredModel.objects.filter(subtree).values_list("id", flat=True))
    embeddings_schedule(ids)
