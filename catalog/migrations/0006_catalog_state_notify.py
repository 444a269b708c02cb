"""PostgreSQL: announce catalogue changes to every web process.

A new generation token (``CatalogState``) and a bumped download counter each
send a notification (``catalog_state`` with the token, ``catalog_downloads``
with the variant id), delivered when the writing transaction commits. Web
processes listen (``catalog.selectors.live_state``) and so know the current
token without reading it on every request. Other databases skip this
migration's SQL (they read the token on each request, as before).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

FORWARD = """
CREATE FUNCTION catalog_state_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('catalog_state', NEW.token);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_state_notify
    AFTER INSERT OR UPDATE OF token ON catalog_catalogstate
    FOR EACH ROW EXECUTE FUNCTION catalog_state_notify();

CREATE FUNCTION catalog_downloads_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('catalog_downloads', NEW.id::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_downloads_notify
    AFTER UPDATE OF download_count ON catalog_variant
    FOR EACH ROW EXECUTE FUNCTION catalog_downloads_notify();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS catalog_state_notify ON catalog_catalogstate;
DROP FUNCTION IF EXISTS catalog_state_notify();
DROP TRIGGER IF EXISTS catalog_downloads_notify ON catalog_variant;
DROP FUNCTION IF EXISTS catalog_downloads_notify();
"""


def forward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backward(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0005_registration_roles_tokens")]

    operations = [migrations.RunPython(forward, backward)]
