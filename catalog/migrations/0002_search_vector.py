"""PostgreSQL full-text search: a narrow side table holding each model's
weighted tsvector (name A, summary B, search document C) under a GIN index,
kept current by triggers — so bulk inserts are indexed too, and a text query
reads a few densely packed pages instead of the wide model rows.

Other databases (SQLite) use the portable fallback in
``catalog.selectors.search`` and skip this migration's SQL.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

FORWARD = """
CREATE TABLE catalog_modelsearch (
    model_id bigint PRIMARY KEY,
    document tsvector NOT NULL
);
CREATE INDEX catalog_modelsearch_gin ON catalog_modelsearch USING gin (document);

CREATE FUNCTION catalog_modelsearch_upsert() RETURNS trigger AS $$
BEGIN
    INSERT INTO catalog_modelsearch (model_id, document) VALUES (
        NEW.id,
        setweight(to_tsvector('english', coalesce(NEW.name, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(NEW.summary, '')), 'B') ||
        setweight(to_tsvector('english', coalesce(NEW.search_document, '')), 'C'))
    ON CONFLICT (model_id) DO UPDATE SET document = EXCLUDED.document;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION catalog_modelsearch_delete() RETURNS trigger AS $$
BEGIN
    DELETE FROM catalog_modelsearch WHERE model_id = OLD.id;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE FUNCTION catalog_modelsearch_truncate() RETURNS trigger AS $$
BEGIN
    TRUNCATE catalog_modelsearch;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_modelsearch_upsert
    AFTER INSERT OR UPDATE OF name, summary, search_document ON catalog_registeredmodel
    FOR EACH ROW EXECUTE FUNCTION catalog_modelsearch_upsert();
CREATE TRIGGER catalog_modelsearch_delete
    AFTER DELETE ON catalog_registeredmodel
    FOR EACH ROW EXECUTE FUNCTION catalog_modelsearch_delete();
CREATE TRIGGER catalog_modelsearch_truncate
    AFTER TRUNCATE ON catalog_registeredmodel
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_modelsearch_truncate();

INSERT INTO catalog_modelsearch (model_id, document)
SELECT id,
    setweight(to_tsvector('english', coalesce(name, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(summary, '')), 'B') ||
    setweight(to_tsvector('english', coalesce(search_document, '')), 'C')
FROM catalog_registeredmodel;
"""
BACKWARD = """
DROP TRIGGER IF EXISTS catalog_modelsearch_upsert ON catalog_registeredmodel;
DROP TRIGGER IF EXISTS catalog_modelsearch_delete ON catalog_registeredmodel;
DROP TRIGGER IF EXISTS catalog_modelsearch_truncate ON catalog_registeredmodel;
DROP FUNCTION IF EXISTS catalog_modelsearch_upsert();
DROP FUNCTION IF EXISTS catalog_modelsearch_delete();
DROP FUNCTION IF EXISTS catalog_modelsearch_truncate();
DROP TABLE IF EXISTS catalog_modelsearch;
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
