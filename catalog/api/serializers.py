from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import Alias, JobStatus, ModelVersion, RegisteredModel, TaxonomyNode, Variant, VersionStatus


def node_dict(node: TaxonomyNode) -> dict[str, str]:
    return {"path": node.path, "label": node.label}


# --- shapes used only to describe responses (drf-spectacular components) --------------------


class NodeRefSerializer(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField(help_text="Slug path, e.g. `image/classification`.")
    label = serializers.CharField(help_text="Human path, e.g. `Image › Classification`.")  # type: ignore[assignment]


class MetricSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    value = serializers.FloatField()
    evaluation_dataset = serializers.CharField()
    split = serializers.CharField()
    samples = serializers.IntegerField(allow_null=True)


class LineageBaseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField(allow_null=True, help_text="null when the base is a model you cannot see")
    version = serializers.IntegerField(allow_null=True)
    private = serializers.BooleanField(help_text="the base is a private model of another team")


class LineageDatasetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(allow_null=True, help_text="null when the dataset belongs to another team")
    sha256 = serializers.CharField(allow_null=True)
    rows = serializers.IntegerField()


class LineageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    base = LineageBaseSerializer(allow_null=True)
    dataset_version = LineageDatasetSerializer(allow_null=True)


class LatestVersionSummarySerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField()
    family = serializers.CharField()
    framework = serializers.CharField()
    parameter_count = serializers.IntegerField(allow_null=True)
    metrics = serializers.DictField(child=serializers.FloatField(), help_text="metric name → value")


class TaxonomyTreeNodeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    path = serializers.CharField()
    name = serializers.CharField()
    count = serializers.IntegerField(help_text="Models in this node's subtree (0 in the taxonomy listing).")


# Recursive: a node's children are nodes (drf-spectacular emits a $ref to itself).
TaxonomyTreeNodeSerializer._declared_fields["children"] = TaxonomyTreeNodeSerializer(many=True)


class TeamFacetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    slug = serializers.CharField()
    name = serializers.CharField()
    count = serializers.IntegerField()


class ValueCountSerializer(serializers.Serializer):  # type: ignore[type-arg]
    value = serializers.CharField()
    count = serializers.IntegerField()


class FacetsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    modality = TaxonomyTreeNodeSerializer(many=True)
    result = TaxonomyTreeNodeSerializer(many=True)
    domain = TaxonomyTreeNodeSerializer(many=True)
    team = TeamFacetSerializer(many=True)
    license = ValueCountSerializer(many=True, help_text="licences from the model cards")
    tag = ValueCountSerializer(many=True, help_text="tags from the model cards")


class TaxonomySerializer(serializers.Serializer):  # type: ignore[type-arg]
    kind = serializers.CharField()
    nodes = TaxonomyTreeNodeSerializer(many=True)


class VariantSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Variant
        fields = [
            "id",
            "name",
            "format",
            "precision",
            "runtime",
            "hardware",
            "opset",
            "toolchain",
            "status",
            "status_reason",
            "sha256",
            "size",
            "parity",
            "latency",
            "latency_p50_ms",
            "latency_p95_ms",
            "hardware_fingerprint",
            "download_count",
        ]


class VersionSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    metrics = serializers.SerializerMethodField()
    variants = VariantSerializer(many=True, read_only=True)
    lineage = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "status",
            "family",
            "framework",
            "parameter_count",
            "weights_sha256",
            "weights_size",
            "files",
            "hyperparameters",
            "input_schema",
            "output_schema",
            "labels",
            "metrics",
            "variants",
            "lineage",
            "code_version",
            "lifecycle",
            "lifecycle_reason",
            "intake",
            "created_at",
        ]

    @extend_schema_field(MetricSerializer(many=True))
    def get_metrics(self, obj: ModelVersion) -> list[dict[str, Any]]:
        return [
            {
                "name": m.name,
                "value": m.value,
                "evaluation_dataset": m.evaluation_dataset,
                "split": m.split,
                "samples": m.sample_count,
            }
            for m in obj.metrics.all()
        ]

    @extend_schema_field(LineageSerializer)
    def get_lineage(self, obj: ModelVersion) -> dict[str, Any]:
        # The page's rule: a private base or another team's dataset is not named.
        from catalog.selectors.lineage import lineage_summary

        request = self.context.get("request")
        return lineage_summary(version=obj, user=getattr(request, "user", None))


def latest_summary(model: RegisteredModel) -> dict[str, Any] | None:
    v = model.latest_version
    if v is None:
        return None
    return {
        "version": v.version,
        "family": v.family,
        "framework": v.framework,
        "parameter_count": v.parameter_count,
        "metrics": {m.name: m.value for m in v.metrics.all()},
    }


class ModelSummarySerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    team: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    modality = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    domain = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = [
            "slug",
            "name",
            "summary",
            "team",
            "visibility",
            "modality",
            "result",
            "domain",
            "framework",
            "precision",
            "coverage",
            "latest_version",
            "url",
            "created_at",
        ]

    @extend_schema_field(NodeRefSerializer)
    def get_modality(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.modality)

    @extend_schema_field(NodeRefSerializer)
    def get_result(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.result_kind)

    @extend_schema_field(NodeRefSerializer)
    def get_domain(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.domain)

    @extend_schema_field(LatestVersionSummarySerializer(allow_null=True))
    def get_latest_version(self, obj: RegisteredModel) -> dict[str, Any] | None:
        return latest_summary(obj)

    @extend_schema_field(serializers.URLField(help_text="This model's API URL."))
    def get_url(self, obj: RegisteredModel) -> str:
        request = self.context.get("request")
        path = f"/api/v1/models/{obj.slug}/"
        return request.build_absolute_uri(path) if request else path


class ModelDetailSerializer(ModelSummarySerializer):
    versions = VersionSerializer(many=True, read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta(ModelSummarySerializer.Meta):
        fields = [
            *ModelSummarySerializer.Meta.fields,
            "description",
            "lifecycle",
            "lifecycle_reason",
            "license",
            "tags",
            "card",
            "versions",
            "aliases",
        ]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField(), help_text="alias → version number"))
    def get_aliases(self, obj: RegisteredModel) -> dict[str, int]:
        aliases: list[Alias] = list(obj.aliases.all())
        return {a.name: a.version.version for a in aliases}


class ModelListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    count = serializers.IntegerField(help_text="Models matching the query, over all pages.")
    page = serializers.IntegerField()
    pages = serializers.IntegerField(help_text="The last page (1 when nothing matches).")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ModelSummarySerializer(many=True)
    facets = FacetsSerializer(
        help_text="Each tree's nodes that hold matching models (counts rolled up to parents), and teams."
    )


# --- deploy ----------------------------------------------------------------------------------


class ExcludedVariantSerializer(serializers.Serializer):  # type: ignore[type-arg]
    variant = serializers.CharField()
    constraint = serializers.CharField(
        help_text="`status`, `runtime`, `precision`, `hardware`, `format` or `max_p95_ms`"
    )
    reason = serializers.CharField()


class ResolvedVariantSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    name = serializers.CharField()
    model = serializers.CharField(help_text="The model's slug.")
    version = serializers.IntegerField()
    format = serializers.CharField()
    precision = serializers.CharField()
    runtime = serializers.CharField()
    hardware = serializers.CharField()
    opset = serializers.IntegerField(allow_null=True)
    toolchain = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField(allow_null=True)
    parity = serializers.JSONField()
    latency = serializers.JSONField()
    latency_p50_ms = serializers.FloatField(allow_null=True)
    latency_p95_ms = serializers.FloatField(allow_null=True)
    hardware_fingerprint = serializers.JSONField()
    download_url = serializers.URLField()
    excluded = ExcludedVariantSerializer(many=True, help_text="Variants of the version passed over, and why.")


class CompileQueuedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField()
    queued = serializers.BooleanField()
    variants = serializers.ListField(child=serializers.CharField())


# --- datasets and fine-tune jobs ---------------------------------------------------------------


class DatasetSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(help_text="Dataset version id (give it to `POST /finetune-jobs/`).")
    dataset = serializers.CharField()
    sha256 = serializers.CharField()
    rows = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    label_counts = serializers.DictField(child=serializers.IntegerField())
    duplicates_dropped = serializers.IntegerField()
    created = serializers.BooleanField(help_text="False when the same file was uploaded before (answered with 200).")


class JobCreatedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    url = serializers.URLField(help_text="The job's absolute API URL.")


class JobResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=VersionStatus.choices)


class JobBaselineSerializer(serializers.Serializer):  # type: ignore[type-arg]
    method = serializers.CharField()
    C = serializers.FloatField(help_text="Inverse regularisation, picked on the inner validation split.")
    accuracy = serializers.FloatField()
    macro_precision = serializers.FloatField()
    macro_recall = serializers.FloatField()
    macro_f1 = serializers.FloatField()
    coverage = serializers.FloatField()
    precision_at_coverage = serializers.FloatField()
    validation_macro_f1_by_C = serializers.DictField(  # noqa: N815 - the recorded key
        child=serializers.FloatField(), help_text="Inner-validation macro F1 of each C tried."
    )


class JobComparisonSerializer(serializers.Serializer):  # type: ignore[type-arg]
    macro_precision_points = serializers.FloatField(help_text="New model minus baseline, percentage points.")
    macro_f1_points = serializers.FloatField()
    beats_baseline = serializers.BooleanField()


class TrialBaselineCheckSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The kept trial's best fine-tuned epoch weighed against epoch 0 (the
    warmed-up head on the frozen encoder) on the same inner validation rows."""

    epoch_0_macro_f1 = serializers.FloatField(help_text="Epoch 0: the head alone on the frozen encoder.")
    fine_tune_macro_f1 = serializers.FloatField(help_text="The best fine-tuned epoch.")
    rows_only_baseline_right = serializers.IntegerField(help_text="Validation rows only epoch 0 gets right.")
    rows_only_fine_tune_right = serializers.IntegerField(help_text="Validation rows only the fine-tune gets right.")
    sign_test_p_value = serializers.FloatField(
        help_text="One-sided sign test of epoch 0 being better, on the rows only one of them gets right."
    )
    baseline_kept = serializers.BooleanField(
        help_text="True when epoch 0 scored higher: the frozen encoder and its head were kept."
    )


class JobTrialSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    hyperparameters = serializers.DictField(child=serializers.JSONField())
    validation_macro_f1 = serializers.FloatField(help_text="Best inner-validation macro F1 (epoch 0: head only).")
    best_epoch = serializers.IntegerField()
    epochs_run = serializers.IntegerField()
    stopped_by = serializers.CharField()
    validation_history = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), help_text="[[epoch, macro F1], …]"
    )
    loss_history = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), help_text="[[step, loss], …]"
    )
    seconds = serializers.FloatField()
    chosen = serializers.BooleanField()
    epochs_planned = serializers.IntegerField(
        allow_null=True,
        help_text="Epochs the trial planned once its first epoch was timed against the time budget "
        "(null for jobs recorded before it was kept).",
    )
    baseline_check = TrialBaselineCheckSerializer(
        allow_null=True, help_text="The kept trial only (null on the others, and when no epoch ran)."
    )
    best_fine_tuned_epoch = serializers.IntegerField(
        allow_null=True,
        help_text="When epoch 0 was kept (`baseline_check.baseline_kept`): the fine-tuned epoch it beat "
        "(`best_epoch` is then 0); else null.",
    )
    rate_epochs = serializers.FloatField(
        allow_null=True,
        help_text="The learning done by the chosen epoch, in epochs at the peak learning rate; the refit "
        "(`hyperparameters.refit_epochs`) is as long as its own schedule needs to match it (null for older jobs).",
    )
    threads = serializers.ListField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text="CPU threads of each epoch, timed again before it (0 on a GPU; null for older jobs).",
    )
    refit_threads = serializers.ListField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text="CPU threads of each refit epoch (empty without a refit; null for older jobs and other trials).",
    )


class JobSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    url = serializers.URLField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    phase = serializers.CharField()
    progress = serializers.FloatField()
    attempts = serializers.IntegerField()
    base = serializers.CharField(help_text="`slug@version` of the base model.")
    dataset = serializers.IntegerField()
    hyperparameters = serializers.DictField(child=serializers.JSONField())
    min_precision = serializers.FloatField()
    metrics = serializers.DictField(child=serializers.JSONField())
    recipe = serializers.CharField(help_text="`default`, `auto` or `manual` (see the request's hyperparameters).")
    baseline = JobBaselineSerializer(
        allow_null=True,
        help_text="Logistic regression on the frozen encoder's mean-pooled embeddings, scored on the same "
        "held-out split; null until the job ends.",
    )
    comparison = JobComparisonSerializer(allow_null=True, help_text="The new model vs the baseline.")
    trials = JobTrialSerializer(many=True, help_text="Every recipe tried (`auto`: 2-3; `default`: one).")
    inner_validation_rows = serializers.IntegerField(
        help_text="Rows of the inner validation split (carved from the training part) the trials were "
        "picked on; 0 for a manual job or before the job ends."
    )
    error = serializers.CharField()
    result = JobResultSerializer(allow_null=True)
    loss_history = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), help_text="[[step, loss], …]"
    )
    log = serializers.CharField(help_text="The last `log_lines` lines of the job's log.")
    log_total_lines = serializers.IntegerField(help_text="Lines in the whole log.")
    log_truncated = serializers.BooleanField(help_text="True when `log` holds only the tail.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
