"""Process names for the per-process GPU memory series (bounded: the kernel's 15-char `comm`)."""
from __future__ import annotations

from pathlib import Path

import psutil

UNKNOWN = "unknown"


def process_name(pid: int, proc_root: Path = Path("/proc")) -> str:
    """`comm` of the pid, or psutil's name, or "unknown" (exited, or in another pid namespace)."""
    try:
        name = (proc_root / str(pid) / "comm").read_text(errors="replace").strip()
        if name:
            return name
    except OSError:
        pass
    try:
        return psutil.Process(pid).name() or UNKNOWN
    except (psutil.Error, OSError, ValueError):
        return UNKNOWN
