"""Validate JSON against a component schema of a vendor's OpenAPI 3.0 description in ../shared/specs."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"


def _nullable_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` means ``type: [T, "null"]`` in JSON Schema."""
    if isinstance(node, dict):
        node = {k: _nullable_to_jsonschema(v) for k, v in node.items()}
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_nullable_to_jsonschema(v) for v in node]
    return node


@cache
def load(name: str) -> dict[str, Any]:
    path = SPECS / name
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/specs is absent in a user's clone)")
    if path.suffix == ".json":
        spec = json.loads(path.read_text())
    else:
        import yaml

        spec = yaml.safe_load(path.read_text())
    return _nullable_to_jsonschema(copy.deepcopy(spec))  # type: ignore[no-any-return]


def validate(spec_name: str, schema: str, instance: Any) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = load(spec_name)
    registry = Registry().with_resource(
        "urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    validator = Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{schema}"}, registry=registry)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
