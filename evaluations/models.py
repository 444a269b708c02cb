"""An evaluation: up to N catalogued classifiers run on one dataset version of a team."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from catalog.models import DatasetVersion, ModelVersion, Team


class EvaluationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class EntryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Evaluation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="evaluations")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="evaluations")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    threshold = models.FloatField(default=0.9, help_text="confidence threshold for coverage")
    status = models.CharField(
        max_length=12, choices=EvaluationStatus.choices, default=EvaluationStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"evaluation #{self.pk} on {self.dataset_version_id}"

    @property
    def finished(self) -> bool:
        return self.status in (EvaluationStatus.SUCCEEDED, EvaluationStatus.FAILED)


class EvaluationEntry(models.Model):
    """One model version's result in an evaluation."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="entries")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    label_mapping = models.JSONField(default=dict, blank=True, help_text="{dataset label: model label}")
    status = models.CharField(max_length=10, choices=EntryStatus.choices, default=EntryStatus.PENDING)
    error = models.TextField(blank=True)
    runner = models.CharField(max_length=60, blank=True, help_text="the variant used, or torch")
    accuracy = models.FloatField(null=True, blank=True)
    macro_precision = models.FloatField(null=True, blank=True)
    macro_recall = models.FloatField(null=True, blank=True)
    macro_f1 = models.FloatField(null=True, blank=True)
    coverage = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True, help_text="mean milliseconds per input, batches of 32")
    variant_p95_ms = models.FloatField(null=True, blank=True, help_text="the variant's batch-1 p95 at compile")
    sample_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "version"], name="evaluation_entry_unique")]

    def __str__(self) -> str:
        return f"{self.evaluation_id}: {self.version}"
