"""`require_binary` for tests: a missing program skips the test on a developer machine, fails it in CI."""
from __future__ import annotations

import os

import pytest

from devstack import processes

__all__ = ["require_binary"]


def require_binary(*names: str) -> str:
    try:
        return processes.require_binary(*names)
    except processes.MissingBinary as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
