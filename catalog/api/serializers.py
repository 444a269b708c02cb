from __future__ import annotations

from typing import Any

from rest_framework import serializers

from catalog.models import Alias, ModelVersion, RegisteredModel, TaxonomyNode, Variant


def node_dict(node: TaxonomyNode) -> dict[str, str]:
    return {"path": node.path, "label": node.label}


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
            "created_at",
        ]

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

    def get_lineage(self, obj: ModelVersion) -> dict[str, Any]:
        base = obj.base_version
        return {
            "base": {"model": base.registered_model.slug, "version": base.version} if base else None,
            "dataset_version": (
                {"id": obj.dataset_version_id, "sha256": obj.dataset_version.sha256} if obj.dataset_version else None
            ),
        }


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

    def get_modality(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.modality)

    def get_result(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.result_kind)

    def get_domain(self, obj: RegisteredModel) -> dict[str, str]:
        return node_dict(obj.domain)

    def get_latest_version(self, obj: RegisteredModel) -> dict[str, Any] | None:
        return latest_summary(obj)

    def get_url(self, obj: RegisteredModel) -> str:
        request = self.context.get("request")
        path = f"/api/v1/models/{obj.slug}/"
        return request.build_absolute_uri(path) if request else path


class ModelDetailSerializer(ModelSummarySerializer):
    versions = VersionSerializer(many=True, read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta(ModelSummarySerializer.Meta):
        fields = [*ModelSummarySerializer.Meta.fields, "description", "versions", "aliases"]

    def get_aliases(self, obj: RegisteredModel) -> dict[str, int]:
        aliases: list[Alias] = list(obj.aliases.all())
        return {a.name: a.version.version for a in aliases}
