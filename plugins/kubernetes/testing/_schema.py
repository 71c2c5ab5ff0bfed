"""Strict validation against the official Kubernetes JSON schemas that ``kubernetes-validate``
ships, with each (version, kind) validator built once (the package re-reads the multi-megabyte
definitions file on every call)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any


@functools.cache
def _definitions(schema_dir: str, version: str) -> Any:
    from kubernetes_validate.utils import schema_contents

    return schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)


@functools.cache
def validator(version: str, kind: str, api_version: str) -> Any:
    """The strict validator of ``kind`` in ``api_version`` for Kubernetes ``version`` (e.g.
    ``"1.33"``: the newest shipped schema not newer than it)."""
    import jsonschema
    from kubernetes_validate.utils import all_versions, major_minor, schema_contents
    from referencing import Registry, Resource

    chosen = [v for v in all_versions() if major_minor(v) <= major_minor(version)][-1]
    schema_dir = f"v{chosen}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group}.json",
                             version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_definitions(schema_dir, version)) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate(obj: Mapping[str, Any], version: str) -> None:
    """Raise ``jsonschema.ValidationError`` (``.path``, ``.message``) if ``obj`` is invalid."""
    validator(version, obj["kind"], obj["apiVersion"]).validate(dict(obj))


__all__ = ["validate", "validator"]
