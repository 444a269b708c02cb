"""Retrying a database step that failed for a transient reason.

A worker that has finished hours of training must not lose the result to a
locked SQLite file, a PostgreSQL restart or a dropped connection: the step
that records it is retried with exponential backoff. The step must be
idempotent (run again, it finds what a previous attempt committed) and must
not run inside an outer transaction (a retry would see a broken one).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


def db_retry(
    step: Callable[[], T],
    *,
    what: str,
    attempts: int | None = None,
    first_delay_s: float | None = None,
    max_delay_s: float = 30.0,
    retry_on: tuple[type[Exception], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``step``; on a transient database error, wait and run it again
    (``attempts`` times in all), then let the last error through.
    ``retry_on`` adds exception types that are transient for this step (e.g.
    an IntegrityError from a concurrent writer that the next attempt sees).

    Between attempts the broken connection is dropped (outside a transaction
    only), so the next attempt opens a fresh one.
    """
    attempts = attempts or settings.DB_RETRY_ATTEMPTS
    delay = first_delay_s if first_delay_s is not None else settings.DB_RETRY_FIRST_DELAY_S
    transient = TRANSIENT_DB_ERRORS + retry_on
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except transient as exc:
            if attempt >= attempts:
                log.error("%s: giving up after %d attempts: %s", what, attempt, exc)
                raise
            wait = min(max_delay_s, delay * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
            log.warning(
                "%s: transient database error (attempt %d/%d), retrying in %.1f s: %s",
                what,
                attempt,
                attempts,
                wait,
                exc,
            )
            if not connection.in_atomic_block:
                connection.close()
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
