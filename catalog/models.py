"""The catalogue's data model.

A registered model is described by three aspects, all queryable data:
*Artifact* (on ``ModelVersion`` and ``Variant``), *Intake* (``Modality`` and
``Domain`` trees plus the version's input schema) and *Result* (``ResultKind``
tree plus labels, output schema and ``Metric`` rows).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import Q
from django.urls import reverse

slug_path_validator = RegexValidator(r"^[a-z0-9]+(?:-[a-z0-9]+)*$", "Use lowercase letters, digits and single hyphens.")


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    # ``team.members.add(user)`` still works: the role defaults to member.
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:team_detail", args=[self.slug])


class TeamRole(models.TextChoices):
    """What a member may do in a team (each role includes the ones before it)."""

    VIEWER = "viewer", "Viewer"  # sees the team's private models
    MEMBER = "member", "Member"  # registers models, uploads versions, fine-tunes
    MAINTAINER = "maintainer", "Maintainer"  # promotes, deprecates, edits, manages members


class Membership(models.Model):
    """A user's role in a team (the table behind ``Team.members``)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=12, choices=TeamRole.choices, default=TeamRole.MEMBER)

    class Meta:
        # The table Django made for the plain many-to-many field: kept, with a role column added.
        db_table = "catalog_team_members"
        unique_together = [("team", "user")]
        ordering = ["team", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


# --- Taxonomy trees -------------------------------------------------------------


class TaxonomyNode(models.Model):
    """A node of a materialised-path tree addressed by its slug path.

    ``path`` is the full slug path (``image/photo/rgb``). A subtree is
    ``path = p OR path LIKE 'p/%'``; the unique index on ``path`` serves that
    prefix match (PostgreSQL adds a ``varchar_pattern_ops`` index for it).
    """

    slug = models.SlugField(max_length=60, validators=[slug_path_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    path = models.CharField(max_length=255, unique=True, editable=False)
    depth = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        abstract = True
        ordering = ["path"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """Human path, e.g. ``Image › Photo › RGB`` (ancestors are cheap: few levels)."""
        names = [self.name]
        node = self.parent
        while node is not None:
            names.append(node.name)
            node = node.parent
        return " › ".join(reversed(names))

    def clean(self) -> None:
        node = self.parent
        while node is not None:
            if node.pk == self.pk and self.pk is not None:
                raise ValidationError({"parent": "A node cannot be its own ancestor."})
            node = node.parent

    def save(self, *args: Any, **kwargs: Any) -> None:
        old_path = None
        if self.pk:
            old_path = type(self)._default_manager.filter(pk=self.pk).values_list("path", flat=True).first()
        self.path = f"{self.parent.path}/{self.slug}" if self.parent else self.slug
        self.depth = self.parent.depth + 1 if self.parent else 0
        with transaction.atomic():
            super().save(*args, **kwargs)
            if old_path and old_path != self.path:
                # A rename or move re-roots the whole subtree.
                manager: Any = type(self)._default_manager  # Any: django-stubs trips on abstract self-FKs
                for child in manager.filter(parent_id=self.pk):
                    child.save()

    @classmethod
    def subtree_q(cls, path: str, prefix: str = "") -> Q:
        return Q(**{f"{prefix}path": path}) | Q(**{f"{prefix}path__startswith": f"{path}/"})


class Modality(TaxonomyNode):
    class Meta(TaxonomyNode.Meta):
        verbose_name_plural = "modalities"


class ResultKind(TaxonomyNode):
    pass


class Domain(TaxonomyNode):
    pass


# --- Datasets -------------------------------------------------------------------


class Dataset(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="dataset_team_name")]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """Immutable, content-addressed data (``sha256`` of the uploaded bytes)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.BigIntegerField()
    file_name = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=10, default="csv")
    rows = models.PositiveIntegerField()
    text_column = models.CharField(max_length=100, blank=True)
    label_column = models.CharField(max_length=100, blank=True)
    label_counts = models.JSONField(default=dict)
    schema = models.JSONField(default=dict)
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="datasetversion_content")]

    def __str__(self) -> str:
        return f"{self.dataset.name} @{self.sha256[:12]}"

    @property
    def labels(self) -> list[str]:
        return sorted(self.label_counts)


# --- Registered models, versions, variants ----------------------------------------


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private (team only)"
    INTERNAL = "internal", "Internal (whole organisation)"


class Lifecycle(models.TextChoices):
    """Deprecated and archived models and versions are hidden from search by
    default but stay resolvable by exact version (deploy tooling pins them)."""

    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"
    ARCHIVED = "archived", "Archived"


class RegisteredModel(models.Model):
    slug = models.SlugField(max_length=120, unique=True)
    name = models.CharField(max_length=200)
    summary = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="models")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.INTERNAL, db_index=True)
    modality = models.ForeignKey(Modality, on_delete=models.PROTECT, related_name="models")
    result_kind = models.ForeignKey(ResultKind, on_delete=models.PROTECT, related_name="models")
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="models")
    # Denormalised from the latest ready version so that search filters and
    # sorts hit one indexed table (kept current by services.versions).
    latest_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    framework = models.CharField(max_length=40, blank=True, db_index=True)
    precision = models.FloatField(null=True, blank=True, db_index=True)
    coverage = models.FloatField(null=True, blank=True)
    # Extra searchable text (labels, family, team, taxonomy names). On PostgreSQL
    # trigger-maintained side table (catalog_modelsearch) holds a weighted tsvector over
    # name/summary/this under a GIN index (migration 0002).
    search_document = models.TextField(blank=True)
    # Model card: Markdown (rendered sanitised, never as raw HTML) and the
    # facets read from its YAML front matter.
    card = models.TextField(blank=True)
    license = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    card_metadata = models.JSONField(default=dict, blank=True, help_text="front matter: datasets, language, …")
    lifecycle = models.CharField(max_length=12, choices=Lifecycle.choices, default=Lifecycle.ACTIVE, db_index=True)
    lifecycle_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["visibility", "team"], name="model_visibility_team")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("catalog:model_detail", args=[self.slug])


class VersionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    BELOW_GATE = "below_gate", "Below quality gate"
    FAILED = "failed", "Failed"


class ImmutableVersionError(Exception):
    pass


class ModelVersion(models.Model):
    IMMUTABLE_FIELDS = (
        "family",
        "framework",
        "weights_sha256",
        "weights_size",
        "files",
        "hyperparameters",
        "parameter_count",
        "input_schema",
        "output_schema",
        "labels",
        "base_version_id",
        "dataset_version_id",
        "intake",
    )

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    status = models.CharField(
        max_length=12, choices=VersionStatus.choices, default=VersionStatus.PENDING, db_index=True
    )
    description = models.TextField(blank=True)
    # Artifact
    family = models.CharField(max_length=60, help_text="Code behind fit()/predict()/export.")
    framework = models.CharField(max_length=40, default="pytorch")
    weights_sha256 = models.CharField(max_length=64, blank=True)
    weights_size = models.BigIntegerField(null=True, blank=True)
    files = models.JSONField(default=list, blank=True, help_text='[{"name", "sha256", "size"}] in the artifact store')
    hyperparameters = models.JSONField(default=dict, blank=True)
    parameter_count = models.BigIntegerField(null=True, blank=True)
    # Intake / Result schemas
    input_schema = models.JSONField(default=dict, blank=True)
    output_schema = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=list, blank=True)
    # Lineage
    base_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived_versions"
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions"
    )
    code_version = models.CharField(max_length=60, blank=True)
    # What registration read from the folder (config.json, safetensors headers,
    # tokenizer, card front matter): architectures, model_type, dtypes, …
    intake = models.JSONField(default=dict, blank=True)
    lifecycle = models.CharField(max_length=12, choices=Lifecycle.choices, default=Lifecycle.ACTIVE, db_index=True)
    lifecycle_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-version"]
        constraints = [models.UniqueConstraint(fields=["registered_model", "version"], name="version_number")]

    def __str__(self) -> str:
        return f"{self.registered_model.slug} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk:
            stored = type(self)._default_manager.filter(pk=self.pk).values("status", *self.IMMUTABLE_FIELDS).first()
            if stored and stored["status"] in (VersionStatus.READY, VersionStatus.BELOW_GATE):
                changed = [f for f in self.IMMUTABLE_FIELDS if stored[f] != getattr(self, f)]
                if changed:
                    raise ImmutableVersionError(
                        f"{self} is {stored['status']} and immutable; changed: {', '.join(changed)}"
                    )
        super().save(*args, **kwargs)

    def metric(self, name: str) -> float | None:
        """The version's own figure: its held-out split first (evaluations on a
        team's data add rows of the same name under other splits), else the
        oldest row of that name."""
        rows = sorted((m for m in self.metrics.all() if m.name == name), key=lambda m: (m.split != "holdout", m.pk))
        return rows[0].value if rows else None


class Metric(models.Model):
    """One measured figure of a version on a named evaluation dataset."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=60)
    value = models.FloatField()
    evaluation_dataset = models.CharField(max_length=200)
    evaluation_dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    split = models.CharField(max_length=40, default="holdout")
    sample_count = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["version", "name", "evaluation_dataset", "split"], name="metric_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value:.4f}"


class Alias(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.SlugField(max_length=40)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "aliases"
        constraints = [models.UniqueConstraint(fields=["registered_model", "name"], name="alias_unique")]

    def __str__(self) -> str:
        return f"{self.registered_model.slug}@{self.name}"

    def clean(self) -> None:
        if self.version_id and self.version.registered_model_id != self.registered_model_id:
            raise ValidationError({"version": "The version belongs to another model."})
        if self.name == "production" and self.version_id and self.version.status != VersionStatus.READY:
            raise ValidationError({"version": "Only a ready version can be aliased to production."})


class VariantStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SERVED = "served", "Served"
    REJECTED = "rejected", "Rejected by parity"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class Variant(models.Model):
    """A compiled form of a version: one immutable file (bundle) for a runtime."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=60, help_text="e.g. onnx-fp32, onnx-int8")
    format = models.CharField(max_length=30)
    precision = models.CharField(max_length=10)
    runtime = models.CharField(max_length=30)
    hardware = models.CharField(max_length=30, default="cpu")
    opset = models.PositiveSmallIntegerField(null=True, blank=True)
    toolchain = models.CharField(max_length=120, blank=True)
    status = models.CharField(max_length=10, choices=VariantStatus.choices, default=VariantStatus.PENDING)
    status_reason = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    parity = models.JSONField(default=dict, blank=True)
    latency = models.JSONField(default=dict, blank=True, help_text='{"1": {"p50_ms", "p95_ms"}, ...}')
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p95_ms = models.FloatField(null=True, blank=True)
    hardware_fingerprint = models.JSONField(default=dict, blank=True)
    download_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "name"]
        constraints = [models.UniqueConstraint(fields=["version", "name", "hardware"], name="variant_unique")]
        indexes = [
            models.Index(
                fields=["version", "status", "runtime", "precision", "hardware"],
                name="variant_resolve",
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} {self.name} ({self.hardware})"


class CatalogState(models.Model):
    """One row whose ``token`` changes on every catalogue write; processes that
    keep an in-memory facet index reload it when the token they hold is stale."""

    token = models.CharField(max_length=32)
    changed_at = models.DateTimeField(auto_now=True)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    EVALUATING = "evaluating", "Evaluating"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_JOB_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class FineTuneJob(models.Model):
    """Fine-tune ``base_version`` on ``dataset_version``; produces ``result_version``.

    States: queued → running → evaluating → succeeded | failed | cancelled.
    A worker claims the job with a conditional UPDATE and keeps ``heartbeat_at``
    fresh; a job whose heartbeat goes stale (its worker died) is claimed again.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="finetune_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    base_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="finetune_jobs")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="finetune_jobs")
    target_name = models.CharField(max_length=200, help_text="name of the new (or existing) registered model")
    target_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="finetune_jobs"
    )
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.INTERNAL)
    hyperparameters = models.JSONField(default=dict, blank=True)
    min_precision = models.FloatField(default=0.0, help_text="quality gate on macro precision")
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    phase = models.CharField(max_length=20, blank=True)
    progress = models.FloatField(default=0.0)
    loss_history = models.JSONField(default=list, blank=True, help_text="[[step, loss], ...]")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    celery_task_id = models.CharField(max_length=60, blank=True)
    cancel_requested = models.BooleanField(default=False)
    result_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="finetune_job"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"fine-tune job #{self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATES

    def get_absolute_url(self) -> str:
        return reverse("catalog:job_detail", args=[self.pk])


class AuditAction(models.TextChoices):
    MODEL_REGISTERED = "model.registered", "registered the model"
    VERSION_REGISTERED = "version.registered", "registered a version"
    ALIAS_SET = "alias.set", "promoted"
    ALIAS_REMOVED = "alias.removed", "demoted"
    LIFECYCLE_CHANGED = "lifecycle.changed", "changed the lifecycle"
    CARD_EDITED = "card.edited", "edited the card"
    DELETED = "deleted", "deleted"
    MEMBER_ADDED = "member.added", "added a member"
    MEMBER_ROLE_CHANGED = "member.role", "changed a member's role"
    MEMBER_REMOVED = "member.removed", "removed a member"


class AuditEvent(models.Model):
    """Who did what to which model, version or team, and when (append-only).

    Foreign keys are SET_NULL so that an event outlives what it is about;
    ``subject`` keeps a readable name of it.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=30, choices=AuditAction.choices, db_index=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.get_action_display()} {self.subject}"


class ApiToken(models.Model):
    """An API key stored as its sha256 only; the raw key is shown once.

    ``prefix`` (the key's first characters) narrows the lookup and lets a user
    tell their tokens apart; the digest is compared in constant time.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
