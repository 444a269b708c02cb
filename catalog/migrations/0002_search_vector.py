"""PostgreSQL full-text search: a stored generated tsvector column with a GIN
index. Other databases (SQLite) use the portable fallback in
``catalog.selectors.search`` and skip this migration's SQL."""

from __future__ import annotations

from typing import Any

from django.db import migrations

FORWARD = """
ALTER TABLE catalog_registeredmodel ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(name, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(summary, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(search_document, '')), 'C')
    ) STORED;
CREATE INDEX catalog_registeredmodel_search_gin
    ON catalog_registeredmodel USING gin (search_vector);
"""
BACKWARD = """
DROP INDEX IF EXISTS catalog_registeredmodel_search_gin;
ALTER TABLE catalog_registeredmodel DROP COLUMN IF EXISTS search_vector;
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
