"""Thin Celery entry point: run an evaluation by id."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="evaluations.tasks.evaluation_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def evaluation_run(evaluation_id: int) -> None:
    from evaluations.services import evaluation_execute

    evaluation_execute(evaluation_id=evaluation_id)
