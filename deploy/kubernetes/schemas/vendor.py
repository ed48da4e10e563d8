#!/usr/bin/env python3
"""Re-create the vendored CRD schemas of this folder (run by hand when the Operator version changes).

The JSON schemas come from `cloudcoil-models-prometheus-operator` (PyPI), whose pydantic models are
generated from the prometheus-operator CRDs' openAPIV3Schema. This script exports them with
`model_json_schema(by_alias=True)` and makes them strict the way `kubectl apply --validate=strict`
is: `additionalProperties: false` on every object with declared properties (a misspelt field fails
instead of being pruned). Go-only regex syntax (a `(?i)` flag in mid-pattern) is moved to the front.

    pip install --target /tmp/cc 'cloudcoil-models-prometheus-operator==0.80.1.0'
    PYTHONPATH=/tmp/cc python deploy/kubernetes/schemas/vendor.py
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent
KINDS = {("v1", "ServiceMonitor"), ("v1", "PodMonitor"), ("v1", "PrometheusRule"), ("v1alpha1", "AlertmanagerConfig")}
DROP = ("title", "default", "description")


def strict(node):
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if k not in DROP and k != "properties"}
    if "properties" in node:
        out["properties"] = {k: strict(v) for k, v in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    pattern = out.get("pattern")
    if isinstance(pattern, str) and "(?i)" in pattern and not pattern.startswith("(?i)"):
        out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
    return out


def main() -> None:
    from importlib import import_module, metadata

    version = metadata.version("cloudcoil-models-prometheus-operator")
    for api_version, kind in sorted(KINDS):
        model = getattr(import_module(f"cloudcoil.models.prometheus_operator.{api_version}"), kind)
        schema = strict(model.model_json_schema(by_alias=True))
        schema["$comment"] = (f"monitoring.coreos.com/{api_version} {kind}: from cloudcoil-models-prometheus-operator "
                              f"{version} by deploy/kubernetes/schemas/vendor.py; do not edit")
        path = OUT / f"{kind.lower()}-monitoring.coreos.com-{api_version}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
