"""Thin Celery entry points: load by id, call a service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import task_postrun, worker_ready

log = logging.getLogger(__name__)


@shared_task(name="catalog.tasks.finetune_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def finetune_run(job_id: int) -> None:
    from catalog.services.finetune import finetune_execute

    finetune_execute(job_id=job_id)


@shared_task(name="catalog.tasks.compile_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def compile_run(version_id: int) -> None:
    from catalog.services.compile import version_compile

    version_compile(version_id=version_id)


@worker_ready.connect
def _recover_on_start(**kwargs: Any) -> None:
    from catalog.services.finetune import finetune_requeue_stale

    try:
        finetune_requeue_stale(include_queued=True)
    except Exception:  # a worker must start even if the database is not ready yet
        log.exception("could not look for stale jobs")
    _sweep_tmp()


def _sweep_tmp() -> None:
    """Scratch folders and partial uploads that killed processes left behind."""
    from catalog.storage import artifact_tmp_sweep

    try:
        removed = artifact_tmp_sweep()
    except OSError:
        log.exception("could not sweep ARTIFACT_TMP_DIR")
        return
    if removed:
        log.warning("removed %d temporary leftover(s) of killed processes: %s", len(removed), ", ".join(removed))


@task_postrun.connect
def _recover_after_task(**kwargs: Any) -> None:
    from catalog.services.finetune import finetune_requeue_stale

    try:
        finetune_requeue_stale()
    except Exception:
        log.exception("could not look for stale jobs")
    _sweep_tmp()
