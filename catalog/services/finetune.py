"""Fine-tune jobs: request, claim, progress, registration, cancel, recovery.

A job is claimed with a conditional UPDATE (only a queued job, or a running
one whose heartbeat went stale because its worker died), so two workers never
train the same job at once; the result version is registered under a row lock
and linked one-to-one to the job, so a job yields exactly one version however
often it is delivered.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, TextField, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone
from django.utils.text import slugify

from catalog.models import (
    DatasetVersion,
    Domain,
    FineTuneJob,
    JobStatus,
    ModelVersion,
    RegisteredModel,
    ResultKind,
    Team,
    VersionStatus,
)
from catalog.services.registry import (
    artifact_files_store,
    metrics_record,
    model_version_create,
    model_version_finish,
    registered_model_create,
)
from catalog.services.retry import TRANSIENT_DB_ERRORS, db_retry
from catalog.storage import artifact_materialize, artifact_tmpdir

log = logging.getLogger(__name__)

FINETUNABLE_FAMILIES = ("sentence-encoder", "text-classifier", "sequence-classifier")
ACTIVE = (JobStatus.RUNNING, JobStatus.EVALUATING)


def code_version() -> str:
    """The exact training code, as a digest of the runner's source."""
    from runners.families import text_classifier

    digest = hashlib.sha256(Path(text_classifier.__file__).read_bytes()).hexdigest()[:12]
    return f"runners.families.text_classifier@{digest}"


def finetune_target_slug(*, team: Team, name: str) -> str:
    """The slug of the model a fine-tune named ``name`` creates or adds to.

    Model names are not an oracle: when another team — visible or not — holds
    the plain slug of ``name``, the team's model silently gets a team-scoped
    slug (``<name>-<team>``, then ``-2``, ``-3``…) instead of the request being
    refused, so the answer is the same whether that model is private or not.
    """
    slug = slugify(name)[:120]
    others = RegisteredModel.objects.exclude(team=team)
    if not others.filter(slug=slug).exists():
        return slug
    scoped = f"{slug[:100]}-{team.slug}"[:116].strip("-")
    candidate, n = scoped, 2
    while others.filter(slug=candidate).exists():
        candidate, n = f"{scoped}-{n}", n + 1
    return candidate


def finetune_target_model(*, team: Team, name: str) -> RegisteredModel | None:
    """The team's existing model a fine-tune named ``name`` adds a version to."""
    return RegisteredModel.objects.filter(team=team, slug=finetune_target_slug(team=team, name=name)).first()


def finetune_request(
    *,
    team: Team,
    base_version: ModelVersion,
    dataset_version: DatasetVersion,
    name: str,
    hyperparameters: dict[str, Any] | None = None,
    min_precision: float = 0.0,
    visibility: str = "internal",
    user: Any = None,
    enqueue: bool = True,
) -> FineTuneJob:
    """Create a queued job and enqueue it on the ``finetune`` queue on commit.

    Raises:
        ValidationError: with a field → message dict.
    """
    from runners.families.text_classifier import FitParams

    errors: dict[str, str] = {}
    if user is not None:
        from catalog.roles import Role, has_role

        if not has_role(user, team, Role.MEMBER):
            errors["team"] = f"Fine-tuning needs the member role in {team.name}; viewers only see its models."
    if base_version.family not in FINETUNABLE_FAMILIES:
        errors["base"] = (
            f"{base_version} is a {base_version.family!r} model; fine-tuning needs one of "
            f"{', '.join(FINETUNABLE_FAMILIES)}."
        )
    elif base_version.status != VersionStatus.READY:
        errors["base"] = f"{base_version} is {base_version.status}, not ready."
    if dataset_version.dataset.team_id != team.pk:
        errors["dataset"] = "The dataset belongs to another team."
    try:
        params = FitParams.from_dict(hyperparameters)
    except ValueError as exc:
        errors["hyperparameters"] = str(exc)
    if not 0.0 <= min_precision <= 1.0:
        errors["min_precision"] = "The quality gate is a macro precision between 0 and 1."
    target = None
    if not slugify(name):
        errors["name"] = "Give the new model a name with letters or digits."
    else:
        # Never "taken by another team": that would tell team B that team A has
        # a private model of that name. See finetune_target_slug.
        target = finetune_target_model(team=team, name=name)
    if errors:
        raise ValidationError(errors)
    job = FineTuneJob.objects.create(
        team=team,
        created_by=user if user is not None and user.is_authenticated else None,
        base_version=base_version,
        dataset_version=dataset_version,
        target_name=name,
        target_model=target,
        visibility=visibility,
        hyperparameters=params.as_dict(),
        min_precision=min_precision,
        log=f"{timezone.now():%H:%M:%S} queued: {base_version} on {dataset_version}\n",
    )
    if enqueue:
        transaction.on_commit(lambda: finetune_enqueue(job_id=job.pk))
    return job


def finetune_enqueue(*, job_id: int) -> None:
    from catalog.tasks import finetune_run

    result = finetune_run.delay(job_id)
    FineTuneJob.objects.filter(pk=job_id, celery_task_id="").update(celery_task_id=result.id)


def _stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.FINETUNE_STALE_AFTER_S)


def job_claim(*, job_id: int) -> FineTuneJob | None:
    """Take the job for this worker; None when it is not ours to run."""
    now = timezone.now()
    claimable = Q(status=JobStatus.QUEUED) | Q(status__in=ACTIVE, heartbeat_at__lt=_stale_before())
    claimed = FineTuneJob.objects.filter(claimable, pk=job_id).update(
        status=JobStatus.RUNNING,
        attempts=F("attempts") + 1,
        heartbeat_at=now,
        started_at=Coalesce(F("started_at"), now),
        phase="starting",
    )
    if claimed != 1:
        return None
    return FineTuneJob.objects.select_related("base_version__registered_model", "dataset_version__dataset").get(
        pk=job_id
    )


def job_log(*, job: FineTuneJob, line: str) -> None:
    stamped = f"{timezone.now():%H:%M:%S} {line}\n"
    job.log += stamped
    FineTuneJob.objects.filter(pk=job.pk).update(log=Concat(F("log"), Value(stamped), output_field=TextField()))


class Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh while this process works on it — through
    imports, downloads from the store and long steps alike. If the process
    dies, so does the thread, and the job goes stale."""

    def __init__(self, job_id: int) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.interval = max(0.5, settings.FINETUNE_STALE_AFTER_S / 4)
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(self.interval):
                try:
                    FineTuneJob.objects.filter(pk=self.job_id, status__in=ACTIVE).update(heartbeat_at=timezone.now())
                except TRANSIENT_DB_ERRORS as exc:  # the next beat tries again, on a new connection
                    log.warning("job %s: heartbeat not written: %s", self.job_id, exc)
                finally:
                    connection.close()  # between beats, hold no connection (a pooled one goes back)
        finally:
            connection.close()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


class ProgressRecorder:
    """Collects the runner's progress and writes it (with the heartbeat) at
    most every ``interval`` seconds; reads the cancel flag at the same time."""

    WEIGHTS = {"features": (0.0, 0.25), "train": (0.25, 0.70), "evaluate": (0.95, 0.04)}
    MAX_POINTS = 2000

    def __init__(self, job: FineTuneJob, interval: float = 0.5) -> None:
        self.job = job
        self.interval = interval
        self.losses: list[list[float]] = []
        self.progress = 0.0
        self.phase = "starting"
        self.cancel = False
        self.last_write = 0.0
        self.epoch = -1

    def __call__(self, p: Any) -> None:
        start, span = self.WEIGHTS.get(p.phase, (0.0, 1.0))
        self.progress = min(0.99, start + span * (p.step / max(p.total_steps, 1)))
        self.phase = p.phase
        if p.loss is not None:
            self.losses.append([p.step, round(p.loss, 5)])
        if p.phase == "train" and p.epoch != self.epoch:
            self.epoch = p.epoch
            try:
                job_log(job=self.job, line=f"epoch {p.epoch + 1}")
            except TRANSIENT_DB_ERRORS as exc:  # progress is best-effort; training goes on
                log.warning("job %s: log line not written: %s", self.job.pk, exc)
        if time.monotonic() - self.last_write >= self.interval:
            self.flush()

    def history(self) -> list[list[float]]:
        if len(self.losses) <= self.MAX_POINTS:
            return self.losses
        stride = len(self.losses) / self.MAX_POINTS
        return [self.losses[int(i * stride)] for i in range(self.MAX_POINTS)] + [self.losses[-1]]

    def flush(self) -> None:
        self.last_write = time.monotonic()
        try:
            FineTuneJob.objects.filter(pk=self.job.pk).update(
                progress=self.progress, phase=self.phase, loss_history=self.history(), heartbeat_at=timezone.now()
            )
            self.cancel = FineTuneJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        except TRANSIENT_DB_ERRORS as exc:  # progress is best-effort; the next flush tries again
            log.warning("job %s: progress not written: %s", self.job.pk, exc)

    def should_stop(self) -> bool:
        return self.cancel


def finetune_execute(*, job_id: int) -> FineTuneJob | None:
    """Run a job end to end in this process (a Celery task calls this)."""
    from runners.families import text_classifier

    job = job_claim(job_id=job_id)
    if job is None:
        log.info("job %s: not claimable (done, running elsewhere or missing)", job_id)
        return None
    job_log(job=job, line=f"attempt {job.attempts} on {socket.gethostname()}")
    recorder = ProgressRecorder(job)
    heartbeat = Heartbeat(job.pk)
    heartbeat.start()
    try:
        params = text_classifier.FitParams.from_dict(job.hyperparameters)
        with artifact_tmpdir() as tmp:
            base_dir = artifact_materialize(job.base_version.files, Path(tmp) / "base")
            from catalog.services.datasets import dataset_load

            data = dataset_load(version=job.dataset_version)
            job_log(
                job=job,
                line=f"training on {len(data.texts)} rows, {len(data.label_counts)} labels, "
                + (
                    f"{params.unfreeze_layers} unfrozen layer(s)"
                    if params.recipe == "manual"
                    else f"recipe {params.recipe!r} within {params.time_budget_s:.0f} s"
                )
                + (f"; {len(data.duplicates)} duplicate rows dropped" if data.duplicates else ""),
            )
            result = text_classifier.fit(
                base_dir,
                data.texts,
                data.labels,
                Path(tmp) / "out",
                params,
                progress=recorder,
                should_stop=recorder.should_stop,
            )
            recorder.flush()

            def registering() -> None:
                FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.EVALUATING, phase="registering")
                job_log(
                    job=job,
                    line=f"evaluated on {result.holdout_rows} held-out rows: macro precision "
                    f"{result.report.macro_precision:.3f}, coverage {result.report.coverage:.3f} "
                    f"({result.device}, {result.seconds.get('total', 0):.1f} s)",
                )
                if result.baseline:
                    points = result.comparison()["macro_precision_points"]
                    job_log(
                        job=job,
                        line=f"frozen-embedding baseline (logistic regression): macro precision "
                        f"{result.baseline['macro_precision']:.3f}; the {result.recipe} fine-tune "
                        + (
                            f"beats it by {points:.1f} points"
                            if points > 0
                            else f"does NOT beat it ({points:+.1f} points)"
                        ),
                    )

            # The trained files stay in ``tmp`` until the version is recorded:
            # a transient database error (locked, restarted, connection lost)
            # is retried with backoff, and registration is idempotent.
            db_retry(registering, what=f"job {job.pk}: mark registering")
            version = db_retry(
                lambda: finetune_register(job=job, result=result, history=recorder.history()),
                what=f"job {job.pk}: registration",
                retry_on=(IntegrityError,),  # a concurrent job created the same target model
            )
        db_retry(lambda: job_log(job=job, line=f"registered {version} ({version.status})"), what=f"job {job.pk}: log")
    except text_classifier.Cancelled:

        def cancelled() -> None:
            FineTuneJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, finished_at=timezone.now())
            job_log(job=job, line="cancelled")

        db_retry(cancelled, what=f"job {job.pk}: cancel")
    except Exception as exc:  # a failed job keeps a readable reason
        log.exception("job %s failed", job.pk)
        reason = f"{type(exc).__name__}: {exc}"

        def failed() -> None:
            FineTuneJob.objects.filter(pk=job.pk).update(
                status=JobStatus.FAILED, error=reason, finished_at=timezone.now()
            )
            job_log(job=job, line=f"failed: {reason}")

        # If even this fails, the job keeps its state, its heartbeat goes
        # stale and it is claimed and run again: never silently lost.
        db_retry(failed, what=f"job {job.pk}: record failure")
    finally:
        heartbeat.stop()
    db_retry(job.refresh_from_db, what=f"job {job.pk}: reload")
    return job


def finetune_register(
    *, job: FineTuneJob, result: Any, history: list[list[float]], enqueue_compile: bool = True
) -> ModelVersion:
    """Store the trained files and register the one version of this job."""
    files = artifact_files_store(directory=result.output_dir, names=result.files)
    report = result.report
    with transaction.atomic():
        locked = FineTuneJob.objects.select_for_update().get(pk=job.pk)
        if locked.result_version_id:
            return locked.result_version  # type: ignore[return-value]
        base_model = job.base_version.registered_model
        model = finetune_target_model(team=job.team, name=job.target_name)
        if model is None:
            kind = "classification/binary" if len(result.labels) == 2 else "classification/multiclass"
            dataset = job.dataset_version.dataset
            model = registered_model_create(
                name=job.target_name,
                slug=finetune_target_slug(team=job.team, name=job.target_name),
                team=job.team,
                visibility=job.visibility,
                modality=base_model.modality,
                result_kind=ResultKind.objects.get(path=kind),
                # What it learned from is the dataset; with no domain given, "general"
                # (never the base model's, which described other data).
                domain=dataset.domain or Domain.objects.filter(path="general").first() or base_model.domain,
                summary=f"Classifies text into {', '.join(result.labels[:6])}"
                + ("…" if len(result.labels) > 6 else "")
                + _lineage_phrase(job=job),
            )
        version = model_version_create(
            registered_model=model,
            family="text-classifier",
            framework="pytorch",
            files=files,
            hyperparameters=result.params,
            parameter_count=result.parameter_count,
            input_schema={"type": "text", "max_tokens": result.params["max_length"]},
            output_schema={"type": "probabilities", "classes": len(result.labels), "labels": result.labels},
            labels=result.labels,
            base_version=job.base_version,
            dataset_version=job.dataset_version,
            code_version=code_version(),
        )
        metrics_record(
            version=version,
            metrics=report.headline(),
            evaluation_dataset=f"{job.dataset_version.dataset.name} (held-out {result.params['holdout']:.0%}, "
            f"seed {result.params['seed']})",
            evaluation_dataset_version=job.dataset_version,
            sample_count=report.samples,
        )
        passed = report.macro_precision >= job.min_precision
        model_version_finish(version=version, status=VersionStatus.READY if passed else VersionStatus.BELOW_GATE)
        metrics, evaluation = job_quality(result=result)
        FineTuneJob.objects.filter(pk=job.pk).update(
            status=JobStatus.SUCCEEDED,
            result_version=version,
            target_model=model,
            metrics=metrics,
            evaluation=evaluation,
            loss_history=history,
            progress=1.0,
            phase="done",
            finished_at=timezone.now(),
        )
        from catalog.services.compile import compile_request

        if passed and enqueue_compile and settings.COMPILE_ON_READY:
            compile_request(version=version)
    return version


def job_quality(*, result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's metrics and evaluation record: the held-out report, and beside
    it the frozen-embedding logistic-regression baseline scored on the same
    split, the comparison (in percentage points) and every recipe trial."""
    report = result.report
    metrics = dict(report.headline())
    evaluation = dict(report.as_dict())
    baseline = getattr(result, "baseline", None) or {}
    if baseline:
        metrics["baseline_macro_precision"] = baseline["macro_precision"]
        metrics["baseline_macro_f1"] = baseline["macro_f1"]
        evaluation["baseline"] = baseline
        evaluation["comparison"] = result.comparison()
    evaluation["recipe"] = getattr(result, "recipe", "manual")
    evaluation["trials"] = getattr(result, "trials", [])
    evaluation["inner_validation_rows"] = getattr(result, "inner_validation_rows", 0)
    return metrics, evaluation


def _lineage_phrase(*, job: FineTuneJob) -> str:
    """ "; fine-tuned from X on Y." within what every viewer of the new model may
    see (README, "Lineage across visibility"): a private base is named only in
    a private model of its own team, the dataset (team-only) only in a private one."""
    base_model = job.base_version.registered_model
    private = job.visibility == "private"
    base_shown = base_model.visibility == "internal" or (private and base_model.team_id == job.team_id)
    phrase = f"; fine-tuned from {base_model.name if base_shown else 'a private model'}"
    return phrase + (f" on {job.dataset_version.dataset.name}." if private else ".")


def job_cancel(*, job: FineTuneJob, user: Any = None) -> FineTuneJob:
    """Cancel a queued job now, or ask a running one to stop at its next step.

    With ``user``: the member role in the job's team is required (viewers only look).
    """
    if user is not None:
        from catalog.roles import Role, role_require

        role_require(user, job.team, Role.MEMBER, "cancel a fine-tune")
    if FineTuneJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), cancel_requested=True
    ):
        job_log(job=job, line="cancelled before it started")
    elif FineTuneJob.objects.filter(pk=job.pk, status__in=ACTIVE).update(cancel_requested=True):
        job_log(job=job, line="cancel requested; stopping at the next step")
    job.refresh_from_db()
    return job


def finetune_requeue_stale(*, include_queued: bool = False) -> list[int]:
    """Enqueue again the jobs whose worker died (stale heartbeat), and with
    ``include_queued`` the queued jobs old enough that their message may be
    lost. A second delivery is harmless: only one claim can succeed."""
    stale = _stale_before()
    requeued = []
    for job_id in FineTuneJob.objects.filter(status__in=ACTIVE, heartbeat_at__lt=stale).values_list("pk", flat=True):
        if FineTuneJob.objects.filter(pk=job_id, status__in=ACTIVE, heartbeat_at__lt=stale).update(
            status=JobStatus.QUEUED
        ):
            requeued.append(job_id)
    if include_queued:
        requeued += list(
            FineTuneJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=stale).values_list("pk", flat=True)
        )
    for job_id in requeued:
        log.warning("job %s: re-enqueued (its worker stopped answering)", job_id)
        finetune_enqueue(job_id=job_id)
    return requeued
