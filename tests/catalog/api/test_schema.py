"""The OpenAPI schema: valid, no drf-spectacular warning, and it describes what the API answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``manage.py spectacular --validate --fail-on-warn`` in a subprocess (as CI would run it)."""
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(out.read_text())
    return loaded


def test_one_operation_per_route(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert "/api/v1/models/{slug}/resolve" in paths
    assert "/api/v1/models/{slug}/resolve/" not in paths
    assert "/api/v1/variants/{variant_id}/download" in paths
    ids = [op["operationId"] for ops in paths.values() for op in ops.values() if isinstance(op, dict)]
    assert len(ids) == len(set(ids))


def test_the_model_list_is_a_paginated_object(schema: dict[str, Any]) -> None:
    ok = schema["paths"]["/api/v1/models/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
    assert component["type"] == "object"
    assert {"count", "page", "pages", "next", "previous", "results", "facets"} <= set(component["required"])


def test_every_response_is_typed_and_errors_share_one_shape(schema: dict[str, Any]) -> None:
    error_shapes = {"Error", "ValidationError", "DatasetInvalid", "NoVariant"}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, response in op["responses"].items():
                where = f"{method.upper()} {path} {status}"
                for media, body in response.get("content", {}).items():
                    assert body.get("schema"), f"{where}: untyped {media} response"
                    assert body["schema"] != {"type": "object", "additionalProperties": {}}, f"{where}: untyped"
                    if int(status) >= 400 and path.startswith("/api/v1/") and "hub" not in path:
                        ref = body["schema"].get("$ref", "")
                        assert ref.rsplit("/", 1)[-1] in error_shapes, f"{where}: error body {body['schema']}"


def test_enums_are_named_and_security_schemes_declared(schema: dict[str, Any]) -> None:
    names = set(schema["components"]["schemas"])
    assert {"VisibilityEnum", "VariantStatusEnum", "VersionStatusEnum", "JobStatusEnum"} <= names
    assert not [n for n in names if n.endswith("Enum") and any(c.isdigit() for c in n)]
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    anonymous_read = schema["paths"]["/api/v1/models/"]["get"]["security"]
    assert {} in anonymous_read
    jobs = schema["paths"]["/api/v1/finetune-jobs/"]["post"]["security"]
    assert {} not in jobs


def test_the_download_documents_ranges_and_redirects(schema: dict[str, Any]) -> None:
    op = schema["paths"]["/api/v1/variants/{variant_id}/download"]["get"]
    assert {"200", "206", "302", "304", "404", "409", "410", "416"} <= set(op["responses"])
    assert "application/x-tar" in op["responses"]["206"]["content"]
    assert "Content-Range" in op["responses"]["206"]["headers"]
    assert "Location" in op["responses"]["302"]["headers"]
    assert {p["name"] for p in op["parameters"] if p["in"] == "header"} >= {"Range", "If-Range", "If-None-Match"}
