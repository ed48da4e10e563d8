"""The layout is the architecture: no import cycles, aiohttp only in the HTTP layer, tests and benchmarks
never import each other, every package has a one-line job in docs/architecture.md."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.processes import REPO_ROOT

CYCLE_TOOL = REPO_ROOT.parent / "shared" / "tools" / "import_cycles.py"
PACKAGES = ("inference_server", "exporter", "loadgen", "devstack", "typed_config")


def _imports(path: Path) -> set[str]:
    """Top-level module names imported by a file, deferred imports included (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python_files(*roots: str) -> list[Path]:
    return [p for root in roots for p in sorted((REPO_ROOT / root).rglob("*.py"))]


def test_no_import_cycles():
    if not CYCLE_TOOL.is_file():
        pytest.skip(f"{CYCLE_TOOL} is not beside the checkout")
    proc = subprocess.run([sys.executable, str(CYCLE_TOOL)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_the_http_layer_imports_aiohttp():
    offenders = [str(p.relative_to(REPO_ROOT)) for p in _python_files("inference_server")
                 if "api" not in p.relative_to(REPO_ROOT / "inference_server").parts[:1]
                 and any(name == "aiohttp" or name.startswith("aiohttp.") for name in _imports(p))]
    assert offenders == []


def test_tests_and_benchmarks_do_not_import_each_other():
    from_benchmarks = [str(p) for p in _python_files("benchmarks")
                       if any(n == "tests" or n.startswith("tests.") for n in _imports(p))]
    from_tests = [str(p) for p in _python_files("tests")
                  if any(n == "benchmarks" or n.startswith("benchmarks.") for n in _imports(p))]
    assert from_benchmarks == [] and from_tests == []


def test_product_packages_do_not_import_tests_or_benchmarks():
    offenders = [str(p) for p in _python_files(*PACKAGES)
                 if any(n.split(".")[0] in ("tests", "benchmarks") for n in _imports(p))]
    assert offenders == []


def test_the_exporter_does_not_import_the_inference_server():
    offenders = [str(p) for p in _python_files("exporter")
                 if any(n.split(".")[0] == "inference_server" for n in _imports(p))]
    assert offenders == []


def test_every_package_is_in_the_architecture_table():
    doc = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    packages = sorted({str(p.parent.relative_to(REPO_ROOT)) for p in _python_files(*PACKAGES)
                       if p.name == "__init__.py"})
    missing = [pkg for pkg in packages if f"`{pkg}/`" not in doc]
    assert missing == [], f"docs/architecture.md does not describe {missing}"
