"""Prometheus configuration, recording rules and alerts: promtool checks, promtool unit tests, and
the conventions every alert must follow (labels, annotations, runbook, tests)."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.bundle import bundle
from tests.support.binaries import require_binary

SEVERITIES = {"critical", "warning", "info"}
SERVICES = {"inference-server", "business", "model-quality", "gpu", "exporter", "anomaly", "monitoring"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.docker.yml"])
def test_promtool_check_config(config):
    res = promtool("check", "config", str(bundle.PROMETHEUS_DIR / config))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(bundle.rule_files())} rule files found" in res.stdout + res.stderr


def test_promtool_check_rules():
    res = promtool("check", "rules", *map(str, bundle.rule_files()))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_pass():
    res = promtool("test", "rules", *map(str, bundle.rule_test_files()))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") + res.stderr.count("SUCCESS") == len(bundle.rule_test_files())


def test_promtool_unit_tests_fail_on_a_wrong_expectation(tmp_path):
    """The harness is not vacuous: a test expecting the wrong severity fails."""
    src = bundle.RULE_TESTS_DIR / "monitoring.test.yml"
    doc = yaml.safe_load(src.read_text())
    doc["rule_files"] = [str(bundle.RULES_DIR / "monitoring.yml")]
    doc["tests"] = [doc["tests"][0]]
    doc["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"]["severity"] = "critical"
    path = tmp_path / "wrong.test.yml"
    path.write_text(yaml.safe_dump(doc))
    assert promtool("test", "rules", str(path)).returncode != 0


def test_local_and_docker_configs_differ_only_in_hostnames():
    local = bundle.load_yaml(bundle.PROMETHEUS_DIR / "prometheus.yml")
    docker = bundle.load_yaml(bundle.PROMETHEUS_DIR / "prometheus.docker.yml")
    hosts = {
        "inference-server:8000": "127.0.0.1:8000",
        "exporter:9400": "127.0.0.1:9400",
        "alertmanager:9093": "127.0.0.1:9093",
        "localhost:9090": "127.0.0.1:9090",
    }
    text = yaml.safe_dump(docker)
    for docker_host, local_host in hosts.items():
        text = text.replace(docker_host, local_host)
    assert yaml.safe_load(text) == local
    jobs = [job["job_name"] for job in local["scrape_configs"]]
    assert jobs == ["inference-server", "exporter", "prometheus", "alertmanager"]
    assert local["rule_files"] == ["rules/*.yml"]


def test_every_test_group_sets_interval():
    for path in bundle.rule_test_files():
        for group in bundle.load_yaml(path)["tests"]:
            assert "interval" in group, f"{path.name}: group {group.get('name')!r} has no interval"


def test_recording_rule_names_follow_level_metric_operation():
    pattern = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")
    for rule in bundle.recording_rules():
        assert pattern.match(rule.name), f"{rule.file.name}: {rule.name}"


@pytest.mark.parametrize("rule", bundle.alerts(), ids=lambda r: f"{r.name}-{r.body['labels']['severity']}")
def test_alert_has_labels_and_annotations(rule):
    labels, annotations = rule.body.get("labels", {}), rule.body.get("annotations", {})
    assert labels.get("severity") in SEVERITIES
    assert labels.get("service") in SERVICES
    # `dashboard` (optional): the Grafana uid notifications link when it is not the service's dashboard.
    assert {"summary", "description", "runbook_url"} <= set(annotations) <= {"summary", "description", "runbook_url",
                                                                            "dashboard"}
    assert annotations["runbook_url"] == f"{bundle.RUNBOOK_BASE_URL}{rule.name}.md"
    if rule.name != "Watchdog":
        # A description says what is wrong with numbers or names from the alert, not only prose.
        assert "$value" in annotations["description"] or "$labels" in annotations["description"]
    if labels.get("action") == "rollback":
        # The server's /v1/alerts webhook needs model and version on the alert.
        assert re.search(r"\bmodel\b", rule.body["expr"]) and "version" in rule.body["expr"]


def test_alert_names_and_severities_are_unique_per_rule():
    seen = set()
    for rule in bundle.alerts():
        key = (rule.name, rule.body["labels"]["severity"], rule.body["labels"].get("long_window"))
        assert key not in seen, key
        seen.add(key)


def _alert_cases() -> dict[str, dict[str, int]]:
    cases: dict[str, dict[str, int]] = {}
    for path in bundle.rule_test_files():
        for group in bundle.load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                counts = cases.setdefault(case["alertname"], {"fires": 0, "silent": 0})
                counts[kind] += 1
    return cases


def test_every_alert_is_unit_tested_firing_and_not_firing():
    cases = _alert_cases()
    for name in sorted(bundle.alert_names()):
        assert name in cases, f"{name} has no promtool test"
        if name != "Watchdog":  # always fires by design
            assert cases[name]["fires"] and cases[name]["silent"], f"{name}: {cases[name]}"
    assert set(cases) <= bundle.alert_names(), set(cases) - bundle.alert_names()


def test_every_fired_alert_case_checks_annotations():
    for path in bundle.rule_test_files():
        for group in bundle.load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    assert {"summary", "description", "runbook_url"} <= set(alert.get("exp_annotations", {})), (
                        path.name, group["name"], case["alertname"])


def test_every_severity_tier_of_an_alert_is_tested():
    fired = set()
    for path in bundle.rule_test_files():
        for group in bundle.load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    labels = alert["exp_labels"]
                    fired.add((case["alertname"], labels["severity"], labels.get("long_window")))
    for rule in bundle.alerts():
        key = (rule.name, rule.body["labels"]["severity"], rule.body["labels"].get("long_window"))
        assert key in fired, f"no test fires {key}"


def test_rules_only_use_metrics_of_the_contract():
    contract = bundle.contract_metric_names()
    for rule in bundle.all_rules():
        for name in bundle.source_metrics_in(rule.body["expr"]):
            assert bundle.base_metric(name, contract) in contract, f"{rule.name} uses {name}, not in docs/metrics.md"


def test_contract_parser_knows_the_shorthand_rows():
    contract = bundle.contract_metric_names()
    assert {"nvidia_gpu_memory_used_bytes", "anomaly_upper", "inference_requests_total"} <= contract
    assert bundle.base_metric("inference_request_duration_seconds_bucket", contract) == "inference_request_duration_seconds"
    assert bundle.source_metrics_in('sum(rate(inference_requests_total{endpoint="x"}[5m])) / job:inference_x:rate5m') == {
        "inference_requests_total"}
