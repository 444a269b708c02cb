"""Celery application. Configuration comes from Django settings (``CELERY_*``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "modellibrary.settings")

app = Celery("modellibrary")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class StaleJobReaper(bootsteps.StartStopStep):
    """Every few seconds, re-enqueue jobs whose worker died (stale heartbeat),
    whatever the broker: kombu's filesystem transport, for one, never
    redelivers an unacknowledged message."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.entry: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        interval = max(1.0, settings.FINETUNE_STALE_AFTER_S / 3)
        self.entry = worker.timer.call_repeatedly(interval, _reap_stale_jobs, priority=10)

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()


def _reap_stale_jobs() -> None:
    from django.db import close_old_connections

    from catalog.services.compile import compile_requeue_stale
    from catalog.services.finetune import finetune_requeue_stale

    try:
        finetune_requeue_stale()
        compile_requeue_stale()
    except Exception:  # never let the timer die
        import logging

        logging.getLogger(__name__).exception("stale-job check failed")
    finally:
        close_old_connections()


app.steps["worker"].add(StaleJobReaper)
