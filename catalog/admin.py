from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from catalog import models as m
from catalog.services.registry import registered_model_refresh


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(m.Team)
class TeamAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


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


class AuditEventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.AuditEvent
    fk_name = "registered_model"
    extra = 0
    can_delete = False
    fields = ["created_at", "actor_name", "action", "subject", "detail"]
    readonly_fields = ["created_at", "actor_name", "action", "subject", "detail"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "team", "visibility", "modality", "result_kind", "domain", "precision"]
    search_fields = ["name", "slug", "summary"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["latest_version", "framework", "precision", "coverage", "search_document"]
    autocomplete_fields = ["modality", "result_kind", "domain"]
    list_filter = ["visibility", "lifecycle", "team", "framework", "license"]
    inlines = [AliasInline, AuditEventInline]

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


@admin.register(m.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The audit log is append-only: readable here, never edited."""

    list_display = ["created_at", "actor_name", "action", "subject", "team"]
    list_filter = ["action", "team"]
    search_fields = ["subject", "actor_name"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in m.AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens are created by their owner (profile page, create_api_token);
    an administrator can only see and revoke them — the key is never stored."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "key_sha256", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        from django.utils import timezone

        queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
