"""Thin Celery entry point: refresh embeddings by model id."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="discovery.tasks.embeddings_refresh_run", ignore_result=True)
def embeddings_refresh_run(model_ids: list[int]) -> None:
    from discovery.services import embeddings_refresh

    embeddings_refresh(model_ids=model_ids)
