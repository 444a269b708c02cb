from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from catalog import models as m
from catalog.services.registry import registered_model_refresh


@admin.register(m.Team)
class TeamAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["members"]


class TaxonomyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["indented_name", "path", "model_count"]
    search_fields = ["name", "path"]
    readonly_fields = ["path", "depth"]
    ordering = ["path"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="name", ordering="path")
    def indented_name(self, obj: m.TaxonomyNode) -> str:
        return "\u2003" * obj.depth + obj.name

    @admin.display(description="models here")
    def model_count(self, obj: m.TaxonomyNode) -> int:
        return obj.models.count()  # type: ignore[attr-defined]


admin.site.register(m.Modality, TaxonomyAdmin)
admin.site.register(m.ResultKind, TaxonomyAdmin)
admin.site.register(m.Domain, TaxonomyAdmin)


class MetricInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.Metric
    extra = 0


class VariantInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.Variant
    extra = 0
    fields = ["name", "format", "precision", "runtime", "hardware", "status", "latency_p95_ms", "size"]
    readonly_fields = ["name", "format", "precision", "runtime", "hardware", "status", "latency_p95_ms", "size"]


class AliasInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.Alias
    extra = 0


@admin.register(m.RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "team", "visibility", "modality", "result_kind", "domain", "precision"]
    list_filter = ["visibility", "team", "framework"]
    search_fields = ["name", "slug", "summary"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["latest_version", "framework", "precision", "coverage", "search_document"]
    autocomplete_fields = ["modality", "result_kind", "domain"]
    inlines = [AliasInline]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        registered_model_refresh(model=obj)


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["__str__", "status", "family", "framework", "parameter_count", "created_at"]
    list_filter = ["status", "family", "framework"]
    search_fields = ["registered_model__name", "registered_model__slug"]
    inlines = [MetricInline, VariantInline]
    raw_id_fields = ["registered_model", "base_version", "dataset_version"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A ready version is immutable: only its description stays editable.
        if obj is not None and obj.status in (m.VersionStatus.READY, m.VersionStatus.BELOW_GATE):
            return [f.name for f in obj._meta.fields if f.name != "description"]
        return []


@admin.register(m.Variant)
class VariantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "__str__",
        "format",
        "precision",
        "runtime",
        "hardware",
        "status",
        "latency_p95_ms",
        "download_count",
    ]
    list_filter = ["status", "format", "precision", "runtime", "hardware"]
    raw_id_fields = ["version"]


@admin.register(m.Dataset)
class DatasetAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "team", "domain", "created_at"]


@admin.register(m.DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["__str__", "rows", "format", "created_at"]
    readonly_fields = [f.name for f in m.DatasetVersion._meta.fields]
