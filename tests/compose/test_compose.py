"""docker-compose.yml is valid (Debian's docker-compose validates it) and self-consistent: every bind
mount, build context, Dockerfile COPY source and config file it names exists in the repo, images are
pinned, every service has a healthcheck, secrets are files, and GPU access lives in the `gpu` profile."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.processes import REPO_ROOT
from tests.support.binaries import require_binary

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV = {"GRAFANA_ADMIN_PASSWORD": "test-only-password"}


def compose_config(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    binary = require_binary("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in ("GRAFANA_ADMIN_PASSWORD", "COMPOSE_PROFILES")}
    env.update(env_extra)
    return subprocess.run([binary, "-f", str(COMPOSE), "config", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def resolved() -> dict:
    proc = compose_config(ENV)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_grafana_password_has_no_default():
    proc = compose_config({})
    assert proc.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in proc.stderr
    raw_text = COMPOSE.read_text()
    assert "admin/admin" not in raw_text and "GF_SECURITY_ADMIN_PASSWORD: admin" not in raw_text


def test_expected_services(resolved):
    assert {"inference-server", "inference-server-gpu", "exporter", "exporter-gpu", "loadgen", "prometheus",
            "alertmanager", "grafana", "mailpit", "alert-sinks"} <= set(resolved["services"])


def test_bind_mounts_and_build_contexts_exist(resolved):
    for name, svc in resolved["services"].items():
        for vol in svc.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            vtype = vol.get("type") if isinstance(vol, dict) else ("bind" if source.startswith(("/", ".")) else "volume")
            if vtype == "bind":
                path = Path(source)
                assert path.exists(), f"{name}: bind mount {source} does not exist"
                assert path.resolve().is_relative_to(REPO_ROOT), f"{name}: {source} is outside the repo"
            else:
                assert source in resolved.get("volumes", {}), f"{name}: volume {source} not declared"
        if "build" in svc:
            context = Path(svc["build"]["context"])
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file()


def test_named_volumes_for_tsdb_and_grafana(resolved):
    mounts = {name: {(v["source"] if isinstance(v, dict) else v.split(":")[0]): (v["target"] if isinstance(v, dict) else v.split(":")[1])
                     for v in svc.get("volumes", [])} for name, svc in resolved["services"].items()}
    assert mounts["prometheus"].get("prometheus-data") == "/prometheus"
    assert mounts["grafana"].get("grafana-data") == "/var/lib/grafana"
    assert mounts["alertmanager"].get("alertmanager-data") == "/alertmanager"


def test_images_pinned(resolved):
    for name, svc in resolved["services"].items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag and tag and tag != "latest", f"{name}: image {image} is not pinned"
    assert resolved["services"]["prometheus"]["image"].startswith("prom/prometheus:v2.")
    am_minor = int(re.match(r"prom/alertmanager:v0\.(\d+)\.", resolved["services"]["alertmanager"]["image"]).group(1))
    assert am_minor >= 25


def test_every_service_has_a_healthcheck(resolved):
    for name, svc in resolved["services"].items():
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"


def test_profiles_cpu_default_gpu_reserved(raw, resolved):
    services = resolved["services"]
    for name in ("inference-server", "exporter"):
        assert services[name].get("profiles") == ["cpu"]
        gpu = services[f"{name}-gpu"]
        assert gpu.get("profiles") == ["gpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert name in gpu["networks"]["default"]["aliases"], "GPU variant must answer to the same hostname"
        assert "deploy" not in services[name]
    for name in ("loadgen", "prometheus", "alertmanager", "grafana", "mailpit", "alert-sinks"):
        assert not services[name].get("profiles"), f"{name} must run in every profile"
    env_file = (REPO_ROOT / ".env").read_text()
    assert re.search(r"^COMPOSE_PROFILES=cpu$", env_file, re.M)


def test_secrets_are_files_under_secrets_dir_and_documented(resolved):
    readme = (REPO_ROOT / "secrets" / "README.md").read_text()
    declared = resolved["secrets"]
    assert set(declared) == {"admin_token", "alerts_token", "feedback_token", "slack_webhook_url", "smtp_password"}
    for name, spec in declared.items():
        assert Path(spec["file"]).resolve() == (REPO_ROOT / "secrets" / name).resolve()
        assert f"`{name}`" in readme
    gitignore = (REPO_ROOT / ".gitignore").read_text()
    assert "secrets/*" in gitignore and "!secrets/README.md" in gitignore


def test_secret_paths_in_configs_are_mounted(resolved):
    """Every /run/secrets/<name> a service's config or command uses is mounted into that service."""
    def mounted(svc):
        return {s["source"] if isinstance(s, dict) else s for s in svc.get("secrets", [])}

    am_cfg = (REPO_ROOT / "alertmanager" / "alertmanager.docker.yml").read_text()
    needed = set(re.findall(r"/run/secrets/([A-Za-z0-9_]+)", am_cfg))
    assert needed and needed <= mounted(resolved["services"]["alertmanager"])
    for name, svc in resolved["services"].items():
        text = yaml.safe_dump({"command": svc.get("command"), "environment": svc.get("environment")})
        for secret in re.findall(r"/run/secrets/([A-Za-z0-9_]+)", text):
            assert secret in mounted(svc), f"{name} uses /run/secrets/{secret} without mounting it"


def test_config_files_named_in_commands_exist(resolved):
    mounts = {"prometheus": ("/etc/prometheus", REPO_ROOT / "prometheus"),
              "alertmanager": ("/etc/alertmanager", REPO_ROOT / "alertmanager")}
    for name, (container_dir, repo_dir) in mounts.items():
        flags = [a for a in resolved["services"][name]["command"] if a.startswith("--config.file=")]
        assert flags, f"{name} has no --config.file"
        path = flags[0].split("=", 1)[1]
        assert path.startswith(container_dir + "/")
        assert (repo_dir / path[len(container_dir) + 1:]).is_file(), path
    for name in ("inference-server", "exporter", "loadgen"):
        cmd = resolved["services"][name]["command"]
        if "--config" in cmd:
            assert (REPO_ROOT / cmd[cmd.index("--config") + 1]).is_file()
    # Grafana: provisioning's dashboard provider path is where compose mounts the dashboards.
    providers = yaml.safe_load((REPO_ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    paths = {p["options"]["path"] for p in providers["providers"]}
    targets = {(v["target"] if isinstance(v, dict) else v.split(":")[1]) for v in resolved["services"]["grafana"]["volumes"]}
    assert paths <= targets


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_copy_existing_paths_and_pin_torch(dockerfile):
    text = (REPO_ROOT / dockerfile).read_text()
    assert "torch==2.13.0" in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert (REPO_ROOT / src).exists(), f"{dockerfile}: COPY {src} does not exist"
        if line.startswith("FROM ") and "${" not in line:
            assert ":" in line and ":latest" not in line
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    for base in args.values():
        if "/" in base:
            assert ":" in base and not base.endswith(":latest")
    ignore = (REPO_ROOT / ".dockerignore").read_text().split()
    assert "secrets" in ignore and ".venv" in ignore


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_copy_every_packaged_python_package(dockerfile):
    """The image installs the project with pip, so every package pyproject ships must be copied in."""
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns}
    copied = set()
    for line in (REPO_ROOT / dockerfile).read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(src.rstrip("/") for src in line.split()[1:-1])
    assert packages <= copied, f"{dockerfile} does not COPY {sorted(packages - copied)}"


# ---- what the compose test (test_compose_up.py) relies on, checked without Docker ---------------------

@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_build_anywhere_without_baking_secrets(dockerfile):
    text = (REPO_ROOT / dockerfile).read_text()
    # A `# syntax=` line makes BuildKit pull the frontend image from Docker Hub: offline builds fail.
    assert not re.search(r"^#\s*syntax=", text, re.M)
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", text, re.M))
    assert {"BASE_IMAGE", "WHEELS_IMAGE", "TORCH_INDEX_URL"} <= set(args)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    # The wheel index is only ever the build argument, never a hard-coded --index-url.
    assert "--index-url https://" not in text and "--extra-index-url" not in text
    # CA bundles and pip config only through secret mounts, never COPY/ADD or ENV.
    for line in text.splitlines():
        assert not re.match(r"^(COPY|ADD)\b.*(\.crt|\.pem|pip\.conf)", line), line
        assert not re.match(r"^ENV\b.*(PIP_CERT|PIP_CONFIG_FILE|REQUESTS_CA_BUNDLE)", line), line
    for run in re.findall(r"^RUN (--mount=[^\n]*(?:\\\n[^\n]*)*)", text, re.M):
        if "pip install" in run:
            assert "type=secret,id=pip_conf" in run and "type=secret,id=pip_cert" in run
    assert re.search(r"^USER app$", text, re.M) and "HEALTHCHECK" in text
    assert text.count("# ---- the project's packages and data") == 1


def test_published_ports_loopback_and_movable(resolved, raw):
    for name, svc in raw["services"].items():
        for port in svc.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\$\{[A-Z_]+_HOST_PORT:-\d+\}:\d+", port), (name, port)
    for name, svc in resolved["services"].items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)


def test_model_repository_and_cache_on_named_volumes(resolved):
    for name in ("inference-server", "inference-server-gpu"):
        targets = {(v["target"] if isinstance(v, dict) else v.split(":")[1]):
                   (v["source"] if isinstance(v, dict) else v.split(":")[0]) for v in resolved["services"][name]["volumes"]}
        assert targets.get("/app/var/model-repository") == "model-repository"
        assert targets.get("/app/var/cache") == "model-cache"


def test_loadgen_waits_for_the_server(resolved):
    entrypoint = " ".join(resolved["services"]["loadgen"]["entrypoint"])
    # `config` prints compose's $$ escape as it is; the container gets "$@".
    assert "http://inference-server:8000/readyz" in entrypoint and re.search(r'exec "\$\$?@"', entrypoint)


def test_standins_override_only_swaps_images():
    standins = yaml.safe_load((REPO_ROOT / "docker" / "compose.standins.yml").read_text())
    base = yaml.safe_load(COMPOSE.read_text())
    assert set(standins["services"]) == {"prometheus", "alertmanager", "mailpit"}
    for name, svc in standins["services"].items():
        assert name in base["services"]
        assert set(svc) == {"image"} and svc["image"].startswith("local/")
    for name in ("prometheus", "alertmanager", "mailpit"):
        assert (REPO_ROOT / "docker" / "standins" / f"{name}.Dockerfile").is_file()


def test_module_paths_in_docker_commands_exist(resolved):
    """Every `python -m <module>` in the compose file and the Dockerfiles names a module in the repo
    (the list to update when packages move)."""
    texts = [yaml.safe_dump(resolved["services"])]
    texts += [(REPO_ROOT / p).read_text() for p in ("Dockerfile", "Dockerfile.gpu", "docker/standins/mailpit.Dockerfile",
                                                    "docker/standins/mailpit_standin.py")]
    modules = set()
    for text in texts:
        modules |= set(re.findall(r"-m[\"',\s\]-]+\s*([a-z_]+(?:\.[a-z_]+)*)", text))
        modules |= set(re.findall(r"^from ([a-z_]+(?:\.[a-z_]+)+) import", text, re.M))
    modules = {m for m in modules if m.split(".")[0] in ("inference_server", "exporter", "loadgen", "devstack",
                                                         "typed_config")}
    assert {"inference_server", "exporter", "loadgen"} <= modules, modules
    for module in modules:
        path = REPO_ROOT / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file() or (path / "__init__.py").is_file(), module
