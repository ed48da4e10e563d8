"""Polling with a deadline for the end-to-end tests: wait until a probe holds, or fail with the state
of the whole stack (what the loop looked like when it did not happen)."""
from __future__ import annotations

import time
import urllib.error
from typing import Any, Callable, Optional

import pytest

PROBE_ERRORS = (urllib.error.URLError, OSError, KeyError, ValueError, IndexError, AssertionError)


def eventually(what: str, probe: Callable[[], Any], timeout: float, diagnostics: Callable[[], str],
               interval: float = 1.0) -> Any:
    """Poll `probe` until it returns something truthy; fail with `diagnostics()` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Optional[Exception] = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except PROBE_ERRORS as exc:
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})\n{diagnostics()}")
