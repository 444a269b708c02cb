"""drf-spectacular post-processing: what the serializers cannot say by themselves."""

from __future__ import annotations

from typing import Any

# DRF's CharField refuses NUL characters (ProhibitNullCharactersValidator); say so.
NO_NUL = "^[^\\x00]*$"
# Request bodies that refuse names they do not know.
CLOSED_OBJECTS = ("HyperparametersRequest",)


def _forbid_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and not ({"pattern", "enum", "format"} & set(schema)):
        schema["pattern"] = NO_NUL


def request_constraints_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Strings sent to the API (parameters, request bodies) carry no NUL; closed
    request objects declare ``additionalProperties: false``."""
    for ops in result.get("paths", {}).values():
        for op in ops.values():
            for parameter in op.get("parameters", []) if isinstance(op, dict) else []:
                _forbid_nul(parameter.get("schema", {}))
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if not name.endswith("Request"):
            continue
        for prop in component.get("properties", {}).values():
            _forbid_nul(prop)
            if prop.get("type") == "array":
                _forbid_nul(prop.get("items", {}))
        if name in CLOSED_OBJECTS:
            component["additionalProperties"] = False
    return result
